"""team-a keeps its database and artifacts on the lab's host (prepare.yml), which the
platform does not run, beside team-b on the platform's PostgreSQL and MinIO: what the
platform holds of the lab's storage (the endpoints, the one key the lab gave, the CA, a
database its admin login made), bad settings refused before anything of the service
changes, and backup and restore of team-a's database and bucket.
(test_upgrade.py: the upgrade with its rollback, the tutorial through the gateway into
both stores, check mode.)"""

import hashlib
import io
import re

import pytest

import lab_store
from mlops_testing import TRACKING_SERVICES, as_postgres, group_vars, host, platform_playbook, recap_changed

node = host("mlops-upgrade")
store = host(lab_store.HOST)
GROUP_VARS = group_vars("all")
# team-a's entry as the play sees it (the scenario's inventory templates its values).
TEAM_A = next(entry for entry in GROUP_VARS["mlops_tracking_services"] if entry["name"] == "team-a")
TEAM_A = dict(TEAM_A, s3={"endpoint_url": lab_store.URL, "access_key": lab_store.ACCESS_KEY,
                          "secret_key": lab_store.SECRET_KEY, "ca_file": str(lab_store.CA)},
              postgresql=dict(TEAM_A["postgresql"], admin_password=GROUP_VARS["lab_postgresql_admin_password"]))
ENV = "/etc/mlflow/services/team-a.env"
CA_ON_HOST = "/etc/mlflow/s3-ca/team-a.crt"


def setting(text, key):
    found = re.search(r'^%s="?([^"\n]*)"?$' % key, text, re.M)
    return found.group(1) if found else None


def service_state():
    """What a refused run must leave as it was: team-a's environment file, the CA its
    server uses, and the server process itself."""
    pid = node.check_output("systemctl show --property=MainPID --value mlflow@team-a.service")
    return {"env": hashlib.sha256(node.file(ENV).content).hexdigest(),
            "ca": node.file(CA_ON_HOST).content_string, "pid": pid}


def create_experiment(name):
    """An experiment made through team-a's MLflow on its host: a row in the lab's database."""
    node.check_output(
        "python3 -c \"import json, urllib.request as u; u.urlopen(u.Request("
        "'http://127.0.0.1:5001/api/2.0/mlflow/experiments/create', json.dumps({'name': '%s'}).encode(), "
        "{'Content-Type': 'application/json'}), timeout=30)\"" % name)


def experiments():
    return sorted(as_postgres(store, "SELECT name FROM experiments", "mlflow_team_a").split())


def test_the_service_holds_the_labs_endpoint_key_and_ca_and_nothing_of_minio():
    env = node.file(ENV)
    assert env.mode == 0o600 or env.mode == 0o640, oct(env.mode)
    text = env.content_string
    assert setting(text, "MLFLOW_S3_ENDPOINT_URL") == lab_store.URL
    assert setting(text, "AWS_ACCESS_KEY_ID") == lab_store.ACCESS_KEY
    assert setting(text, "MLFLOW_ARTIFACTS_DESTINATION") == "s3://" + lab_store.BUCKET
    assert setting(text, "AWS_CA_BUNDLE") == CA_ON_HOST
    assert node.file(CA_ON_HOST).content_string.strip() == lab_store.CA.read_text().strip()
    # No MinIO user, hence no generated secret key, for a service on an external store;
    # team-b beside it has both.
    assert not (TRACKING_SERVICES / "team-a" / "s3_secret_key").exists()
    assert (TRACKING_SERVICES / "team-b" / "s3_secret_key").exists()
    assert setting(node.file("/etc/mlflow/services/team-b.env").content_string, "AWS_ACCESS_KEY_ID") == "mlflow-team-b"
    # MLflow's unit may send packets to the lab's store (mlflow_network_restricted).
    allowed = node.check_output("systemctl show --property=IPAddressAllow --value mlflow@team-a.service")
    assert lab_store.URL.split("//")[1].split(":")[0] + "/32" in allowed.split(), allowed


def test_its_database_is_on_the_labs_server_made_by_the_admin_login_and_closed_to_others():
    """The admin login (CREATEDB, CREATEROLE, no superuser) made the login role and the
    database, owned by that role, closed to PUBLIC; MLflow reaches it over TLS, verifying
    the server with the lab's CA; the platform's own server has nothing of team-a."""
    uri = setting(node.file(ENV).content_string, "MLFLOW_BACKEND_STORE_URI")
    assert uri.startswith("postgresql+psycopg2://mlflow_team_a:") and "@10.89.203.20:5432/mlflow_team_a?" in uri
    ca = re.search(r"sslrootcert=([^&]+)", uri).group(1)
    assert "sslmode=verify-full" in uri and ca.startswith("/etc/mlflow/postgresql-ca/team-a-")
    assert node.file(ca).content_string.strip() == lab_store.CA.read_text().strip()
    owner, acl = as_postgres(store, "SELECT pg_get_userbyid(datdba), datacl FROM pg_database "
                             "WHERE datname = 'mlflow_team_a'").split("|")
    # No grant to PUBLIC (an item with an empty grantee, "=Tc/owner").
    assert owner == "mlflow_team_a" and not any(item.startswith("=") for item in acl.strip("{}").split(",")), acl
    assert as_postgres(store, "SELECT rolsuper FROM pg_roles WHERE rolname = 'lab_admin'") == "f"
    assert as_postgres(node, "SELECT count(*) FROM pg_database WHERE datname = 'mlflow_team_a'") == "0"
    assert as_postgres(node, "SELECT count(*) FROM pg_roles WHERE rolname = 'mlflow_team_a'") == "0"


# Each case is a run of the mlflow play (about a minute on a busy CI machine): one per
# place a refusal comes from, the S3 check, the database CA and the admin login's rights.
# The store's other answers to the S3 check (NoSuchBucket, AccessDenied, TLS failures) are
# the s3_bucket module's, tested in tests/integration/test_s3_bucket.py.
@pytest.mark.parametrize("change,words", [
    ({"s3": {"secret_key": "not-the-lab-secret"}},
     ["The s3 settings of tracking service team-a", "refused the credentials of access key 'lab-mlflow'",
      "SignatureDoesNotMatch"]),
    ({"postgresql": {"ca_file": str(lab_store.OTHER_CA)}},
     ["The postgresql settings of tracking service team-a", "admin_user lab_admin", "certificate verify failed"]),
    ({"postgresql": {"admin_user": "lab_roles_only"}},
     ["The postgresql settings", "lab_roles_only", "has no CREATEDB and CREATEROLE"]),
], ids=["refused key", "database CA that does not match", "admin login without CREATEDB"])
def test_a_bad_storage_setting_is_refused_before_the_service_changes(change, words):
    before = service_state()
    bad = dict(TEAM_A, **{key: dict(TEAM_A[key], **value) if isinstance(value, dict) else value
                          for key, value in change.items()})
    rc, output = platform_playbook("mlflow", {"mlflow_tracking_services": [bad]})
    assert rc != 0
    for word in words:
        assert word in output, output[-3000:]
    for secret in ("not-the-lab-secret", lab_store.SECRET_KEY, GROUP_VARS["lab_postgresql_admin_password"]):
        assert secret not in output
    assert service_state() == before


def test_backup_and_restore_bring_back_what_left_the_labs_storage():
    """backup.yml dumps team-a's database from the lab's server and mirrors the lab's
    bucket, each with the service's own login; what is lost from either comes back with
    restore.yml. A second backup changes nothing."""
    objects = lab_store.client()
    body = b"kept by the platform's backup\n"
    objects.put_object(lab_store.BUCKET, "backup-test/notes.txt", io.BytesIO(body), len(body))
    create_experiment("in-the-backup")
    rc, output = platform_playbook("backup", {"service": "team-a"})
    assert rc == 0, output[-3000:]
    mirrored = node.file("/var/backups/mlops/team-a/bucket/backup-test/notes.txt")
    assert mirrored.exists and mirrored.content == body
    # The database dumped over TLS from the MLflow host, by the service's own login role.
    dump = node.file("/var/backups/mlops/team-a/database/mlflow_team_a.sql")
    assert dump.exists and dump.mode == 0o600 and "CREATE TABLE public.runs" in dump.content_string
    rc, again = platform_playbook("backup", {"service": "team-a"})
    assert rc == 0 and not any(recap_changed(again)), again[-3000:]
    objects.remove_object(lab_store.BUCKET, "backup-test/notes.txt")
    create_experiment("made-after-the-backup")
    rc, output = platform_playbook("restore", {"service": "team-a", "overwrite": True})
    assert rc == 0, output[-3000:]
    assert objects.get_object(lab_store.BUCKET, "backup-test/notes.txt").read() == body
    assert experiments() == ["Default", "in-the-backup"]
    assert node.service("mlflow@team-a").is_running
