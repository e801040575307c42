"""mlops.platform.s3_bucket against a real MinIO: check -> apply -> verify -> again -> remove."""

import io
import json

from conftest import run_module

from minio.commonconfig import ENABLED, Filter
from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule


def bucket_state(minio, name):
    client = minio.client()
    if not client.bucket_exists(name):
        return None
    lifecycle = client.get_bucket_lifecycle(name)
    rules = {r.rule_id: r for r in (lifecycle.rules if lifecycle else [])}
    ours = rules.get("mlops-noncurrent-expiration")
    quota = json.loads(minio.admin().bucket_quota_get(name)).get("quota", 0)
    return {
        "versioning": client.get_bucket_versioning(name).status,
        "days": ours.noncurrent_version_expiration.noncurrent_days if ours else 0,
        "other_rules": sorted(k for k in rules if k != "mlops-noncurrent-expiration"),
        "quota": quota,
    }


def test_bucket_lifecycle(minio):
    args = {"name": "artifacts-alpha", "versioning": True, "noncurrent_version_days": 7, "quota": "1G"}
    conn = minio.connection()

    checked = run_module("s3_bucket", args, conn, check=True, diff=True)
    assert checked["changed"] is True
    assert checked["actions"] == ["create bucket", "enable versioning", "expire noncurrent versions after 7 days",
                                  "set quota to 1073741824 bytes"]
    assert bucket_state(minio, "artifacts-alpha") is None, "check mode created the bucket"

    applied = run_module("s3_bucket", args, conn)
    assert applied["changed"] is True
    assert bucket_state(minio, "artifacts-alpha") == {
        "versioning": "Enabled", "days": 7, "other_rules": [], "quota": 1024 ** 3}

    again = run_module("s3_bucket", args, conn)
    assert again["changed"] is False and again["actions"] == []
    assert run_module("s3_bucket", args, conn, check=True)["changed"] is False

    # A rule somebody else added stays when ours changes.
    minio.client().set_bucket_lifecycle("artifacts-alpha", LifecycleConfig(
        list(minio.client().get_bucket_lifecycle("artifacts-alpha").rules)
        + [Rule(ENABLED, rule_filter=Filter(prefix="tmp/"), rule_id="operator-tmp", expiration=Expiration(days=1))]))
    changed = run_module("s3_bucket", dict(args, noncurrent_version_days=14, quota="0"), conn, diff=True)
    assert changed["actions"] == ["expire noncurrent versions after 14 days", "remove quota"]
    assert changed["diff"]["before"]["noncurrent_version_days"] == 7
    assert changed["diff"]["after"]["noncurrent_version_days"] == 14
    assert bucket_state(minio, "artifacts-alpha") == {
        "versioning": "Enabled", "days": 14, "other_rules": ["operator-tmp"], "quota": 0}

    # Removal refuses a bucket with objects (here: two versions of one) unless forced.
    for body in (b"one", b"two"):
        minio.client().put_object("artifacts-alpha", "model/weights.bin", io.BytesIO(body), len(body))
    refused = run_module("s3_bucket", {"name": "artifacts-alpha", "state": "absent"}, conn)
    assert refused.get("failed") is True
    assert "not empty" in refused["msg"] and "force" in refused["msg"]
    assert bucket_state(minio, "artifacts-alpha") is not None

    assert run_module("s3_bucket", {"name": "artifacts-alpha", "state": "absent", "force": True}, conn,
                      check=True)["changed"] is True
    assert bucket_state(minio, "artifacts-alpha") is not None, "check mode removed the bucket"
    removed = run_module("s3_bucket", {"name": "artifacts-alpha", "state": "absent", "force": True}, conn)
    assert removed["changed"] is True and removed["actions"] == ["remove bucket"]
    assert bucket_state(minio, "artifacts-alpha") is None
    assert run_module("s3_bucket", {"name": "artifacts-alpha", "state": "absent"}, conn)["changed"] is False


def test_versioning_false_suspends_and_plain_bucket_needs_no_admin_api(minio):
    conn = minio.connection()
    assert run_module("s3_bucket", {"name": "plain-bucket", "versioning": False}, conn)["actions"] == ["create bucket"]
    assert minio.client().get_bucket_versioning("plain-bucket").status in (None, "Off")
    run_module("s3_bucket", {"name": "plain-bucket", "versioning": True}, conn)
    suspended = run_module("s3_bucket", {"name": "plain-bucket", "versioning": False}, conn)
    assert suspended["actions"] == ["suspend versioning"]
    assert minio.client().get_bucket_versioning("plain-bucket").status == "Suspended"
    assert run_module("s3_bucket", {"name": "plain-bucket", "versioning": False}, conn)["changed"] is False
    run_module("s3_bucket", {"name": "plain-bucket", "state": "absent"}, conn)


def test_invalid_name_is_refused_before_any_call(minio):
    # The endpoint does not exist: a refusal naming the rule proves no call was made.
    for bad in ("UpperCase", "ab", "bucket_with_underscore", "192.168.1.10", "double..dot", "-leading"):
        result = run_module("s3_bucket", {"name": bad}, minio.connection(endpoint_url="http://127.0.0.1:9"))
        assert result.get("failed") is True
        assert repr(bad) in result["msg"] and "S3 naming rules" in result["msg"], result["msg"]


def test_connection_errors_are_clear(minio):
    unreachable = run_module("s3_bucket", {"name": "some-bucket"},
                             minio.connection(endpoint_url="http://127.0.0.1:9", timeout=3))
    assert unreachable["failed"] and "cannot reach http://127.0.0.1:9" in unreachable["msg"]

    wrong = run_module("s3_bucket", {"name": "some-bucket"}, minio.connection(secret_key="not-the-secret-key"))
    assert wrong["failed"] and "refused the credentials of access key" in wrong["msg"]
    assert "SignatureDoesNotMatch" in wrong["msg"]

    tls = run_module("s3_bucket", {"name": "some-bucket"},
                     minio.connection(endpoint_url=minio.url.replace("http://", "https://")))
    assert tls["failed"] and "TLS failure" in tls["msg"]

    path = run_module("s3_bucket", {"name": "some-bucket"}, minio.connection(endpoint_url=minio.url + "/bucket"))
    assert path["failed"] and "must not have a path" in path["msg"]


def test_create_false_only_checks_the_bucket_with_a_key_limited_to_it(minio):
    """An external store's bucket as a tracking service meets it (create: false): checked
    with the one key the store's owner gave, never made nor changed. The key's policy
    names a missing bucket too, so the store answers NoSuchBucket for it rather than
    AccessDenied; another bucket is refused with AccessDenied."""
    conn = minio.connection()
    for bucket in ("given-artifacts", "given-other"):
        run_module("s3_bucket", {"name": bucket, "versioning": False}, conn)
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
         "Resource": ["arn:aws:s3:::given-artifacts", "arn:aws:s3:::given-missing"]},
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
         "Resource": ["arn:aws:s3:::given-artifacts/*", "arn:aws:s3:::given-missing/*"]}]}
    run_module("minio_policy", {"name": "given-rw", "policy": policy}, conn)
    run_module("minio_user", {"name": "given-key", "secret": "given-secret-123", "policies": ["given-rw"]}, conn)
    key = minio.connection(access_key="given-key", secret_key="given-secret-123")

    own = run_module("s3_bucket", {"name": "given-artifacts", "create": False}, key)
    assert not own.get("failed") and own["changed"] is False, own

    missing = run_module("s3_bucket", {"name": "given-missing", "create": False}, key)
    assert missing["failed"] and "bucket given-missing does not exist" in missing["msg"], missing["msg"]
    assert "NoSuchBucket" in missing["msg"]
    assert not minio.client().bucket_exists("given-missing")

    other = run_module("s3_bucket", {"name": "given-other", "create": False}, key)
    assert other["failed"] and "access key 'given-key' is not allowed" in other["msg"], other["msg"]
    assert "AccessDenied" in other["msg"]
