"""Nightly reconciliation (playbooks/reconcile.yml) on the converged platform and its
runners, after the jobs of test_runner.py: drift injected by hand on the platform host and
one runner, a report run that lists exactly that drift and changes nothing, and an apply
run that fixes it and changes nothing else. Both are the site playbook on every host as the
scenario's tests left them, so the report run is also the check-mode test of these hosts
(anything else check mode would change is drift it would list) and the apply run, which
changes exactly that drift, their second run. The drift test carries injects_drift
(molecule/conftest.py): it runs after the unmarked tests, so the drift cannot reach them
even when the test fails halfway."""

import json
import os
import subprocess

import pytest
from minio.credentials import StaticProvider
from minio.minioadmin import MinioAdmin

from mlops_testing import (CREDENTIALS, as_postgres, gateway_get, group_hosts, host, inventory_directory,
                           minio_endpoint, minio_root, minio_root_client, mlflow_health, platform_host,
                           service_running)

HOST = platform_host()
RUNNER = group_hosts("runners")[0]
INVENTORY = str(inventory_directory())
node = host(HOST)
GATEWAY_CONF = "/etc/nginx/conf.d/mlops-team-a.conf"


def reconcile(report, *args):
    """ansible-playbook mlops.platform.reconcile as cron would run it: (exit status, report, output)."""
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_CALLBACK_RESULT_FORMAT="json",
               ANSIBLE_CALLBACKS_ENABLED="mlops.platform.drift_report", MLOPS_DRIFT_REPORT=str(report))
    done = subprocess.run(["ansible-playbook", "-i", INVENTORY, "mlops.platform.reconcile", "--diff", *args],
                          capture_output=True, text=True, timeout=1500, check=False, env=env)
    output = done.stdout + done.stderr
    assert report.exists(), output[-3000:]
    return done.returncode, json.loads(report.read_text()), output


def minio_admin():
    return MinioAdmin(endpoint=minio_endpoint(HOST), secure=False, credentials=StaticProvider(*minio_root(HOST)))


def user_policies(user):
    info = json.loads(minio_admin().user_info(user))
    return sorted(filter(None, info.get("policyName", "").split(",")))


def psql(sql):
    return as_postgres(node, sql)


def password_hash(role):
    return psql("select rolpassword from pg_authid where rolname = '%s'" % role)


@pytest.fixture(scope="module")
def runner_host():
    return host(RUNNER)


def test_without_the_callback_it_stops_before_any_change(tmp_path):
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    env.pop("ANSIBLE_CALLBACKS_ENABLED", None)
    done = subprocess.run(["ansible-playbook", "-i", INVENTORY, "mlops.platform.reconcile", "--check"],
                          capture_output=True, text=True, timeout=300, check=False, env=env, cwd=tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "ANSIBLE_CALLBACKS_ENABLED=mlops.platform.drift_report" in output, output[-3000:]
    assert "PLAY [PostgreSQL" not in output, output[-3000:]


# Sets a bucket backup's status.json times back by three days, as if no backup had run since.
AGE_STATUS = """
import datetime, json, sys
path = sys.argv[1]
status = json.load(open(path))
for key in ("started", "finished", "last_success"):
    status[key] = (datetime.datetime.fromisoformat(status[key]) - datetime.timedelta(days=3)).isoformat()
json.dump(status, open(path, "w"))
"""
BUCKET_BACKUP_STATUS = "/var/backups/mlops/team-a/bucket-status.json"


def remove_bucket(name):
    """The bucket gone with every version of every object in it (team-b's jobs logged there)."""
    client = minio_root_client(HOST)
    for item in client.list_objects(name, recursive=True, include_version=True):
        client.remove_object(name, item.object_name, version_id=item.version_id)
    client.remove_bucket(name)


@pytest.mark.injects_drift
def test_report_lists_exactly_the_injected_drift_and_apply_fixes_it(runner_host, tmp_path):
    conf_before = node.file(GATEWAY_CONF).content_string
    hash_before = password_hash("mlflow_team_b")
    assert service_running(node, "team-b") and runner_host.service("mlops-runner").is_running

    # The drift: one change by hand on each kind of resource.
    remove_bucket("mlflow-team-b")                                     # a bucket deleted
    minio_admin().detach_policy(["mlflow-team-a"], user="mlflow-team-a")  # a user's policy changed
    minio_admin().attach_policy(["readwrite"], user="mlflow-team-a")
    node.check_output("systemctl stop mlflow@team-b")                   # a tracking service stopped
    node.check_output("echo '# edited by hand' >> %s" % GATEWAY_CONF)   # the gateway config hand-edited
    psql("alter role mlflow_team_b password 'Drifted-pass-2026'")        # a database password changed
    runner_host.check_output("systemctl stop mlops-runner")              # a runner stopped
    node.check_output("python3 -c %s %s", AGE_STATUS, BUCKET_BACKUP_STATUS)  # a bucket backup stale
    stale = json.loads(node.file(BUCKET_BACKUP_STATUS).content_string)

    rc, report, output = reconcile(tmp_path / "drift.json", "--check")
    assert rc == 2, output[-5000:]
    assert report["mode"] == "report" and report["complete"] and report["drift_found"], report
    assert report["errors"] == [], report["errors"]
    found = sorted((entry["host"], entry["action"], entry["resource"]) for entry in report["drift"])
    assert found == sorted([
        (HOST, "mlops.platform.s3_bucket", "s3_bucket mlflow-team-b"),
        (HOST, "mlops.platform.minio_user", "minio_user (Create the MinIO user: team-a)"),
        (HOST, "mlops.platform.tracking_service", "tracking_service team-b"),
        (HOST, "ansible.builtin.template", "template " + GATEWAY_CONF),
        (HOST, "community.postgresql.postgresql_user",
         "postgresql_user (Create the login roles of the database: mlflow_team_b)"),
        (RUNNER, "ansible.builtin.systemd_service", "systemd_service mlops-runner.service"),
        (HOST, "ansible.builtin.systemd_service", "systemd_service mlflow-bucket-backup@team-a.service"),
    ]), json.dumps(report["drift"], indent=1)[:6000]
    by_action = {entry["action"]: entry for entry in report["drift"] if entry["host"] != HOST
                 or entry["action"] != "ansible.builtin.systemd_service"}
    # The reconcile would back the bucket up at once, and says why.
    backup = next(entry for entry in report["drift"] if entry["resource"].endswith("@team-a.service"))
    assert backup["task"].endswith("Back up now: team-a: the last good backup, at %s, is 72 hours old, more than "
                                   "mlflow_bucket_backup_max_age_hours (26)" % stale["last_success"]), backup["task"]
    # Tasks that carry a secret (no_log) name the resource and hide the values.
    assert by_action["mlops.platform.minio_user"]["found"].startswith("(hidden")
    assert "# edited by hand" in by_action["ansible.builtin.template"]["found"]
    assert "# edited by hand" not in by_action["ansible.builtin.template"]["expected"]
    assert by_action["ansible.builtin.systemd_service"]["found"]["ActiveState"] == "inactive"
    assert by_action["mlops.platform.tracking_service"]["expected"]["actions"] == ["start mlflow@team-b.service"]
    # The password itself never reaches the report or the output.
    assert "Drifted-pass-2026" not in (tmp_path / "drift.json").read_text() + output
    assert by_action["community.postgresql.postgresql_user"]["found"].startswith("(hidden")
    assert oct((tmp_path / "drift.json").stat().st_mode & 0o777) == "0o600"
    assert "Drift on 7 resources" in output
    # Report mode changed nothing.
    assert not minio_root_client(HOST).bucket_exists("mlflow-team-b")
    assert user_policies("mlflow-team-a") == ["readwrite"]
    assert not service_running(node, "team-b") and not runner_host.service("mlops-runner").is_running
    assert node.file(GATEWAY_CONF).content_string.endswith("# edited by hand\n")
    assert password_hash("mlflow_team_b") != hash_before
    assert json.loads(node.file(BUCKET_BACKUP_STATUS).content_string) == stale

    rc, applied, output = reconcile(tmp_path / "applied.json")
    assert rc == 0, output[-5000:]
    assert applied["mode"] == "apply" and applied["errors"] == [], applied["errors"]
    # What it changed is that drift and nothing else: on every host after the jobs, the
    # second run of the site playbook (steps-covered counts on it).
    fixed = sorted((entry["host"], entry["action"], entry["resource"]) for entry in applied["drift"])
    assert fixed == found, json.dumps(applied["drift"], indent=1)[:6000]
    assert minio_root_client(HOST).bucket_exists("mlflow-team-b")
    assert user_policies("mlflow-team-a") == ["mlflow-team-a"]
    assert service_running(node, "team-b") and mlflow_health(node, 5002) == "200"
    assert node.file(GATEWAY_CONF).content_string == conf_before
    assert runner_host.service("mlops-runner").is_running
    backed_up = json.loads(node.file(BUCKET_BACKUP_STATUS).content_string)
    assert backed_up["result"] == "ok" and backed_up["last_success"] == backed_up["finished"] > stale["finished"]
    # team-b's MLflow reaches its database with the password it was given.
    search = node.run("python3 -c \"import urllib.request as u; print(u.urlopen("
                      "'http://127.0.0.1:5002/api/2.0/mlflow/experiments/search?max_results=1', timeout=30).status)\"")
    assert search.stdout.strip() == "200", search.stderr
    assert gateway_get(8443, "/health").status_code == 200
    # The password the apply set again (a no_log loop item) is in neither report nor output.
    password = (CREDENTIALS / "tracking-services" / "team-b" / "database.password").read_text().strip()
    assert password not in (tmp_path / "applied.json").read_text() + (tmp_path / "drift.json").read_text() + output
