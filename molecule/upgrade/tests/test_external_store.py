"""team-a keeps its artifacts on the lab's store (prepare.yml), which the platform does not
run, beside team-b on the platform's MinIO: what the platform holds of the lab's store
(its endpoint, the one key the lab gave, the CA), bad store settings refused before
anything of the service changes, and backup and restore of the lab's bucket.
(test_upgrade.py: the upgrade with its rollback, the tutorial through the gateway into
both stores, check mode.)"""

import hashlib
import io
import re

import pytest

import lab_store
from mlops_testing import TRACKING_SERVICES, group_vars, host, platform_playbook, recap_changed

node = host("mlops-upgrade")
# team-a's entry as the play sees it (the scenario's inventory templates its s3 values).
TEAM_A = dict(next(entry for entry in group_vars("all")["mlops_tracking_services"] if entry["name"] == "team-a"),
              s3={"endpoint_url": lab_store.URL, "access_key": lab_store.ACCESS_KEY,
                  "secret_key": lab_store.SECRET_KEY, "ca_file": str(lab_store.CA)})
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


@pytest.mark.parametrize("s3_change,entry_change,words", [
    ({"secret_key": "not-the-lab-secret"}, {},
     ["refused the credentials of access key 'lab-mlflow'", "SignatureDoesNotMatch"]),
    ({}, {"bucket": "lab-missing"}, ["bucket lab-missing does not exist", "NoSuchBucket"]),
    ({}, {"bucket": "lab-other"}, ["access key 'lab-mlflow' is not allowed", "AccessDenied"]),
    ({"ca_file": str(lab_store.OTHER_CA)}, {}, ["TLS failure", "certificate verify failed"]),
], ids=["refused key", "missing bucket", "bucket the key may not use", "CA that does not match"])
def test_a_bad_store_setting_is_refused_before_the_service_changes(s3_change, entry_change, words):
    before = service_state()
    bad = dict(TEAM_A, s3=dict(TEAM_A["s3"], **s3_change), **entry_change)
    rc, output = platform_playbook("mlflow", {"mlflow_tracking_services": [bad]})
    assert rc != 0
    assert "The s3 settings of tracking service team-a" in output, output[-3000:]
    for word in words:
        assert word in output, output[-3000:]
    assert "not-the-lab-secret" not in output and lab_store.SECRET_KEY not in output
    assert service_state() == before


def test_backup_and_restore_bring_back_what_left_the_labs_bucket():
    """backup.yml mirrors the lab's bucket with the service's own key; an object lost from
    the bucket comes back with restore.yml. A second backup copies nothing."""
    store = lab_store.client()
    body = b"kept by the platform's backup\n"
    store.put_object(lab_store.BUCKET, "backup-test/notes.txt", io.BytesIO(body), len(body))
    rc, output = platform_playbook("backup", {"service": "team-a"})
    assert rc == 0, output[-3000:]
    mirrored = node.file("/var/backups/mlops/team-a/bucket/backup-test/notes.txt")
    assert mirrored.exists and mirrored.content == body
    rc, again = platform_playbook("backup", {"service": "team-a"})
    assert rc == 0 and not any(recap_changed(again)), again[-3000:]
    store.remove_object(lab_store.BUCKET, "backup-test/notes.txt")
    rc, output = platform_playbook("restore", {"service": "team-a", "overwrite": True})
    assert rc == 0, output[-3000:]
    assert store.get_object(lab_store.BUCKET, "backup-test/notes.txt").read() == body
    assert node.service("mlflow@team-a").is_running
