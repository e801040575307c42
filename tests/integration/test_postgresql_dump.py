"""mlops.platform.postgresql_dump against a real PostgreSQL cluster: check mode, a new dump,
a re-run of unchanged data (pg_dump's guard key differs, the file stays), changed data,
a mode change, and a failing dump that leaves the last good file."""

import os
import stat

from conftest import run_module


def snapshot(path):
    """Content, inode and mode of a file: what tells a file left alone from a replaced one."""
    info = path.stat()
    return path.read_bytes(), info.st_ino, info.st_mtime_ns, stat.S_IMODE(info.st_mode)


def test_dump_is_replaced_only_when_the_data_changed(postgresql, tmp_path):
    postgresql.psql("CREATE DATABASE dump_test")
    postgresql.psql("CREATE TABLE runs (id int PRIMARY KEY, name text); INSERT INTO runs VALUES (1, 'first')",
                    database="dump_test")
    directory = tmp_path / "database"
    directory.mkdir(mode=0o700)
    dump = directory / "dump_test.sql"
    args = {"database": "dump_test", "path": str(dump), "login_unix_socket": postgresql.socket_dir,
            "port": postgresql.port}

    checked = run_module("postgresql_dump", args, {}, check=True, diff=True)
    assert checked["changed"] is True, checked.output
    assert checked["actions"] == ["create %s with a new dump of database dump_test" % dump]
    assert checked["diff"]["before"] == "absent\n"
    assert checked["diff"]["after"].startswith("new dump of database dump_test: ")
    assert "mode 0600, owner %s" % postgresql.user in checked["diff"]["after"]
    assert os.listdir(directory) == [], "check mode left a file"

    created = run_module("postgresql_dump", args, {}, diff=True)
    assert created["changed"] is True and created["path"] == str(dump), created.output
    assert created["diff"] == dict(checked["diff"], after=created["diff"]["after"])
    assert os.listdir(directory) == ["dump_test.sql"]
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600
    assert dump.stat().st_uid == os.geteuid()
    content = dump.read_text()
    assert "CREATE TABLE public.runs" in content and "1\tfirst" in content
    assert content.startswith("--") and "\n\\restrict " in content and "\n\\unrestrict " in content
    assert "CREATE TABLE" not in str(created["diff"]) and "first" not in str(created["diff"])
    first = snapshot(dump)

    # A new dump of the same data differs in its \restrict key only (pg_dump 13.22, 14.19, 15.14,
    # 16.10, 17.6 and newer); the file stays as it was, byte for byte, inode and all.
    again = run_module("postgresql_dump", args, {})
    assert again["changed"] is False and again["actions"] == [], again.output
    assert snapshot(dump) == first
    assert run_module("postgresql_dump", args, {}, check=True)["changed"] is False
    assert snapshot(dump) == first and os.listdir(directory) == ["dump_test.sql"]

    postgresql.psql("INSERT INTO runs VALUES (2, 'second')", database="dump_test")
    checked = run_module("postgresql_dump", args, {}, check=True)
    assert checked["changed"] is True, checked.output
    assert checked["actions"] == ["replace %s with a new dump of database dump_test" % dump]
    assert snapshot(dump) == first and os.listdir(directory) == ["dump_test.sql"]

    replaced = run_module("postgresql_dump", args, {})
    assert replaced["changed"] is True and replaced["actions"] == checked["actions"], replaced.output
    assert "2\tsecond" in dump.read_text()
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600 and os.listdir(directory) == ["dump_test.sql"]
    second = snapshot(dump)
    assert run_module("postgresql_dump", args, {})["changed"] is False
    assert snapshot(dump) == second

    # Only the mode differs: check mode says so and changes nothing, then it is set.
    loose = dict(args, mode="0640")
    checked = run_module("postgresql_dump", loose, {}, check=True, diff=True)
    assert checked["changed"] is True and checked["actions"] == ["set mode 0640 on %s" % dump], checked.output
    assert "mode 0600" in checked["diff"]["before"] and "mode 0640" in checked["diff"]["after"]
    assert snapshot(dump) == second
    assert run_module("postgresql_dump", loose, {})["changed"] is True
    assert stat.S_IMODE(dump.stat().st_mode) == 0o640 and dump.read_bytes() == second[0]
    assert run_module("postgresql_dump", args, {})["actions"] == ["set mode 0600 on %s" % dump]
    third = snapshot(dump)

    # A dump that fails leaves the last good file and no temporary file.
    failed = run_module("postgresql_dump", dict(args, database="no_such_database"), {})
    assert failed.get("failed") is True, failed.output
    assert failed["msg"].startswith("pg_dump of database no_such_database failed (exit status 1): ")
    assert 'database "no_such_database" does not exist' in failed["msg"]
    assert snapshot(dump) == third and os.listdir(directory) == ["dump_test.sql"]
    assert run_module("postgresql_dump", dict(args, database="no_such_database"), {}, check=True).get("failed")
    assert snapshot(dump) == third and os.listdir(directory) == ["dump_test.sql"]


def test_refuses_what_it_cannot_dump_into(postgresql, tmp_path):
    postgresql.psql("CREATE DATABASE \"odd name='x'\"")
    args = {"database": "odd name='x'", "login_unix_socket": postgresql.socket_dir, "port": postgresql.port}

    # A database name with spaces, quotes and '=' is a name, not a connection string.
    odd = run_module("postgresql_dump", dict(args, path=str(tmp_path / "odd.sql")), {})
    assert odd["changed"] is True, odd.output
    assert "PostgreSQL database dump complete" in (tmp_path / "odd.sql").read_text()

    missing_dir = str(tmp_path / "absent" / "odd.sql")
    checked = run_module("postgresql_dump", dict(args, path=missing_dir), {}, check=True)
    assert checked["changed"] is True and not (tmp_path / "absent").exists(), checked.output
    failed = run_module("postgresql_dump", dict(args, path=missing_dir), {})
    assert failed.get("failed") is True and "does not exist" in failed["msg"], failed.output

    (tmp_path / "a_directory.sql").mkdir()
    not_file = run_module("postgresql_dump", dict(args, path=str(tmp_path / "a_directory.sql")), {})
    assert not_file.get("failed") is True and "not a regular file" in not_file["msg"], not_file.output
