import datetime

import pytest

from ansible_collections.mlops.platform.plugins.filter.backup_problem import backup_problem

NOW = datetime.datetime(2026, 12, 2, 12, 0, tzinfo=datetime.timezone.utc).timestamp()


def status(result="ok", finished="2026-12-02T02:30:00+00:00", last_success=None, errors=()):
    return {"result": result, "finished": finished, "errors": list(errors),
            "last_success": last_success if last_success is not None else finished}


@pytest.mark.parametrize("given", [None, {}, "not a status", {"result": "ok"}])
def test_no_status_means_no_backup_yet(given):
    assert backup_problem(given, 26, NOW) == "no backup has been made yet"


def test_a_recent_good_backup_needs_nothing():
    assert backup_problem(status(), 26, NOW) == ""
    assert backup_problem(status(finished="2026-12-01T10:00:01+00:00"), 26, NOW) == ""


def test_a_good_backup_older_than_the_limit_is_stale():
    problem = backup_problem(status(finished="2026-12-01T09:59:00+00:00"), 26, NOW, "postgresql_backup_max_age_hours")
    assert problem.startswith("the last good backup, at 2026-12-01T09:59:00+00:00, is 26 hours old")
    assert "postgresql_backup_max_age_hours (26)" in problem
    assert backup_problem(status(finished="2026-12-01T09:59:00+00:00"), 26, NOW).endswith("the age limit (26)")


def test_a_failed_run_names_its_errors_even_after_a_recent_success():
    failed = status("failed", last_success="2026-12-02T02:00:00+00:00",
                    errors=["tracking_alpha: pg_dump: error: permission denied", "beta: restored copy differs"])
    assert backup_problem(failed, 26, NOW) == (
        "the last backup, at 2026-12-02T02:30:00+00:00, failed: tracking_alpha: pg_dump: error: permission denied; "
        "beta: restored copy differs")


def test_an_unreadable_time_is_a_problem_not_a_crash():
    assert "no readable time" in backup_problem(status(last_success="yesterday"), 26, NOW)
