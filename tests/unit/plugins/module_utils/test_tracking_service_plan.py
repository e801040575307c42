"""tracking_service_plan: the steps that bring a tracking service to a state."""

import pytest

from ansible_collections.mlops.platform.plugins.module_utils.tracking_service_plan import plan_actions

ENV = "/etc/mlflow/services/team-a.env"


def current(**overrides):
    base = dict(text="old", file_ok=True, dir="ok", active=True, enabled=True)
    base.update(overrides)
    return base


def verbs(state, cur, desired="new", schema=None, backup="/b/x.dump"):
    return [verb for verb, _description in plan_actions(state, "team-a", ENV, cur, desired, schema, backup)]


UPGRADE = dict(upgrade=True, current="aaa", head="bbb")


@pytest.mark.parametrize("state,cur,desired,schema,expected", [
    # started
    ("started", current(text=None, dir="missing", active=False, enabled=False), "new", None,
     ["mkdir", "write", "enable", "start"]),
    ("started", current(text="new"), "new", None, []),
    ("started", current(), "new", None, ["write", "restart"]),
    ("started", current(text="new", active=False), "new", None, ["start"]),
    ("started", current(text="new", enabled=False), "new", None, ["enable"]),
    ("started", current(text="new", file_ok=False), "new", None, ["chmod"]),
    ("started", current(), "new", UPGRADE, ["write", "stop", "backup", "upgrade", "start"]),
    ("started", current(text="new", active=False), "new", UPGRADE, ["backup", "upgrade", "start"]),
    ("started", current(text="new"), "new", dict(upgrade=False, current=None, head="bbb"), []),
    # present
    ("present", current(active=False, enabled=False), "new", None, ["write"]),
    ("present", current(), "new", None, ["write", "restart"]),
    ("present", current(text="new"), "new", None, []),
    ("present", current(text="new", active=False), "new", UPGRADE, ["backup", "upgrade"]),
    ("present", current(text="new"), "new", UPGRADE, ["stop", "backup", "upgrade", "start"]),
    # stopped
    ("stopped", current(), "new", None, ["write", "stop", "disable"]),
    ("stopped", current(text="new", active=False, enabled=False), "new", None, []),
    ("stopped", current(dir="insecure", text="new", active=False, enabled=False), "new", None, ["mkdir"]),
    # absent
    ("absent", current(), None, None, ["stop", "disable", "remove"]),
    ("absent", current(active=False), None, None, ["disable", "remove"]),
    ("absent", current(text=None, active=False, enabled=False, dir="missing"), None, None, []),
])
def test_plan(state, cur, desired, schema, expected):
    assert verbs(state, cur, desired, schema) == expected


def test_plan_describes_each_step():
    steps = plan_actions("started", "team-a", ENV, current(), "new", UPGRADE, "/var/backups/mlflow/t.dump")
    assert [d for _v, d in steps] == [
        "write /etc/mlflow/services/team-a.env", "stop mlflow@team-a.service",
        "back up database to /var/backups/mlflow/t.dump", "upgrade schema aaa -> bbb", "start mlflow@team-a.service",
    ]


def link(current_target, desired="/opt/mlflow/venvs/3.17.2"):
    return dict(path="/opt/mlflow/services/team-a", current=current_target, desired=desired)


@pytest.mark.parametrize("state,cur,desired,schema,venv_link,expected", [
    # a new service: the link comes with its configuration
    ("started", current(text=None, active=False, enabled=False), "new", None, link(None),
     ["write", "link", "enable", "start"]),
    # converged
    ("started", current(text="new"), "new", None, link("/opt/mlflow/venvs/3.17.2"), []),
    # an upgrade: the version in the configuration and the link change, the schema follows
    ("started", current(), "new", UPGRADE, link("/opt/mlflow/venvs/3.16.1"),
     ["write", "link", "stop", "backup", "upgrade", "start"]),
    # the link alone pointed elsewhere (same configuration): another server, so a restart
    ("started", current(text="new"), "new", None, link("/opt/mlflow/venvs/3.16.1"), ["link", "restart"]),
    ("present", current(text="new", active=False), "new", None, link("/elsewhere"), ["link"]),
    ("stopped", current(text="new", active=False, enabled=False), "new", None, link("/elsewhere"), ["link"]),
    ("absent", current(active=False, enabled=False), None, None, link("/opt/mlflow/venvs/3.17.2"),
     ["remove", "unlink"]),
    ("absent", current(text=None, active=False, enabled=False), None, None, link(None), []),
])
def test_plan_with_a_venv_link(state, cur, desired, schema, venv_link, expected):
    steps = plan_actions(state, "team-a", ENV, cur, desired, schema, "/b/x.dump", venv_link)
    assert [verb for verb, _description in steps] == expected


def test_the_link_step_names_the_link_and_the_venv():
    steps = plan_actions("started", "team-a", ENV, current(text="new"), "new", None, None, link("/old"))
    assert steps[0] == ("link", "point /opt/mlflow/services/team-a at /opt/mlflow/venvs/3.17.2")
