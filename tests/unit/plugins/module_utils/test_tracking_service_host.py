"""tracking_service_host: unit states, URLs, the venv's mlflow version, ports and the health wait."""

import pytest

from ansible_collections.mlops.platform.plugins.module_utils.tracking_service_env import desired_environment, render_env
from ansible_collections.mlops.platform.plugins.module_utils.tracking_service_host import (
    TrackingServiceHost,
    internal_url,
    mlflow_version,
    not_healthy_reason,
    probe_host,
    service_state,
)
from ansible_collections.mlops.platform.tests.unit.plugins.module_utils.tracking_service_cases import params


@pytest.mark.parametrize("active,sub,expected", [
    ("active", "running", "running"), ("inactive", "dead", "stopped"), ("failed", "failed", "failed"),
    ("activating", "auto-restart", "failed"), ("activating", "start", "running"),
])
def test_service_state(active, sub, expected):
    assert service_state(dict(active_state=active, sub_state=sub)) == expected


def test_urls():
    assert internal_url("127.0.0.1", 5001) == "http://127.0.0.1:5001"
    assert internal_url("::1", 5001) == "http://[::1]:5001"
    assert probe_host("0.0.0.0") == "127.0.0.1" and probe_host("::1") == "[::1]" and probe_host("10.0.0.5") == "10.0.0.5"


def test_mlflow_version_reads_the_dist_info(tmp_path):
    site = tmp_path / "lib" / "python3.11" / "site-packages"
    (site / "mlflow_skinny-3.9.0.dist-info").mkdir(parents=True)
    assert mlflow_version(str(tmp_path)) is None
    (site / "mlflow-3.17.2.dist-info").mkdir()
    assert mlflow_version(str(tmp_path)) == "3.17.2"
    metadata = "Metadata-Version: 2.1\nName: mlflow\nVersion: 3.17.2.post1\n\nVersion: body\n"
    (site / "mlflow-3.17.2.dist-info" / "METADATA").write_text(metadata)
    assert mlflow_version(str(tmp_path)) == "3.17.2.post1"
    assert mlflow_version(str(tmp_path / "missing")) is None


def test_port_owner_names_the_other_service_on_that_port(tmp_path):
    for name, port in (("team-a", 5001), ("team-b", 5002)):
        managed, extra = desired_environment(params(name=name, port=port))
        (tmp_path / (name + ".env")).write_text(render_env(name, managed, extra))
    (tmp_path / "Not_A_Service.env").write_text("MLFLOW_PORT=5003\n")
    client = TrackingServiceHost(None, str(tmp_path))
    assert client.port_owner(5001, "team-c") == "team-a"
    assert client.port_owner(5001, "team-a") is None
    assert client.port_owner(5003, "team-c") is None


def unit(active_state, sub_state):
    return {"active_state": active_state, "sub_state": sub_state}


@pytest.mark.parametrize("status,expired,reason", [
    (unit("activating", "start"), False, None),
    (unit("active", "running"), False, None),
    (unit("active", "running"), True, "no OK within 30 s"),
    (unit("failed", "failed"), False, "the unit failed"),
    # Exited, and Restart=on-failure will start it again: waiting longer only repeats the failure.
    (unit("activating", "auto-restart"), False, "the server exited and systemd is about to restart it"),
])
def test_waiting_for_health_stops_when_the_server_failed_or_exited(status, expired, reason):
    assert not_healthy_reason(status, expired, 30) == reason
