"""roll_back's order of steps and what it reports, against a client that records calls."""

import pytest

from ansible_collections.mlops.platform.plugins.module_utils.tracking_service import TrackingServiceError
from ansible_collections.mlops.platform.plugins.modules.tracking_service import roll_back

PARAMS = {"host": "127.0.0.1", "port": 5001, "wait_timeout": 5}
LINK = {"path": "/opt/mlflow/services/team-a", "current": "/opt/mlflow/venvs/3.16.1",
        "desired": "/opt/mlflow/venvs/3.17.2"}
BACKUP = "/var/backups/mlflow/team-a-1.dump"


class RecordingClient:
    """Records every call; raises TrackingServiceError on the call named in fail_on."""

    def __init__(self, fail_on=None):
        self.calls = []
        self.fail_on = fail_on

    def _record(self, *call):
        self.calls.append(call)
        if call[0] == self.fail_on:
            raise TrackingServiceError("%s broke" % call[0])

    def env_path(self, name):
        return "/etc/mlflow/services/%s.env" % name

    def unit_action(self, action, name):
        self._record(action, name)

    def restore(self, uri, backup, secrets):
        self._record("restore", backup)

    def write_env(self, name, text):
        self._record("write_env", name, text)

    def set_link(self, path, target):
        self._record("set_link", path, target)

    def wait_for_health(self, name, host, port, timeout, secrets, tls_ca=False):
        self._record("health", name)


def rolled_back(client, backup):
    with pytest.raises(TrackingServiceError) as caught:
        roll_back(client, "team-a", PARAMS, LINK, "OLD=1\n", "uri", backup, [], TrackingServiceError("health failed"))
    return caught.value


def test_a_rollback_after_a_schema_upgrade_restores_the_dump_before_the_old_venv_starts():
    client = RecordingClient()
    error = rolled_back(client, BACKUP)
    assert [call[0] for call in client.calls] == ["stop", "restore", "write_env", "set_link", "start", "health"]
    assert client.calls[3] == ("set_link", LINK["path"], LINK["current"])
    assert str(error) == ("health failed; rolled back: mlflow@team-a.service runs from /opt/mlflow/venvs/3.16.1 "
                          "again, its database restored from %s and is healthy" % BACKUP)
    assert error.actions == ["stop mlflow@team-a.service", "restore database from %s" % BACKUP,
                             "write /etc/mlflow/services/team-a.env",
                             "point /opt/mlflow/services/team-a at /opt/mlflow/venvs/3.16.1",
                             "start mlflow@team-a.service"]


def test_a_rollback_without_a_dump_leaves_the_database_alone():
    client = RecordingClient()
    error = rolled_back(client, None)
    assert "restore" not in [call[0] for call in client.calls]
    assert "restored" not in str(error)


def test_a_rollback_that_fails_reports_only_the_steps_it_carried_out():
    client = RecordingClient(fail_on="restore")
    error = rolled_back(client, BACKUP)
    assert [call[0] for call in client.calls] == ["stop", "restore"]
    assert str(error) == "health failed; the rollback to /opt/mlflow/venvs/3.16.1 failed too: restore broke"
    assert error.actions == ["stop mlflow@team-a.service"]


def test_a_rollback_whose_old_venv_is_not_healthy_says_so():
    client = RecordingClient(fail_on="health")
    error = rolled_back(client, BACKUP)
    assert "failed too: health broke" in str(error)
    assert error.actions[-1] == "start mlflow@team-a.service"
