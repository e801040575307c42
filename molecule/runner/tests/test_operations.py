"""The operator's side of the all-in-one platform: bad input refused before any change,
and the operations of playbooks/tracking_service.yml on one service. The tests put back
what they change, but for the delete and purge of team-b (changes_platform: it runs after
the scenario's unmarked tests, see molecule/conftest.py)."""

import json
import os
import pathlib
import re
import time

import pytest
import requests
import yaml

from mlops_testing import (TRACKING_SERVICES, as_postgres, gateway_get, gateway_session, gateway_url, group_vars,
                           host, minio_client, minio_root_client, mlflow_health, module_result, platform_host,
                           recap_changed, run_module, service_keys, service_running, user_password)
from mlops_testing import platform_playbook as playbook

HOST = platform_host()
node = host(HOST)
# The scenario's services as molecule.yml gives them: the bad-input tests change one field.
SERVICES_AS_GIVEN = group_vars()["mlops_tracking_services"]
PREFLIGHT_PLAY = "Check every role's input before any host changes"
BACKUPS = "/var/backups/mlops"


def with_change(index, **changes):
    services = [dict(entry) for entry in SERVICES_AS_GIVEN]
    services[index].update(changes)
    return services


def services_given(services):
    return {"mlops_tracking_services": services}


@pytest.mark.parametrize("extra_vars,words", [
    (services_given(with_change(0, name="Team-A")), ["Team-A", "lowercase letters, digits and hyphens"]),
    (services_given(with_change(1, name="team_b")), ["team_b", "lowercase letters, digits and hyphens"]),
    (services_given(with_change(1, mlflow_port=5001)), ["tracking_services", "no two services may share a port"]),
    (services_given(with_change(1, gateway_port=8443)), ["tracking_services", "no two services may share a port"]),
    (services_given(with_change(0, server_name="https://mlflow.example.com")), ["server_name", "no scheme"]),
    (services_given(with_change(0, bucket="s3://mlflow-team-a")), ["bucket", "lowercase"]),
    ({"watchdog_interval": 0}, ["watchdog_interval must be 1 or more"]),
    ({"mlflow_gc_on_calendar": "every blue moon"}, ["mlflow_gc_on_calendar must be a systemd calendar expression"]),
], ids=["capitals", "underscore", "mlflow-port-twice", "gateway-port-twice", "host-with-scheme", "bucket-not-a-name",
        "watchdog-interval", "gc-calendar"])
def test_site_refuses_bad_input_before_any_change(extra_vars, words):
    rc, output = playbook("site", extra_vars)
    assert rc != 0, output[-3000:]
    for word in words:
        assert word in output, output[-3000:]
    # The run stopped in the checking play: no role ran, nothing changed.
    assert re.findall(r"^PLAY \[(.*?)\]", output, re.M) == [PREFLIGHT_PLAY], output[-3000:]
    # Every host of the inventory (with the runner scenario's runners, also those whose
    # own checks passed) stopped there.
    changed = recap_changed(output)
    assert changed and set(changed) == {0}, output[-3000:]


@pytest.mark.parametrize("args,words", [
    ({"artifacts_destination": "/srv/mlflow/artifacts", "port": 5003}, ["artifacts_destination", "s3://"]),
    ({"artifacts_destination": "s3://mlflow-team-c", "port": 5003, "allowed_hosts": ["https://mlflow.example.com"]},
     ["allowed_hosts", "has a scheme"]),
    ({"artifacts_destination": "s3://mlflow-team-c", "port": 5001}, ["port 5001", "team-a"]),
], ids=["artifacts-not-s3", "allowed-host-with-scheme", "port-of-another-service"])
def test_module_refuses_bad_input_before_any_change(args, words):
    args = dict(args, name="team-c", state="started", backend_store_uri="postgresql://u:p@127.0.0.1:5432/mlflow_team_c")
    result = module_result(run_module(HOST, "mlops.platform.tracking_service", args), HOST)
    assert result.get("failed") and not result.get("changed"), result
    for word in words:
        assert word in result["msg"], result["msg"]
    assert not node.file("/etc/mlflow/services/team-c.env").exists


def test_stop_stops_only_that_service_and_start_brings_it_back():
    rc, output = playbook("tracking_service", None, "-e", "op=stop", "-e", "service=team-b")
    assert rc == 0, output[-3000:]
    assert not service_running(node, "team-b") and mlflow_health(node, 5002) == ""
    assert service_running(node, "team-a") and gateway_get(8443, "/health").status_code == 200

    rc, output = playbook("tracking_service", None, "-e", "op=start", "-e", "service=team-b")
    assert rc == 0, output[-3000:]
    assert service_running(node, "team-b") and mlflow_health(node, 5002) == "200"

    # A service of the inventory that was never created is refused, naming it: start and
    # stop act on the service alone and install nothing (op=create does).
    team_c = {"name": "team-c", "mlflow_port": 5003, "gateway_port": 8445}
    rc, output = playbook("tracking_service", services_given(SERVICES_AS_GIVEN + [team_c]),
                          "-e", "op=start", "-e", "service=team-c")
    assert rc != 0
    assert '["team-c"] never ran on %s' % HOST in output and "op=create" in output, output[-3000:]
    assert not node.file("/etc/mlflow/services/team-c.env").exists
    assert not database_exists("mlflow_team_c")


def test_users_file_replaces_the_services_users(tmp_path):
    users = tmp_path / "users.yml"
    users.write_text("{'user_name': 'carol', 'pass': 'Carol-pass-2026'}\n")
    rc, output = playbook("tracking_service", None, "-e", "op=users", "-e", "service=team-a",
                          "-e", "users_file=%s" % users)
    assert rc == 0, output[-3000:]
    assert "Carol-pass-2026" not in output
    search = "/api/2.0/mlflow/experiments/search?max_results=1"
    assert gateway_get(8443, search, ("carol", "Carol-pass-2026")).status_code == 200
    assert gateway_get(8443, search, ("alice", user_password("team-a", "alice"))).status_code == 401
    # Only team-a's users changed.
    assert "bob" in node.run("cut -d: -f1 /etc/nginx/mlops/team-b.htpasswd").stdout.split()

    # The inventory's users again, as the next site run would do.
    rc, output = playbook("gateway")
    assert rc == 0, output[-3000:]
    assert gateway_get(8443, search, ("alice", user_password("team-a", "alice"))).status_code == 200
    assert gateway_get(8443, search, ("carol", "Carol-pass-2026")).status_code == 401


def database_exists(name):
    return as_postgres(node, "select count(*) from pg_database where datname = '%s'" % name) == "1"


@pytest.mark.changes_platform
def test_delete_keeps_the_data_and_purge_drops_it():
    rc, output = playbook("tracking_service", None, "-e", "op=delete", "-e", "service=team-b")
    assert rc == 0, output[-3000:]
    assert not service_running(node, "team-b")
    assert not node.file("/etc/mlflow/services/team-b.env").exists
    assert not node.file("/etc/nginx/conf.d/mlops-team-b.conf").exists
    assert not node.file("/etc/nginx/mlops/team-b.htpasswd").exists
    with pytest.raises(requests.exceptions.ConnectionError):
        gateway_get(8444, "/health")
    # team-a is untouched, its users included; team-b's data is kept.
    assert service_running(node, "team-a") and gateway_get(8443, "/health").status_code == 200
    search = "/api/2.0/mlflow/experiments/search?max_results=1"
    assert gateway_get(8443, search, ("alice", user_password("team-a", "alice"))).status_code == 200
    assert database_exists("mlflow_team_b")
    assert minio_root_client(HOST).bucket_exists("mlflow-team-b")
    assert (TRACKING_SERVICES / "team-b" / "database.password").exists()
    # Its timers are off; its backup stays.
    for timer in ("mlflow-gc@team-b.timer", "mlflow-bucket-backup@team-b.timer"):
        assert node.run("systemctl is-enabled %s", timer).stdout.strip() != "enabled", timer
    assert node.file(BACKUPS + "/team-b/bucket-status.json").is_file

    rc, output = playbook("tracking_service", None, "-e", "op=delete", "-e", "service=team-b", "-e", "purge=true")
    assert rc == 0, output[-3000:]
    assert not database_exists("mlflow_team_b")
    assert not minio_root_client(HOST).bucket_exists("mlflow-team-b")
    assert not (TRACKING_SERVICES / "team-b").exists()
    assert database_exists("mlflow_team_a") and minio_root_client(HOST).bucket_exists("mlflow-team-a")


def test_gateway_public_host_alone_reaches_the_mlflow_services_allowed_hosts():
    """gateway_public_host given for the gateway host only (here as an extra variable,
    which its hostvars carry): the MLflow play, which runs no gateway task, would allow
    that name in every service's Host header check. Check mode, the services step alone
    (its tag): nothing changes."""
    rc, output = playbook("mlflow", {"gateway_public_host": "mlflow.example.test"}, "--check", "--diff",
                          "--tags", "mlflow_services")
    assert rc == 0, output[-3000:]
    for name, port in (("team-a", 8443), ("team-b", 8444)):
        assert re.search(r'^\+MLFLOW_SERVER_ALLOWED_HOSTS="?mlflow\.example\.test:%d,' % port, output, re.M), \
            output[-5000:]
    assert "mlflow.example.test" not in node.file("/etc/mlflow/services/team-a.env").content_string


def task_names(path):
    """The names of every task in a task file, those inside blocks too."""
    names, tasks = [], list(yaml.safe_load(path.read_text()) or [])
    while tasks:
        task = tasks.pop(0)
        names.append(task["name"])
        tasks += task.get("block", []) + task.get("rescue", []) + task.get("always", [])
    return names


def shared_task_names(path):
    """The tasks of mlops.platform._common a task file imports (import_role tasks_from),
    named as Ansible shows them."""
    common = path.parents[2] / "_common" / "tasks"
    return {"mlops.platform._common : " + name
            for task in yaml.safe_load(path.read_text()) or []
            if (task.get("ansible.builtin.import_role") or {}).get("name") == "mlops.platform._common"
            for name in task_names(common / (task["ansible.builtin.import_role"]["tasks_from"] + ".yml"))}


def test_one_step_of_one_role_runs_alone_by_its_tag():
    """--tags gateway_configure: every role's checks (tagged always) and the gateway's
    configuration step, nothing else; on the converged host nothing changes."""
    roles = pathlib.Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / "roles"
    allowed = set()
    for role in roles.iterdir():
        prefix = "mlops.platform.%s : " % role.name
        for part in ("preflight.yml", "set_vars.yml"):
            if (role / "tasks" / part).exists():
                allowed.update(prefix + name for name in task_names(role / "tasks" / part))
                allowed.update(shared_task_names(role / "tasks" / part))
        # The steps of main.yml tagged always (the checks) or with the tag asked for.
        allowed.update(prefix + task["name"] for task in yaml.safe_load((role / "tasks" / "main.yml").read_text())
                       if {"always", "gateway_configure"} & set(task.get("tags", [])))
    allowed.update("mlops.platform.gateway : " + name for name in task_names(roles / "gateway/tasks/configure.yml"))
    allowed.update(shared_task_names(roles / "gateway/tasks/configure.yml"))
    rc, output = playbook("site", None, "--check", "--tags", "gateway_configure")
    assert rc == 0, output[-3000:]
    # Ansible validates each role's arguments first, whatever the tags.
    tasks = {task for task in re.findall(r"^TASK \[(.*?)\]", output, re.M)
             if " : " in task and " : Validating arguments against arg spec " not in task}
    assert "mlops.platform.gateway : Write the server of every service" in tasks, tasks
    assert "mlops.platform.mlflow : Check mlflow_tracking_services" in tasks, tasks
    assert tasks - allowed == set(), sorted(tasks - allowed)
    changed = recap_changed(output)
    assert changed and set(changed) == {0}, output[-3000:]


def test_mlflow_gc_deletes_for_good_what_was_deleted_long_enough_ago():
    """mlflow_gc_enabled, runs deleted more than a day ago (this scenario's
    mlflow_gc_older_than): the timer's unit, started by hand, removes a run deleted two
    days ago, its rows and its artifact, and keeps a run deleted a moment ago and one not
    deleted, with theirs."""
    assert node.check_output("systemctl is-enabled mlflow-gc@team-a.timer") == "enabled"
    client = gateway_session("team-a", "alice")
    api = gateway_url(8443, "/api/2.0/mlflow")
    experiment = client.post(api + "/experiments/create", json={"name": "gc-%d" % time.time()}, timeout=30).json()
    runs = {}
    for name in ("old", "fresh", "kept"):
        info = client.post(api + "/runs/create", json={"experiment_id": experiment["experiment_id"]},
                           timeout=30).json()["run"]["info"]
        key = info["artifact_uri"].split(":/", 1)[1] + "/note.txt"
        put = client.put(gateway_url(8443, "/api/2.0/mlflow-artifacts/artifacts/" + key), data=name.encode(),
                         timeout=30)
        assert put.status_code == 200, put.text
        runs[name] = (info["run_id"], key)
    for name in ("old", "fresh"):
        assert client.post(api + "/runs/delete", json={"run_id": runs[name][0]}, timeout=30).status_code == 200
    as_postgres(node, "update runs set deleted_time = deleted_time - 2 * 86400 * 1000 where run_uuid = '%s'"
                % runs["old"][0], "mlflow_team_a")
    node.check_output("systemctl start mlflow-gc@team-a.service")
    bucket = minio_client(HOST, *service_keys("team-a"))

    def stored(name):
        return [o.object_name for o in bucket.list_objects("mlflow-team-a", prefix=runs[name][1], recursive=True)]

    assert client.get(api + "/runs/get", params={"run_id": runs["old"][0]}, timeout=30).status_code == 404
    assert stored("old") == []
    assert client.get(api + "/runs/get", params={"run_id": runs["fresh"][0]},
                      timeout=30).json()["run"]["info"]["lifecycle_stage"] == "deleted"
    assert client.get(api + "/runs/get", params={"run_id": runs["kept"][0]},
                      timeout=30).json()["run"]["info"]["lifecycle_stage"] == "active"
    assert stored("fresh") == [runs["fresh"][1]] and stored("kept") == [runs["kept"][1]]
    journal = node.check_output("journalctl -u mlflow-gc@team-a.service --no-pager --output=cat")
    assert "Run with ID %s has been permanently deleted" % runs["old"][0] in journal, journal[-2000:]


# Changes a file's first byte and gives it back its modification time: bit rot on the
# backup storage, which a copy by size and time cannot see.
ROT = """
import os, sys
path = sys.argv[1]
stat = os.stat(path)
with open(path, "r+b") as f:
    first = f.read(1)
    f.seek(0)
    f.write(bytes([first[0] ^ 0xFF]))
os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
"""


def bucket_backup_status(service):
    return json.loads(node.file("%s/%s/bucket-status.json" % (BACKUPS, service)).content_string)


def mirrored_files(service):
    """{key: (size, mode)} of every file in the service's bucket mirror on the host."""
    listing = node.check_output("find %s/%s/bucket -type f -printf '%%P %%s %%m\\n'", BACKUPS, service)
    return {key: (int(size), mode) for key, size, mode in (line.rsplit(" ", 2) for line in listing.splitlines())}


@pytest.mark.usefixtures("tutorial_run", "big_artifact")
def test_the_bucket_backup_timer_copies_every_object_and_finds_a_changed_copy():
    """mlflow_bucket_backup_enabled: the converge backed up both services' buckets at once
    (there was no backup yet); the timer's unit, started by hand, copies every object of
    team-a's bucket with the service's own keys and compares each file with its object. A
    file changed on the backup storage (its size and time kept) fails the run, named, and
    is copied again; the next run is good."""
    for service in ("team-a", "team-b"):
        assert node.check_output("systemctl is-enabled mlflow-bucket-backup@%s.timer", service) == "enabled"
        assert bucket_backup_status(service)["result"] == "ok", bucket_backup_status(service)
    node.check_output("systemctl start mlflow-bucket-backup@team-a.service")
    status = bucket_backup_status("team-a")
    bucket = minio_client(HOST, *service_keys("team-a"))
    objects = {o.object_name: o for o in bucket.list_objects("mlflow-team-a", recursive=True)}
    assert status["result"] == "ok" and status["errors"] == [], status
    assert status["objects"] == len(objects) > 0 and status["last_success"] == status["finished"]
    # Every object's content was compared, the 2 GiB multipart one (big_artifact) too.
    assert status["verified"] == len(objects) and status["size_only"] == 0, status
    assert mirrored_files("team-a") == {key: (obj.size, "600") for key, obj in objects.items()}
    assert node.file(BACKUPS + "/team-a/bucket-status.json").mode == 0o600

    key = next(key for key, obj in objects.items() if key.endswith("/MLmodel"))
    node.check_output("python3 -c %s %s", ROT, "%s/team-a/bucket/%s" % (BACKUPS, key))
    done = node.run("systemctl start mlflow-bucket-backup@team-a.service")
    assert done.rc != 0
    failed = bucket_backup_status("team-a")
    assert failed["result"] == "failed" and failed["last_success"] == status["last_success"], failed
    assert failed["errors"] == ["1 files of the backup differed from their objects (changed on the backup storage, "
                                "or the object replaced while it was copied) and were copied again: " + key], \
        failed["errors"]
    journal = node.check_output("journalctl -u mlflow-bucket-backup@team-a.service --no-pager --output=cat")
    assert "bucket backup failed: 1 files of the backup differed" in journal, journal[-2000:]
    md5 = node.check_output("md5sum %s", "%s/team-a/bucket/%s" % (BACKUPS, key)).split()[0]
    assert md5 == objects[key].etag.strip('"')

    node.check_output("systemctl start mlflow-bucket-backup@team-a.service")
    mended = bucket_backup_status("team-a")
    assert mended["result"] == "ok" and mended["copied"] == 0 and mended["last_success"] == mended["finished"]
