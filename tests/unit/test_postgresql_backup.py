"""The PostgreSQL backup program's own rules (roles/postgresql/files/mlops-postgresql-backup.py):
which dumps retention deletes and when a restored copy counts as whole. Its dumps, restores
and status file run against a real server in molecule/postgresql."""

import datetime
import importlib.machinery
import importlib.util
import pathlib

PROGRAM = pathlib.Path(__file__).resolve().parents[2] / "roles/postgresql/files/mlops-postgresql-backup.py"
_loader = importlib.machinery.SourceFileLoader("mlops_postgresql_backup", str(PROGRAM))
_spec = importlib.util.spec_from_loader("mlops_postgresql_backup", _loader)
backup = importlib.util.module_from_spec(_spec)
_loader.exec_module(backup)

NOW = datetime.datetime(2026, 12, 2, 2, 30, tzinfo=datetime.timezone.utc)


def dumps(*days_ago, database="tracking-beta"):
    return ["%s-%s.dump" % (database, (NOW - datetime.timedelta(days=d)).strftime(backup.STAMP)) for d in days_ago]


def test_the_newest_are_kept_by_count():
    names = dumps(0, 1, 2, 3)
    assert sorted(backup.to_delete(names, 2, 0, NOW)) == sorted(dumps(2, 3))


def test_age_deletes_old_dumps_within_the_count_but_never_the_newest():
    names = dumps(0, 1, 5, 9)
    assert sorted(backup.to_delete(names, 7, 3, NOW)) == sorted(dumps(5, 9))
    # Every dump too old: the newest stays, the only good copy there is.
    assert backup.to_delete(dumps(10, 20), 7, 3, NOW) == dumps(20)


def test_names_without_a_time_are_never_deleted():
    names = dumps(0, 1, 2) + ["tracking-beta-notes.txt", "tracking-beta-.dump"]
    assert sorted(backup.to_delete(names, 1, 0, NOW)) == sorted(dumps(1, 2))


def test_a_restored_copy_is_whole_only_when_every_table_counts_the_same():
    dumped = {"public.runs": 3, "public.metrics": 120}
    assert backup.differences(dumped, dict(dumped)) == []
    assert backup.differences(dumped, {"public.runs": 3, "public.metrics": 119}) == [
        "public.metrics: 120 rows in the database, 119 rows in the restored copy"]
    assert backup.differences(dumped, {"public.runs": 3}) == [
        "public.metrics: 120 rows in the database, no such table in the restored copy"]
    assert backup.differences({}, {"public.extra": 0}) == [
        "public.extra: no such table in the database, 0 rows in the restored copy"]
