"""Verify the platform split over its hosts as its users and operators meet it: each
service on its own host, one tracking service served by MLflow on two hosts behind the
gateway's upstream (and still served with either of them down), MinIO across two nodes,
PostgreSQL with a synchronous standby, a job run by the runner on its own host; last
(changes_platform, see molecule/conftest.py), a backup and a restore across the hosts,
every host restarted at once, then the primary killed under load and a failover to the standby."""

import json
import os
import pathlib
import re
import subprocess
import tempfile
import time

import mlflow
import pytest
import requests
from mlflow.tracking import MlflowClient

from mlops_testing import JOB_FINAL as FINAL
from mlops_testing import (CREDENTIALS, EPHEMERAL, MetricLoad, address, as_postgres, commit_repository, connects,
                           gateway_get, host, inventory_directory, jobs_cli, listening, minio_client, platform_host,
                           recap_changed, run_playbook, service_keys, user_password, wait_for, wait_for_job)

GATEWAY = platform_host()
MLFLOW_HOSTS = ("mh-mlflow1", "mh-mlflow2")
MINIO_HOSTS = ("mh-minio1", "mh-minio2")
RUNNER = "mh-runner"
ALICE = ("alice", user_password("team-a", "alice"))
SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"
REPO = "/srv/git/hello"
# mh-db's synchronous standby (a MinIO node too).
STANDBY = "mh-minio2"


def get(path, auth=ALICE):
    return gateway_get(8443, path, auth)


def test_each_service_runs_on_its_own_hosts():
    placement = {"postgresql": ["mh-db", STANDBY], "minio": list(MINIO_HOSTS), "mlflow@team-a": list(MLFLOW_HOSTS),
                 "nginx": [GATEWAY], "mlops-runner": [RUNNER]}
    everyone = ["mh-db", *MINIO_HOSTS, *MLFLOW_HOSTS, GATEWAY, RUNNER]
    for service, hosts in placement.items():
        running = [name for name in everyone if host(name).service(service).is_running]
        assert running == hosts, (service, running)


# Each service its clients reach over the network listens on its host's platform address
# (the address its inventory name resolves to there), PostgreSQL on loopback too; none
# on every address.
LISTENERS = [("mh-db", 5432), (STANDBY, 5432), (MINIO_HOSTS[0], 9000), (MINIO_HOSTS[1], 9000), (MLFLOW_HOSTS[0], 5001),
             (MLFLOW_HOSTS[1], 5001), (MLFLOW_HOSTS[0], 5080), (MLFLOW_HOSTS[1], 5080)]


@pytest.mark.parametrize("name,port", LISTENERS, ids=str)
def test_each_service_listens_on_its_platform_address_only(name, port):
    bound = {bound_to for bound_to, number in listening(host(name)) if number == port}
    assert bound - {"127.0.0.1", "::1"} == {address(name)}, bound


# An https GET on a test host: prints the status, fails on any TLS or HTTP error. argv:
# url, CA file ("" for the system's CAs).
_GET = ("import ssl, sys, urllib.request as u\n"
        "context = ssl.create_default_context(cafile=sys.argv[2] or None)\n"
        "print(u.urlopen(sys.argv[1], timeout=5, context=context).status)\n")
MLFLOW_CA = "/etc/mlops-platform/mlflow-ca.crt"


def fetch(node, url, ca=""):
    return node.run("python3 -c %s %s %s", _GET, url, ca)


def test_the_gateway_reaches_mlflow_and_the_job_api_over_verified_tls():
    gateway = host(GATEWAY)
    config = gateway.file("/etc/nginx/conf.d/mlops-team-a.conf").content_string
    for name in MLFLOW_HOSTS:
        assert "server %s:5001 max_fails=0;" % name in config, config
    assert "proxy_pass https://mlops_team-a;" in config and "proxy_pass https://mlops_jobs_api;" in config
    assert "proxy_ssl_verify on;" in config and "proxy_ssl_trusted_certificate %s;" % MLFLOW_CA in config
    for name, port, path in ((MLFLOW_HOSTS[0], 5001, "/health"), (MLFLOW_HOSTS[1], 5001, "/health"),
                             (MLFLOW_HOSTS[0], 5080, "/api/mlops/jobs/health")):
        # TLS with a certificate of the MLflow hosts' CA for the name the gateway uses...
        verified = fetch(gateway, "https://%s:%d%s" % (name, port, path), MLFLOW_CA)
        assert verified.rc == 0 and verified.stdout.strip() == "200", (name, port, verified.stderr[-500:])
        # ...which no public CA vouches for, and no plain-text answer at all.
        assert "CERTIFICATE_VERIFY_FAILED" in fetch(gateway, "https://%s:%d%s" % (name, port, path)).stderr
        plain = gateway.run("python3 -c %s %s", "import sys, urllib.request as u; u.urlopen(sys.argv[1], timeout=5)",
                            "http://%s:%d%s" % (name, port, path))
        assert plain.rc != 0, (name, port, plain.stdout)


def test_mlflow_answers_the_gateway_and_no_host_outside_its_allow_list():
    # mlflow@'s IPAddressAllow: the gateway, the database hosts and the S3 endpoint; the
    # runner host (a job's host) gets no answer from MLflow's port, and MLflow none
    # from the runner host's.
    for name in MLFLOW_HOSTS:
        assert connects(host(GATEWAY), address(name), 5001), name
        assert not connects(host(RUNNER), address(name), 5001), name
    # From inside MLflow's unit: its database, the standby a failover may promote and its
    # S3 endpoint (the first MinIO node) answer; a port on the runner host, which answers
    # the MLflow host itself, does not.
    mlflow = host(MLFLOW_HOSTS[0])
    for database in ("mh-db", STANDBY):
        assert connects(mlflow, address(database), 5432, unit="mlflow@team-a"), database
    assert connects(mlflow, address(MINIO_HOSTS[0]), 9000, unit="mlflow@team-a")
    runner = host(RUNNER)
    runner.check_output("systemd-run --unit allow-list-probe --collect -p RuntimeMaxSec=120 "
                        "python3 -m http.server --bind %s 9099", address(RUNNER))
    try:
        assert wait_for(lambda: connects(runner, address(RUNNER), 9099), timeout=10, interval=0.2)
        assert connects(mlflow, address(RUNNER), 9099)
        assert not connects(mlflow, address(RUNNER), 9099, unit="mlflow@team-a")
    finally:
        runner.run("systemctl stop allow-list-probe")


# mlops.platform.firewall: each platform port and the hosts that use it; every other
# platform host is refused (the controller is trusted in molecule.yml, as a bastion).
EVERY_HOST = ("mh-db", *MINIO_HOSTS, *MLFLOW_HOSTS, GATEWAY, RUNNER)
OPENINGS = [("mh-db", 5432, {*MLFLOW_HOSTS, RUNNER, STANDBY}), (STANDBY, 5432, {*MLFLOW_HOSTS, RUNNER, "mh-db"}),
            (MINIO_HOSTS[0], 9000, {*MLFLOW_HOSTS, MINIO_HOSTS[1]}),
            (MLFLOW_HOSTS[0], 5001, {GATEWAY}), (MLFLOW_HOSTS[0], 5080, {GATEWAY})]


@pytest.mark.parametrize("target,port,users", OPENINGS, ids=str)
def test_each_platform_port_answers_only_the_hosts_that_use_it(target, port, users):
    answered = {name for name in EVERY_HOST if name != target and connects(host(name), address(target), port)}
    assert answered == users, (target, port)


def firewall_run(*args, report=None):
    """playbooks/firewall.yml on mh-db, with the reconcile report's callback when report is given."""
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    if report:
        env.update(ANSIBLE_CALLBACKS_ENABLED="mlops.platform.drift_report", MLOPS_DRIFT_REPORT=str(report))
    done = subprocess.run(["ansible-playbook", "-i", str(inventory_directory()), "mlops.platform.firewall",
                           "--limit", "mh-db", *args], capture_output=True, text=True, timeout=600, check=False,
                          env=env)
    return done.returncode, done.stdout + done.stderr


def test_the_firewall_keeps_the_operators_rules_and_reports_and_mends_a_rule_removed_by_hand(tmp_path):
    db = host("mh-db")
    db.check_output("nft add table inet operator")
    db.check_output("nft add chain inet operator input '{ type filter hook input priority 0; policy accept; }'")
    db.check_output("nft add rule inet operator input tcp dport 2222 counter accept")
    try:
        ours = db.check_output("nft -a list table inet mlops_platform")
        handle = re.search(r"tcp dport 5432 reject with tcp reset # handle (\d+)", ours).group(1)
        db.check_output("nft delete rule inet mlops_platform input handle %s" % handle)
        assert connects(host(GATEWAY), address("mh-db"), 5432)
        # Report mode: the removed rule is drift, and nothing changes.
        report = tmp_path / "drift.json"
        rc, output = firewall_run("--check", "--diff", report=report)
        assert rc == 0, output[-3000:]
        drift = json.loads(report.read_text())["drift"]
        assert [d["host"] for d in drift if "firewall rules changed outside" in d["task"]] == ["mh-db"], drift
        assert connects(host(GATEWAY), address("mh-db"), 5432)
        # Apply mode puts it back; the operator's table is left as it was.
        rc, output = firewall_run()
        assert rc == 0, output[-3000:]
        assert not connects(host(GATEWAY), address("mh-db"), 5432)
        assert "tcp dport 2222" in db.check_output("nft list table inet operator")
        rc, output = firewall_run()
        assert rc == 0 and set(recap_changed(output)) == {0}, output[-3000:]
    finally:
        db.run("nft delete table inet operator")


def test_every_database_session_from_another_host_is_encrypted_and_plain_text_is_refused():
    sessions = as_postgres(host("mh-db"), "SELECT DISTINCT a.usename || ' ' || s.ssl FROM pg_stat_activity a "
                           "JOIN pg_stat_ssl s USING (pid) WHERE a.client_addr IS NOT NULL").split()
    # MLflow's pool (team-a's login), the runner's listening connection and the standby's
    # stream, each over TLS (the job API connects per request; its conninfo is checked below).
    users = dict(zip(sessions[::2], sessions[1::2]))
    assert {"mlflow_team_a", "mlops_jobs_runner", "mlops_replication"} <= set(users), sessions
    assert set(users.values()) == {"true"}, sessions
    # They verify the server's certificate and name with the platform's CA.
    assert "sslmode=verify-full" in host(MLFLOW_HOSTS[0]).file("/etc/mlflow/services/team-a.env").content_string
    assert "sslmode=verify-full" in host(RUNNER).file("/etc/mlops-runner/config.json").content_string
    assert "sslmode=verify-full" in host(MLFLOW_HOSTS[0]).file("/etc/mlops-jobs/api.env").content_string
    plain = host(MLFLOW_HOSTS[0]).run("PGCONNECT_TIMEOUT=5 psql -w 'host=mh-db dbname=mlflow_team_a "
                                      "user=mlflow_team_a sslmode=disable' -c 'SELECT 1'")
    assert plain.rc != 0 and "no encryption" in plain.stderr, plain.stderr


# The cluster's private CA on the controller (minio_tls_enabled in molecule.yml).
MINIO_CA = CREDENTIALS / MINIO_HOSTS[0] / "minio" / "ca.crt"


def test_minio_runs_as_one_cluster_over_both_nodes_over_tls():
    for name in MINIO_HOSTS:
        answer = requests.get("https://%s:9000/minio/health/cluster" % address(name), timeout=10,
                              verify=str(MINIO_CA))
        assert answer.status_code == 200, (name, answer.status_code)
    volumes = host(MINIO_HOSTS[0]).file("/etc/default/minio").content_string
    assert all("https://%s:9000" % name in volumes for name in MINIO_HOSTS), volumes


def test_mlflow_reaches_minio_over_https_checked_with_its_ca():
    for name in MLFLOW_HOSTS:
        node = host(name)
        env = node.file("/etc/mlflow/services/team-a.env").content_string
        assert re.search(r'^MLFLOW_S3_ENDPOINT_URL="?https://%s:9000"?$' % MINIO_HOSTS[0], env, re.M), env
        assert re.search(r'^AWS_CA_BUNDLE="?/etc/mlflow/s3-ca\.crt"?$', env, re.M), env
        assert node.file("/etc/mlflow/s3-ca.crt").content_string == MINIO_CA.read_text()
        # From the MLflow host: https answers, checked with that CA; plain HTTP does not.
        assert fetch(node, "https://%s:9000/minio/health/live" % MINIO_HOSTS[0], "/etc/mlflow/s3-ca.crt").rc == 0
        plain = node.run("python3 -c %s %s", "import sys, urllib.request as u; u.urlopen(sys.argv[1], timeout=5)",
                         "http://%s:9000/minio/health/live" % MINIO_HOSTS[0])
        assert plain.rc != 0, plain.stdout


def test_the_tutorial_logs_through_the_gateway_into_the_cluster(tutorial_run):
    assert tutorial_run["status"] == "FINISHED" and tutorial_run["predictions"] > 0
    # Any node of the cluster serves the bucket.
    for name in MINIO_HOSTS:
        client = minio_client(name, *service_keys("team-a"), secure=True, ca=MINIO_CA)
        objects = [o.object_name for o in client.list_objects("mlflow-team-a", recursive=True)]
        assert any(path.endswith("/MLmodel") for path in objects), (name, objects)


def test_the_service_is_served_while_either_mlflow_host_is_down(tutorial_run):
    run_path = "/api/2.0/mlflow/runs/get?run_id=" + tutorial_run["run_id"]
    try:
        for down, up in (MLFLOW_HOSTS, MLFLOW_HOSTS[::-1]):
            host(down).check_output("systemctl stop mlflow@team-a")
            host(up).check_output("systemctl is-active mlflow@team-a")
            for _request in range(6):
                answer = get(run_path)
                assert answer.status_code == 200, (down, answer.status_code, answer.text[:200])
                assert answer.json()["run"]["info"]["status"] == "FINISHED"
            host(down).check_output("systemctl start mlflow@team-a")
            wait_healthy(down)
    finally:
        for name in MLFLOW_HOSTS:
            host(name).run("systemctl start mlflow@team-a")


def wait_healthy(name, timeout=120):
    assert wait_for(lambda: fetch(host(name), "https://%s:5001/health" % name, "/etc/mlflow/tls/ca.crt").rc == 0,
                    timeout), "mlflow@team-a on %s did not answer /health again" % name


def test_a_job_submitted_through_the_gateway_runs_on_the_runner_host(mlflow_env):
    commit = commit_repository(RUNNER, REPO, {"hello.sh": "echo hello from $(hostname)\n"}, "hello")
    job_id = jobs_cli("submit", "--repo", "file://" + REPO, "--commit", commit, "--", "sh", "hello.sh")["id"]
    job = wait_for_job(job_id, lambda j: j["status"] in FINAL, timeout=300, interval=2)
    assert job["status"] == "SUCCEEDED" and job["runner"] == RUNNER, job
    path = MlflowClient().download_artifacts(job["run_id"], "logs/job.log", str(EPHEMERAL))
    assert "hello from %s" % RUNNER in pathlib.Path(path).read_text()


@pytest.mark.changes_platform
def test_backup_and_restore_across_the_hosts(tutorial_run, mlflow_env):
    """The dump is written on the database host and the bucket's mirror on the first MLflow
    host; a restore stops the service on both MLflow hosts, puts the database and the
    objects back and starts it on both: a run logged after the backup is gone, the
    tutorial's run and its model are back, through the gateway."""
    location = "/var/backups/mlops/team-a"
    rc, output = run_playbook("mlops.platform.backup")
    assert rc == 0, output[-5000:]
    dump = host("mh-db").file(location + "/database/mlflow_team_a.sql")
    assert dump.is_file and dump.user == "postgres" and dump.mode == 0o600
    assert tutorial_run["run_id"] in dump.content_string
    mirrored = host(MLFLOW_HOSTS[0]).check_output("find %s/bucket -name MLmodel" % location)
    assert mirrored, "no model in the bucket's mirror on " + MLFLOW_HOSTS[0]
    assert not host(MLFLOW_HOSTS[1]).file(location).exists
    # The scheduled backup (mlflow_bucket_backup_enabled), from the first MLflow host only,
    # with the service's own keys over TLS: the playbook's mirror is its own, whole; it
    # copies nothing and finds every file its object's content.
    first = host(MLFLOW_HOSTS[0])
    first.check_output("systemctl start mlflow-bucket-backup@team-a.service")
    status = json.loads(first.file(location + "/bucket-status.json").content_string)
    assert status["result"] == "ok" and status["copied"] == 0, status
    assert status["verified"] == status["objects"] > 0, status
    assert host(MLFLOW_HOSTS[1]).run("systemctl is-enabled mlflow-bucket-backup@team-a.timer").stdout.strip() in (
        "disabled", ""), "the bucket backup is scheduled on " + MLFLOW_HOSTS[1]

    client = MlflowClient()
    experiment_id = client.get_run(tutorial_run["run_id"]).info.experiment_id
    later = client.create_run(experiment_id, run_name="after-the-backup").info.run_id
    client.set_terminated(later)

    rc, output = run_playbook("mlops.platform.restore", {"overwrite": True})
    assert rc == 0, output[-5000:]
    for name in MLFLOW_HOSTS:
        host(name).check_output("systemctl is-active mlflow@team-a")
    assert get("/api/2.0/mlflow/runs/get?run_id=" + later).status_code == 404
    assert client.get_run(tutorial_run["run_id"]).info.status == "FINISHED"
    model = mlflow.artifacts.download_artifacts("runs:/%s/model" % tutorial_run["run_id"], dst_path=str(EPHEMERAL))
    assert (pathlib.Path(model) / "MLmodel").is_file()


def test_mlflow_gc_deletes_for_good_over_tls_from_the_first_mlflow_host_only(mlflow_env):
    """mlflow_gc_enabled (mlflow_gc_older_than 1d here): the unit on the first MLflow host
    deletes a run deleted two days ago, its rows on mh-db and its artifact in the MinIO
    cluster, through its own server over TLS (checked with the MLflow hosts' CA); the
    second MLflow host schedules none."""
    client = MlflowClient()
    experiment_id = client.get_experiment_by_name("Default").experiment_id
    run_id = client.create_run(experiment_id, run_name="gc-over-tls").info.run_id
    with tempfile.TemporaryDirectory() as directory:
        note = pathlib.Path(directory) / "note.txt"
        note.write_text("gc")
        client.log_artifact(run_id, str(note))
    client.delete_run(run_id)
    as_postgres(host("mh-db"), "update runs set deleted_time = deleted_time - 2 * 86400 * 1000 where run_uuid = '%s'"
                % run_id, "mlflow_team_a")
    prefix = client.get_run(run_id).info.artifact_uri.split(":/", 1)[1] + "/"
    bucket = minio_client(MINIO_HOSTS[0], *service_keys("team-a"), secure=True, ca=str(MINIO_CA))
    assert [o.object_name for o in bucket.list_objects("mlflow-team-a", prefix=prefix, recursive=True)] != []

    first = host(MLFLOW_HOSTS[0])
    first.check_output("systemctl start mlflow-gc@team-a.service")
    assert get("/api/2.0/mlflow/runs/get?run_id=" + run_id).status_code == 404
    assert [o.object_name for o in bucket.list_objects("mlflow-team-a", prefix=prefix, recursive=True)] == []
    journal = first.check_output("journalctl -u mlflow-gc@team-a.service --no-pager --output=cat")
    assert "Run with ID %s has been permanently deleted" % run_id in journal, journal[-2000:]
    assert host(MLFLOW_HOSTS[1]).run("systemctl is-enabled mlflow-gc@team-a.timer").stdout.strip() in (
        "disabled", ""), "mlflow gc is scheduled on " + MLFLOW_HOSTS[1]


def job_log(run_id):
    """The job's log as uploaded to its run so far ('' while there is none)."""
    with tempfile.TemporaryDirectory() as directory:
        try:
            return pathlib.Path(MlflowClient().download_artifacts(run_id, "logs/job.log", directory)).read_text()
        except Exception:  # pylint: disable=broad-exception-caught
            return ""


def serves():
    try:
        return get(SEARCH).status_code == 200
    except requests.RequestException:
        return False


@pytest.mark.changes_platform
def test_every_host_restarted_at_once_serves_again_and_its_running_job_ends_lost(
        tutorial_run, mlflow_env, fault_figures):
    commit = commit_repository(RUNNER, REPO, {"long.sh": "echo step-1-done\nsleep 600\n",
                                              "hello.sh": "echo hello from $(hostname)\n"}, "long")
    job_id = jobs_cli("submit", "--repo", "file://" + REPO, "--commit", commit, "--", "sh", "long.sh")["id"]
    job = wait_for_job(job_id, lambda j: j["status"] == "RUNNING", timeout=300, interval=1)
    assert wait_for(lambda: "step-1-done" in job_log(job["run_id"]), timeout=60, interval=1), \
        "the job's log was never uploaded while it ran"

    # The whole platform restarted at once, as after a power cut: every container stopped
    # (its systemd shuts its services down; killed after 40 s) and started again, each
    # host with its address (molecule.yml) and its disks.
    started = time.monotonic()
    restarts = [subprocess.Popen(["podman", "restart", "--time", "40", name], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True) for name in EVERY_HOST]
    for name, restart in zip(EVERY_HOST, restarts):
        assert restart.wait(timeout=180) == 0, (name, restart.stderr.read())

    # Serving again with nothing done by hand: the gateway, MLflow on both hosts, the
    # database, and the tutorial's model read back from the MinIO cluster.
    assert wait_for(serves, timeout=300, interval=1), "the gateway did not serve team-a within 300 s"
    fault_figures.append("restart of all %d hosts    serving again after %5.1f s"
                         % (len(EVERY_HOST), time.monotonic() - started))
    for name in MLFLOW_HOSTS:
        wait_healthy(name)
    with tempfile.TemporaryDirectory() as directory:
        model = mlflow.artifacts.download_artifacts("runs:/%s/model" % tutorial_run["run_id"], dst_path=directory)
        assert (pathlib.Path(model) / "MLmodel").is_file()

    # The job that was running is LOST, its run FAILED with the log it had written.
    job = wait_for_job(job_id, lambda j: j["status"] in FINAL, timeout=180, interval=2)
    assert job["status"] == "LOST", job
    run = MlflowClient().get_run(job["run_id"])
    assert run.info.status == "FAILED" and run.data.tags["mlops.job_status"] == "LOST"
    assert "step-1-done" in job_log(job["run_id"])

    # The runner takes new jobs, and every firewall is back: a port still refused to a
    # host that does not use it.
    hello = jobs_cli("submit", "--repo", "file://" + REPO, "--commit", commit, "--", "sh", "hello.sh")["id"]
    assert wait_for_job(hello, lambda j: j["status"] in FINAL, timeout=300, interval=2)["status"] == "SUCCEEDED"
    assert not connects(host(GATEWAY), address("mh-db"), 5432)
    assert connects(host(RUNNER), address("mh-db"), 5432)


@pytest.mark.changes_platform
def test_the_primary_killed_under_load_fails_over_keeping_every_metric_and_repointing_every_client(
        tutorial_run, mlflow_env, fault_figures):
    """mh-db, the synchronous primary, killed (its container, as a host losing power) while
    two clients log metrics through the gateway; playbooks/failover.yml -e
    postgresql_primary=mh-minio2 leaves out the host that does not answer, promotes
    mh-minio2 and points MLflow on both hosts, the job API and the runner at it. Every metric
    the gateway acknowledged is on the new primary, the tutorial's run and model read back,
    a new job runs into it. (The old primary's return, its rebuild as the new primary's
    standby and a run with nothing left to do: the postgresql scenario's failover test, on
    hosts of their own.) Last: it leaves mh-minio2 the primary and mh-db down."""
    client = MlflowClient()
    experiment_id = client.create_experiment("failover-%d" % time.time())
    runs = [client.create_run(experiment_id).info.run_id for _number in range(2)]
    # Clients that wait a tenth of a second after an error, as a client's retries would.
    with MetricLoad("team-a", "alice", runs, pause_after_failure=0.1) as load:
        time.sleep(3)
        killed = subprocess.run(["podman", "kill", "mh-db"], capture_output=True, text=True, check=False)
        assert killed.returncode == 0, killed.stderr
        started = time.monotonic()
        rc, output = run_playbook("mlops.platform.failover", {"postgresql_primary": STANDBY})
        took = time.monotonic() - started
        assert rc == 0, output[-5000:]
        assert "[mh-db]: UNREACHABLE" in output, output[-3000:]
        # Logging goes on, into the new primary.
        load.mark()
        time.sleep(5)

    new = host(STANDBY)
    assert as_postgres(new, "select pg_is_in_recovery()") == "f"
    lost = load.lost_on(new, "mlflow_team_a")
    assert not lost, "acknowledged metrics not on the new primary, per run: %s" % lost
    assert all(load.acknowledged_after_mark.values()), (load.acknowledged_after_mark, load.failures)
    fault_figures.append("primary killed, failover.yml (%.0f s) under 2 clients: %d metrics acknowledged, "
                         "all kept; none acknowledged for %.0f s, %d requests failed"
                         % (took, sum(map(len, load.acknowledged.values())), load.longest_pause(),
                            sum(load.failures.values())))

    # Every client of the database names the new primary.
    for name, path in [(MLFLOW_HOSTS[0], "/etc/mlflow/services/team-a.env"),
                       (MLFLOW_HOSTS[1], "/etc/mlflow/services/team-a.env"),
                       (MLFLOW_HOSTS[0], "/etc/mlops-jobs/api.env"), (RUNNER, "/etc/mlops-runner/config.json")]:
        content = host(name).file(path).content_string
        assert STANDBY in content and "mh-db" not in content, (name, path)
    assert client.get_run(tutorial_run["run_id"]).info.status == "FINISHED"
    with tempfile.TemporaryDirectory() as directory:
        model = mlflow.artifacts.download_artifacts("runs:/%s/model" % tutorial_run["run_id"], dst_path=directory)
        assert (pathlib.Path(model) / "MLmodel").is_file()
    commit = commit_repository(RUNNER, REPO, {"hello.sh": "echo hello after the failover\n"}, "after")
    job_id = jobs_cli("submit", "--repo", "file://" + REPO, "--commit", commit, "--", "sh", "hello.sh")["id"]
    job = wait_for_job(job_id, lambda j: j["status"] in FINAL, timeout=300, interval=2)
    assert job["status"] == "SUCCEEDED", job
    assert as_postgres(new, "select status from runs where run_uuid = '%s'" % job["run_id"],
                       "mlflow_team_a") == "FINISHED"
