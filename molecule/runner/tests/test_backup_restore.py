"""Backup and restore as an operator meets them after losing a host: back up, replace the
host by a new one from the same image, deploy it with the same credentials directory,
put the backup back where mlflow_backup_location points and restore. The backup holds
the tutorial's run and the 2 GB artifact (the fixtures tutorial_run and big_artifact, which
test_all_in_one.py checks) and team-b, which a changes_platform test deletes later:
replaces_host runs these tests after the unmarked ones and before those (molecule/conftest.py);
the tests after them go on with the restored host."""

import json
import subprocess
import sys
import time

import pytest

from mlops_testing import as_postgres, client_env, host, minio_client, platform_host, recap_changed, service_keys
from mlops_testing import platform_playbook as playbook

pytestmark = [pytest.mark.replaces_host, pytest.mark.usefixtures("tutorial_run", "big_artifact")]
HOST = platform_host()
node = host(HOST)
LOCATION = "/var/backups/mlops"
SERVICES = ["team-a", "team-b"]

# Every run of every experiment as the MLflow client reads it through the gateway: ids,
# params, metrics, tags, and the artifacts (path, size; sha256 of those under 64 MiB).
READ_RUNS = r"""
import hashlib, json, os, tempfile
from mlflow.tracking import MlflowClient
client = MlflowClient()
def walk(run_id, path=None):
    for item in client.list_artifacts(run_id, path):
        if item.is_dir:
            yield from walk(run_id, item.path)
        else:
            yield item
runs = {}
with tempfile.TemporaryDirectory() as tmp:
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id]):
            artifacts = {}
            for item in walk(run.info.run_id):
                digest = None
                # No file_size for an empty file (the API's JSON leaves out a zero), such as
                # those some of the runners' jobs write.
                if (item.file_size or 0) < 64 * 1024 ** 2:
                    local = client.download_artifacts(run.info.run_id, item.path, tmp)
                    with open(local, "rb") as f:
                        digest = hashlib.sha256(f.read()).hexdigest()
                artifacts[item.path] = [item.file_size, digest]
            runs[run.info.run_id] = {"experiment": experiment.name, "status": run.info.status,
                                     "params": run.data.params, "metrics": run.data.metrics,
                                     "tags": {k: v for k, v in run.data.tags.items()}, "artifacts": artifacts}
print(json.dumps(runs, sort_keys=True))
"""


def runs_through_the_gateway(service):
    done = subprocess.run([sys.executable, "-c", READ_RUNS], env=client_env(service, "ci-bot"),
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def rows_in_the_database(service):
    """What the service's database holds, read on the host as postgres."""
    database = "mlflow_" + service.replace("-", "_")
    query = ("SELECT (SELECT string_agg(run_uuid || ':' || status, ',' ORDER BY run_uuid) FROM runs), "
             "(SELECT count(*) FROM metrics), (SELECT count(*) FROM params), (SELECT count(*) FROM experiments)")
    return as_postgres(node, query, database)


def objects_in_the_bucket(service):
    access_key, secret_key = service_keys(service)
    client = minio_client(HOST, access_key, secret_key)
    return sorted((o.object_name, o.size) for o in client.list_objects(access_key, recursive=True))


def snapshot():
    return {
        "runs": runs_through_the_gateway("team-a"),
        "database": {s: rows_in_the_database(s) for s in SERVICES},
        "buckets": {s: objects_in_the_bucket(s) for s in SERVICES},
    }


def replace_host():
    """Remove the host and start a new container of the same image on the same network,
    at the same address (the allow-lists and pg_hba name the scenario's addresses)."""
    info = json.loads(subprocess.check_output(["podman", "inspect", HOST]))[0]
    image = info["ImageName"]
    network, attached = next(iter(info["NetworkSettings"]["Networks"].items()))
    subprocess.run(["podman", "rm", "-f", "-t", "10", HOST], check=True, capture_output=True)
    subprocess.run(["podman", "run", "-d", "--name", HOST, "--hostname", HOST, "--network", network,
                    "--ip", attached["IPAddress"],
                    "--cap-add", "SYS_ADMIN", "--systemd", "always", "--label", "owner=molecule", image, "/sbin/init"],
                   check=True, capture_output=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = subprocess.run(["podman", "exec", HOST, "systemctl", "is-system-running"],
                               capture_output=True, text=True, check=False).stdout.strip()
        if state in ("running", "degraded"):
            return
        time.sleep(2)
    pytest.fail("the new %s did not finish booting within 120 s (systemd says %r)" % (HOST, state))


@pytest.fixture(scope="module")
def restored(tmp_path_factory):
    before = snapshot()
    assert before["runs"], "team-a holds no run to back up: the fixture tutorial_run logs one"

    rc, first = playbook("backup")
    assert rc == 0, first[-3000:]
    rc, second = playbook("backup")
    assert rc == 0, second[-3000:]

    saved = tmp_path_factory.mktemp("backup")
    subprocess.run(["podman", "cp", HOST + ":" + LOCATION, str(saved)], check=True)
    replace_host()
    # The new host only, as an operator replacing one host would: the runners keep their
    # configuration (the CAs and passwords come from the credentials directory).
    rc, site = playbook("site", None, "--limit", HOST)
    assert rc == 0, site[-3000:]
    rc, without_backup = playbook("restore")
    # Into the directory the new host's scheduled bucket backup made (mlflow_bucket_backup_enabled).
    subprocess.run(["podman", "cp", str(saved / "mlops") + "/.", HOST + ":" + LOCATION], check=True)
    rc_restore, restore = playbook("restore")
    assert rc_restore == 0, restore[-3000:]
    return {"before": before, "after": snapshot(), "first": first, "second": second,
            "without_backup": (rc, without_backup), "restore": restore}


def test_backup_writes_a_dump_and_a_mirror_private_to_their_owners(restored):
    assert "objects) mirrored to" in restored["first"], restored["first"][-3000:]
    for service in SERVICES:
        database = "mlflow_" + service.replace("-", "_")
        dump = node.file("%s/%s/database/%s.sql" % (LOCATION, service, database))
        assert dump.is_file and dump.mode == 0o600 and dump.user == "postgres"
        assert "CREATE TABLE public.runs" in dump.content_string
        assert node.file("%s/%s/bucket" % (LOCATION, service)).mode == 0o700
        assert node.file("%s/%s/database" % (LOCATION, service)).mode == 0o700
    # postgres passes through these to its own directory, without listing them.
    assert node.file(LOCATION).mode == 0o711 and node.file(LOCATION).user == "root"


def test_a_second_backup_of_unchanged_data_changes_nothing(restored):
    changed = recap_changed(restored["second"])
    assert changed and set(changed) == {0}, restored["second"][-3000:]


def test_restore_without_the_backup_stops_before_any_change(restored):
    rc, output = restored["without_backup"]
    assert rc != 0, output[-3000:]
    assert "no database dump at %s:%s/team-a/database/mlflow_team_a.sql" % (HOST, LOCATION) in output, output[-3000:]
    changed = recap_changed(output)
    assert changed and set(changed) == {0}, output[-3000:]


def test_every_run_and_artifact_is_back_on_the_new_host(restored):
    before, after = restored["before"], restored["after"]
    assert after["runs"] == before["runs"]
    assert after["database"] == before["database"]
    assert after["buckets"] == before["buckets"]
    # The 2 GB artifact (big_artifact) came back too.
    assert any(size == 2 * 1024 ** 3 for _key, size in after["buckets"]["team-a"])


def test_restore_over_a_database_with_runs_needs_overwrite(restored):
    runs = len(restored["before"]["database"]["team-a"].split("|")[0].split(","))
    rc, output = playbook("restore", {"service": "team-a"})
    assert rc != 0, output[-3000:]
    assert "database mlflow_team_a holds %d runs" % runs in output, output[-3000:]
    assert "overwrite=true" in output, output[-3000:]
    changed = recap_changed(output)
    assert changed and set(changed) == {0}, output[-3000:]
    assert node.service("mlflow@team-a").is_running
