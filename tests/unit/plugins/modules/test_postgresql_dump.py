import io

import pytest

from ansible_collections.mlops.platform.plugins.modules.postgresql_dump import (
    conninfo_value,
    content_lines,
    same_content,
    same_dump,
)

DUMP = b"""--
-- PostgreSQL database dump
--

\\restrict 4rgSHbbVmrJQ3kfFRPbaEwN5cHK2bgxH8yzCtbtQdcNaEwQYgl6yMEfZkE8TEHtK

SET statement_timeout = 0;
COPY public.runs (id, name) FROM stdin;
1\tfirst
\\.

--
-- PostgreSQL database dump complete
--

\\unrestrict 4rgSHbbVmrJQ3kfFRPbaEwN5cHK2bgxH8yzCtbtQdcNaEwQYgl6yMEfZkE8TEHtK

"""


def lines(text):
    return io.BytesIO(text).readlines()


def with_key(key):
    return DUMP.replace(b"4rgSHbbVmrJQ3kfFRPbaEwN5cHK2bgxH8yzCtbtQdcNaEwQYgl6yMEfZkE8TEHtK", key)


def test_guard_lines_are_left_out_and_everything_else_kept():
    kept = list(content_lines(lines(DUMP)))
    assert len(kept) == len(lines(DUMP)) - 2
    assert not [line for line in kept if b"restrict" in line]
    assert b"1\tfirst\n" in kept and b"\\.\n" in kept


@pytest.mark.parametrize("line", [
    b"\\restrict\n",  # no key: not the guard pg_dump writes
    b" \\restrict abc\n",
    b"\\\\restrict abc\n",  # COPY data doubles a backslash
    b"-- \\restrict abc\n",
    b"\\restricted abc\n",
    b"\\unrestricted abc\n",
    b"restrict abc\n",
])
def test_lines_that_only_look_like_guards_are_kept(line):
    assert list(content_lines([line])) == [line]


def test_dumps_that_differ_in_the_guard_key_only_are_the_same():
    assert same_content(lines(DUMP), lines(with_key(b"otherkey0123456789")))


def test_a_dump_without_guard_lines_is_the_same_as_one_with_them():
    # pg_dump before 13.22, 14.19, 15.14, 16.10, 17.6 writes none.
    unguarded = b"".join(line for line in lines(DUMP) if b"restrict " not in line)
    assert same_content(lines(DUMP), lines(unguarded))


@pytest.mark.parametrize("changed", [
    DUMP.replace(b"1\tfirst\n", b"1\tfirst\n2\tsecond\n"),  # a row more
    DUMP.replace(b"1\tfirst\n", b""),  # a row less
    DUMP.replace(b"1\tfirst", b"1\tFirst"),
    DUMP.replace(b"first\n", b"first\r\n"),
    DUMP + b"-- trailing\n",  # longer
    DUMP[:-1],  # the last newline missing
    b"",
])
def test_any_other_difference_is_a_change(changed):
    assert not same_content(lines(DUMP), lines(changed))
    assert not same_content(lines(changed), lines(DUMP))


def test_empty_dumps_are_the_same():
    assert same_content([], [])
    assert same_content([b"\\restrict a\n"], [])


def test_same_dump_compares_files(tmp_path):
    (tmp_path / "a.sql").write_bytes(DUMP)
    (tmp_path / "b.sql").write_bytes(with_key(b"secondkey"))
    (tmp_path / "c.sql").write_bytes(DUMP.replace(b"first", b"other"))
    assert same_dump(str(tmp_path / "a.sql"), str(tmp_path / "b.sql"))
    assert not same_dump(str(tmp_path / "a.sql"), str(tmp_path / "c.sql"))


@pytest.mark.parametrize("name,quoted", [
    ("mlflow_team_a", "'mlflow_team_a'"),
    ("odd name='x'", "'odd name=\\'x\\''"),
    ("back\\slash", "'back\\\\slash'"),
    ("host=evil", "'host=evil'"),
])
def test_database_names_are_quoted_for_a_connection_string(name, quoted):
    assert conninfo_value(name) == quoted
