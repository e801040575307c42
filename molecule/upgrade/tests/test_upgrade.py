"""An MLflow upgrade of a converged platform (converged with the older mlflow_version of
molecule.yml): runs logged by the old MLflow, an upgrade whose first service fails its
health check and is rolled back, then the upgrade to the role's default version, after
which every run and artifact reads back the same."""

import json
import pathlib
import re
import subprocess

import pytest
import yaml

import lab_store
from mlops_testing import (CREDENTIALS, PROJECT, as_postgres, client_env, group_vars, host, listening, recap_changed,
                           run_playbook, run_tutorial)

HOST = "mlops-upgrade"
HERE = pathlib.Path(__file__).parent
NEW = yaml.safe_load((PROJECT / "roles/mlflow/defaults/main.yml").read_text())["mlflow_version"]
node = host(HOST)
# The scenario's inventory: the old version it converges with, and its services.
GROUP_VARS = group_vars("all")
OLD = GROUP_VARS["mlflow_version"]
ENTRIES = GROUP_VARS["mlops_tracking_services"]
SERVICES = {entry["name"]: entry["mlflow_port"] for entry in ENTRIES}
# The services on the platform's MinIO (the others are on the lab's store: test_external_store.py).
ON_MINIO = [entry["name"] for entry in ENTRIES if "s3" not in entry]


def playbook(name, extra_vars):
    return run_playbook("mlops.platform." + name, extra_vars)


def runs(service, mode):
    """runs.py with the python the service runs (its venv link), against the service on loopback.

    MLflow 3.16.1 hands its clients presigned URLs straight to the S3 endpoint for files of
    1 MiB and more (multipart download): this client then reaches the service's store
    itself (MinIO at its https port, or the lab's store) and must trust that store's CA,
    as every client of such a server must: the one the service's environment names."""
    env = node.file("/etc/mlflow/services/%s.env" % service).content_string
    ca = re.search(r'^AWS_CA_BUNDLE="?([^"\n]+)', env, re.M).group(1)
    out = node.check_output("REQUESTS_CA_BUNDLE=%s /opt/mlflow/services/%s/bin/python /root/runs.py %s %s",
                            ca, service, mode, "http://127.0.0.1:%d" % SERVICES[service])
    return json.loads(out.splitlines()[-1])


def state(service):
    """What the host says of a service: its link, its recorded version, its schema revision."""
    env = node.file("/etc/mlflow/services/%s.env" % service).content_string
    database = "mlflow_" + service.replace("-", "_")
    return {
        "link": node.check_output("readlink /opt/mlflow/services/%s", service),
        "version": re.search(r"^MLOPS_MLFLOW_VERSION=\"?([^\"\n]+)", env, re.M).group(1),
        "revision": as_postgres(database_node(service), "select version_num from alembic_version", database),
        "running": node.service("mlflow@" + service).is_running,
    }


def database_node(service):
    """The host of a service's database: the lab's server for a service whose entry names one."""
    entry = next(entry for entry in ENTRIES if entry["name"] == service)
    return host(lab_store.HOST) if "postgresql" in entry else node


def backups(service):
    return node.check_output("ls /var/backups/mlflow | grep -c '^%s-' || true", service)


@pytest.fixture(scope="module")
def before():
    subprocess.run(["podman", "cp", str(HERE / "runs.py"), HOST + ":/root/runs.py"], check=True)
    logged = {service: runs(service, "log")["experiment"] for service in SERVICES}
    return {service: dict(state(service), snapshot=runs(service, "snapshot"), backups=backups(service),
                          experiment=logged[service])
            for service in SERVICES}


@pytest.fixture(scope="module")
def failed_upgrade(before):
    # A setting the new server refuses to start with (MLflow exits at once: the static
    # prefix must begin with '/'), given only in this run: the rollback puts the old
    # configuration back, and with it the old server's settings.
    broken = [dict(ENTRIES[0], environment={"MLFLOW_STATIC_PREFIX": "no-leading-slash"}), ENTRIES[1]]
    rc, output = playbook("upgrade", {"mlflow_version": NEW, "mlflow_wait_timeout": 45,
                                      "mlops_tracking_services": broken})
    return rc, output, {service: state(service) for service in SERVICES}


@pytest.fixture(scope="module")
def upgraded(failed_upgrade):
    rc, output = playbook("upgrade", {"mlflow_version": NEW})
    assert rc == 0, output[-5000:]
    rc, again = playbook("upgrade", {"mlflow_version": NEW})
    return rc, output, again


def test_the_platform_runs_the_older_version_first(before):
    assert OLD != NEW
    for service in SERVICES:
        assert before[service]["link"] == "/opt/mlflow/venvs/" + OLD
        assert before[service]["version"] == OLD
        assert before[service]["snapshot"]["version"] == OLD
        logged = [run for run in before[service]["snapshot"]["runs"].values()
                  if run["experiment_id"] == before[service]["experiment"]]
        assert len(logged) == 3 and all(len(run["artifacts"]) == 2 for run in logged)


def test_the_services_reach_minio_on_its_port_over_tls(before):
    """minio_port and minio_tls_enabled (set for MinIO in molecule.yml) reach the MLflow
    services: their S3 endpoint is https on that port, checked against MinIO's private CA;
    the artifacts the runs above logged went through it."""
    port = GROUP_VARS["minio_port"]
    # Its only client is MLflow on this host: MinIO listens on loopback (minio_listen_address).
    assert node.socket("tcp://127.0.0.1:%d" % port).is_listening
    assert not node.socket("tcp://0.0.0.0:%d" % port).is_listening
    for service in ON_MINIO:
        env = node.file("/etc/mlflow/services/%s.env" % service).content_string
        assert re.search(r'^MLFLOW_S3_ENDPOINT_URL="?https://127\.0\.0\.1:%d"?$' % port, env, re.M), env
        assert re.search(r'^AWS_CA_BUNDLE="?/etc/mlflow/s3-ca\.crt"?$', env, re.M), env
    assert node.file("/etc/mlflow/s3-ca.crt").content_string == (CREDENTIALS / HOST / "minio" / "ca.crt").read_text()


def test_on_one_host_only_the_gateway_listens_beyond_loopback():
    """The defaults on one host: PostgreSQL (postgresql_listen_addresses), MinIO
    (minio_listen_address, loopback when it is the only MinIO host) and MLflow all on
    loopback; the gateway's ports are the only others. (The runner scenario's platform
    host opens PostgreSQL for its runners.)"""
    sockets = listening(node)
    gateway_ports = {entry["gateway_port"] for entry in ENTRIES}
    assert {port for address, port in sockets if address not in ("127.0.0.1", "::1")} == gateway_ports, sockets
    assert {5432, 9100, 5001, 5002} <= {port for _address, port in sockets}, sockets


def test_a_failed_upgrade_rolls_the_service_back_and_stops(before, failed_upgrade):
    rc, output, after = failed_upgrade
    assert rc != 0
    assert "mlflow@team-a.service is not healthy" in output, output[-5000:]
    assert "rolled back: mlflow@team-a.service runs from /opt/mlflow/venvs/%s again" % OLD in output
    assert "its database restored from /var/backups/mlflow/team-a-" in output
    # team-a: back on the old venv, configuration and schema, and serving.
    assert after["team-a"] == dict({k: before["team-a"][k] for k in ("link", "version", "revision")}, running=True)
    assert runs("team-a", "snapshot") == before["team-a"]["snapshot"]
    # team-b comes after team-a in the list: not touched.
    assert after["team-b"] == dict({k: before["team-b"][k] for k in ("link", "version", "revision")}, running=True)
    assert backups("team-b") == before["team-b"]["backups"]
    assert int(backups("team-a")) == int(before["team-a"]["backups"]) + 1
    # The new venv stays for the next try.
    assert node.file("/opt/mlflow/venvs/%s/bin/mlflow" % NEW).exists


def test_the_upgrade_moves_every_service_and_upgrades_its_schema(before, upgraded):
    for service in SERVICES:
        now = state(service)
        assert now["link"] == "/opt/mlflow/venvs/" + NEW
        assert now["version"] == NEW
        assert now["running"]
        assert now["revision"] != before[service]["revision"]
        assert int(backups(service)) > int(before[service]["backups"])
    # The old venv stays: a later rollback needs no package index.
    assert node.file("/opt/mlflow/venvs/%s/bin/mlflow" % OLD).exists


def test_every_run_and_artifact_reads_back_with_the_new_version(before, upgraded):
    for service in SERVICES:
        snapshot = runs(service, "snapshot")
        assert snapshot["version"] == NEW
        assert snapshot["runs"] == before[service]["snapshot"]["runs"]


def test_a_second_upgrade_run_changes_nothing(upgraded):
    rc, _output, again = upgraded
    assert rc == 0, again[-5000:]
    assert recap_changed(again) and not any(recap_changed(again)), again[-3000:]


@pytest.mark.parametrize("service,user", [("team-a", "alice"), ("team-b", "bob")])
def test_the_tutorial_logs_through_the_gateway_into_each_services_store(upgraded, service, user):
    """The seed tutorial as a data scientist runs it, through the gateway, with the new
    version: team-a's model lands in the lab's bucket, team-b's on the platform's MinIO
    (the lab's bucket gets nothing of it)."""
    def models_in_lab():
        return {item.object_name for item in lab_store.client().list_objects(lab_store.BUCKET, recursive=True)
                if item.object_name.endswith("/MLmodel")}

    before = models_in_lab()
    done = run_tutorial(client_env(service, user, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0"), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == "FINISHED" and result["predictions"] > 0
    added = models_in_lab() - before
    assert len(added) == (1 if service == "team-a" else 0), added


def test_check_mode_on_the_upgraded_platform_changes_nothing(upgraded):
    """Check mode of the mlflow playbook on the host as the upgrade left it, with a service
    on the lab's store (multi_host's check step has none): every step that differs for an
    external store is the mlflow role's. (The whole site in check mode: the runner
    scenario's reconcile test and multi_host's check step.)"""
    rc, output = run_playbook("mlops.platform.mlflow", {"mlflow_version": NEW}, "--check")
    assert rc == 0, output[-5000:]
    assert recap_changed(output) and not any(recap_changed(output)), output[-3000:]
