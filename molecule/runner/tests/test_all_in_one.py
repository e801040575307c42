"""Verify the all-in-one platform host as its users meet it: through the gateway, with
basic auth, from this machine (the controller), from the host itself and from runner-2
(outside team-b's allow-list). The tutorial's run and the 2 GB artifact are fixtures
(molecule/conftest.py), which test_backup_restore.py also asks for: its backup holds
them."""

import re

import pytest
from minio.error import S3Error

from mlops_testing import (PG_VERSION, TRACKING_SERVICES, address, connects, gateway_get, gateway_url, host, listening,
                           minio_client, module_result, platform_host, podman_exec, run_module, secret, service_keys,
                           unit_exposure, user_password)

HOST = platform_host()
node = host(HOST)


def test_every_service_runs_under_systemd_on_loopback():
    for name, port in (("team-a", 5001), ("team-b", 5002)):
        service = node.service("mlflow@" + name)
        assert service.is_running and service.is_enabled
        assert node.socket("tcp://127.0.0.1:%d" % port).is_listening
        assert not node.socket("tcp://0.0.0.0:%d" % port).is_listening
        assert "mlflow" in node.check_output("ps -o user= -p $(systemctl show -p MainPID --value mlflow@%s)" % name)


def test_nothing_listens_beyond_loopback_but_the_gateway_and_the_queue():
    """One host: MinIO (minio_listen_address), MLflow and the job API on loopback; the
    network reaches the gateway's ports (8443, 8444) and PostgreSQL, which
    postgresql_listen_addresses opens here for the runners' job queue, and whose pg_hba
    lets the network in as the runners' login to that database only. (Without runners
    PostgreSQL stays on loopback too: the upgrade scenario's one host checks it.)"""
    sockets = listening(node)
    exposed = {port for address, port in sockets if address not in ("127.0.0.1", "::1")}
    assert exposed == {8443, 8444, 5432}, sockets
    assert "--address 127.0.0.1:9000" in node.file("/etc/default/minio").content_string
    hba = node.file("/etc/postgresql/%s/main/pg_hba.conf" % PG_VERSION).content_string
    remote = [line.split() for line in hba.splitlines()
              if line.startswith("host") and "127.0.0.1/32" not in line and "::1/128" not in line]
    assert [rule[1:4] for rule in remote] == [["mlops_jobs", "mlops_jobs_runner", "10.89.202.0/24"]], remote


def postgresql_unit():
    return node.check_output("systemctl list-units --plain --no-legend 'postgresql@*' | cut -d' ' -f1")


@pytest.mark.parametrize("unit", ["minio.service", "mlflow@team-a.service", "mlops-jobs-api.service",
                                  "nginx.service", "postgresql", "mlops-watchdog.service",
                                  "mlflow-gc@team-a.service", "mlflow-bucket-backup@team-a.service"])
def test_every_unit_the_platform_runs_scores_ok_in_systemd_analyze_security(unit):
    # The platform's own units score 1.4 to 1.7 (the bucket backup, root without
    # capabilities, 1.7; the watchdog, root for systemctl kill, 2.0), Debian's nginx and
    # PostgreSQL with the roles' drop-ins about 2.6 and 1.4 (9.6 without).
    exposure, report = unit_exposure(node, postgresql_unit() if unit == "postgresql" else unit)
    assert exposure <= 4.0, report


def test_postgresql_runs_as_its_owner_without_capabilities():
    pid = node.check_output("systemctl show -p MainPID --value %s", postgresql_unit())
    status = node.file("/proc/%s/status" % pid).content_string
    assert re.search(r"^Uid:\s+%s\s" % node.user("postgres").uid, status, re.M), status
    assert re.search(r"^CapBnd:\s+0+$", status, re.M), status


def test_mlflow_exchanges_packets_with_loopback_only_here():
    # Everything MLflow needs is on this host: a process in mlflow@team-a's cgroup (as a
    # request MLflow was made to send would be) cannot reach the gateway at this host's
    # network address, which a process outside it reaches.
    address = node.check_output("hostname -I").split()[0]
    assert connects(node, address, 8443)
    assert not connects(node, address, 8443, unit="mlflow@team-a")
    unit = node.check_output("systemctl cat mlflow@team-a")
    assert "IPAddressDeny=any" in unit and "IPAddressAllow=localhost" in unit, unit


def test_minio_writes_its_drive_and_nothing_else():
    # ProtectSystem=strict with the drive the only writable path, as the kernel applies it
    # to the running server (this host, like a real one, lets systemd build namespaces).
    pid = node.check_output("systemctl show -p MainPID --value minio")
    mounts = [line.split() for line in node.check_output("cat /proc/%s/mountinfo", pid).splitlines()]
    options = {fields[4]: fields[5].split(",") for fields in mounts}
    assert "ro" in options["/"] and "ro" in options["/home"], options
    assert "rw" in options["/var/lib/minio/data"], options


def test_no_job_execution_consumers_and_no_secret_on_a_command_line():
    commands = node.check_output("cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
    assert "huey" not in commands
    for service in ("team-a", "team-b"):
        assert secret(TRACKING_SERVICES / service / "database.password") not in commands
        assert service_keys(service)[1] not in commands
        env_file = node.file("/etc/mlflow/services/%s.env" % service)
        assert env_file.mode == 0o600 and env_file.user == "root"


def test_seed_tutorial_logs_through_the_gateway(tutorial_run):
    assert tutorial_run["status"] == "FINISHED"
    assert "training_score" in tutorial_run["metrics"]
    assert tutorial_run["predictions"] > 0
    # Proxied artifacts: the client never sees the bucket.
    assert tutorial_run["artifact_uri"].startswith("mlflow-artifacts:")


def test_a_missing_artifact_answers_404_at_once(tutorial_run):
    """MLflow answers 500 for an object missing from the bucket; load_model("runs:/<run>/model")
    asks for one (the run's "model", before the logged model's files), and clients retry a 500
    for minutes. The gateway answers a download's 500 with 404, after the password check."""
    path = "/api/2.0/mlflow-artifacts/artifacts/%s/model" % tutorial_run["artifact_uri"].split(":/", 1)[1]
    assert gateway_get(8443, path).status_code == 401
    answer = gateway_get(8443, path, ("alice", user_password("team-a", "alice")))
    assert answer.status_code == 404, answer.text
    assert answer.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert "team-a" in answer.json()["message"]
    # MLflow itself still answers 500: when it answers 404, gateway_artifact_download_500_as_404 can go.
    direct = node.run("python3 -c \"import urllib.request as u; u.urlopen('http://127.0.0.1:5001%s', timeout=30)\""
                      % path)
    assert "HTTP Error 500" in direct.stderr, direct.stderr


def test_model_is_in_the_services_bucket_and_not_on_the_hosts_disk(tutorial_run):
    team_a = minio_client(HOST, *service_keys("team-a"))
    objects = [o.object_name for o in team_a.list_objects("mlflow-team-a", recursive=True)]
    assert any(name.endswith("/MLmodel") for name in objects), objects
    assert any(name.endswith("model.pkl") for name in objects), objects
    on_disk = node.check_output("find / -xdev -path /var/lib/minio -prune -o -name MLmodel -print")
    assert on_disk == ""


def test_no_credentials_get_401_with_a_basic_challenge():
    answer = gateway_get(8443, "/api/2.0/mlflow/experiments/search?max_results=1")
    assert answer.status_code == 401
    assert answer.headers.get("WWW-Authenticate", "").startswith("Basic")


def test_wrong_password_and_the_other_tenants_credentials_get_401():
    search = "/api/2.0/mlflow/experiments/search?max_results=1"
    assert gateway_get(8443, "/ajax" + search, ("alice", "wrong-password")).status_code == 401
    bob = ("bob", user_password("team-b", "bob"))
    assert gateway_get(8443, search, bob).status_code == 401


def test_ui_page_answers_200_through_the_gateway():
    answer = gateway_get(8443, "/", ("ci-bot", user_password("team-a", "ci-bot")))
    assert answer.status_code == 200
    assert "<html" in answer.text.lower()
    assert answer.headers.get("Strict-Transport-Security")
    assert answer.headers.get("X-Content-Type-Options") == "nosniff"


def test_health_answers_without_credentials():
    answer = gateway_get(8443, "/health")
    assert answer.status_code == 200 and answer.text.strip() == "OK"


def test_tenant_keys_are_scoped_to_their_own_bucket():
    team_a = minio_client(HOST, *service_keys("team-a"))
    team_a.bucket_exists("mlflow-team-a")
    with pytest.raises(S3Error) as denied:
        list(team_a.list_objects("mlflow-team-b", recursive=True))
    assert denied.value.code == "AccessDenied"


def test_tenant_database_user_cannot_connect_to_the_other_database():
    password = secret(TRACKING_SERVICES / "team-a" / "database.password")
    psql = "PGPASSWORD=%s psql -h 127.0.0.1 -U mlflow_team_a -d %s -Atc 'select 1'"
    assert node.run(psql % (password, "mlflow_team_a")).stdout.strip() == "1"
    denied = node.run(psql % (password, "mlflow_team_b"))
    assert denied.rc != 0 and "permission denied" in denied.stderr


def status_from(name, port, path, auth):
    """The status of a GET through the gateway from test host name (the image has no
    curl); the password reaches it on stdin, not its command line."""
    script = ("import base64,ssl,sys,urllib.request as u,urllib.error as e\n"
              "auth='Basic '+base64.b64encode(sys.stdin.buffer.read()).decode()\n"
              "r=u.Request('https://%s:%d%s',headers={'Authorization':auth})\n"
              "try: a=u.urlopen(r,context=ssl._create_unverified_context(),timeout=30)\n"
              "except e.HTTPError as x: a=x\n"
              "print(a.status if hasattr(a,'status') else a.code)" % (address(HOST), port, path))
    done = podman_exec(name, "python3", "-c", script, stdin="%s:%s" % auth)
    return int(done.stdout.strip())


def test_address_outside_the_allow_list_gets_403_and_inside_it_is_served():
    """team-b allows the controller and runner-1: runner-2, on the same network, is refused."""
    bob = ("bob", user_password("team-b", "bob"))
    search = "/api/2.0/mlflow/experiments/search?max_results=1"
    assert status_from("runner-2", 8444, search, bob) == 403
    assert status_from("runner-2", 8443, search, ("alice", user_password("team-a", "alice"))) == 200
    assert gateway_get(8444, search, bob).status_code == 200


@pytest.mark.parametrize("path", ["/api/2.0/mlflow/webhooks", "/ajax-api/2.0/mlflow/webhooks/1/test",
                                  "/api/3.0/mlflow/gateway/secrets/list", "/ajax-api/2.0/mlflow/gateway-proxy",
                                  "/gateway/chat/mlflow/invocations", "/ajax-api/3.0/mlflow/scorer/invoke"])
def test_mlflow_features_the_platform_does_not_operate_are_refused(path):
    # Webhooks, the AI gateway and scorer invocation (OPTIONAL_FEATURES of the model):
    # refused at the gateway, after authentication, for a service whose entry lists none.
    assert gateway_get(8443, path).status_code == 401
    answer = gateway_get(8443, path, ("alice", user_password("team-a", "alice")))
    assert answer.status_code == 403 and answer.json()["error_code"] == "PERMISSION_DENIED", answer.text
    assert "off on this platform" in answer.json()["message"]


def test_a_feature_the_entry_lists_is_served():
    # team-b's entry lists webhooks (molecule.yml); the AI gateway stays refused.
    bob = ("bob", user_password("team-b", "bob"))
    answer = gateway_get(8444, "/api/2.0/mlflow/webhooks", bob)
    assert answer.status_code == 200 and "off on this platform" not in answer.text, answer.text
    answer = gateway_get(8444, "/api/3.0/mlflow/gateway/secrets/list", bob)
    assert answer.status_code == 403 and "off on this platform" in answer.text, answer.text


def test_tracking_service_info_lists_both_services():
    done = run_module(HOST, "mlops.platform.tracking_service_info")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = module_result(done, HOST)
    services = {s["name"]: s for s in result["services"]}
    assert set(services) == {"team-a", "team-b"}
    assert services["team-a"]["state"] == "running" and services["team-a"]["port"] == 5001
    assert services["team-b"]["public_url"] == gateway_url(8444)


def test_two_gigabyte_artifact_round_trips_through_the_gateway(big_artifact):
    done = big_artifact
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "True"
