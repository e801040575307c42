"""mlops.platform.minio_user against a real MinIO, and what a scoped user may do."""

import io
import json

import pytest
from minio.error import S3Error

from conftest import run_module


def user_info(minio, name):
    try:
        info = json.loads(minio.admin().user_info(name))
    except Exception:  # pylint: disable=broad-except
        return None
    return {"status": info["status"], "policies": sorted(p for p in info.get("policyName", "").split(",") if p)}


def can_sign_in(minio, name, secret):
    try:
        minio.client(name, secret).list_buckets()
    except S3Error as exc:
        return exc.code == "AccessDenied"
    return True


def scoped_policy(bucket):
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"], "Resource": ["arn:aws:s3:::" + bucket]},
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
         "Resource": ["arn:aws:s3:::%s/*" % bucket]},
    ]}


@pytest.fixture(scope="module")
def policies(minio):
    conn = minio.connection()
    for bucket in ("team-one", "team-two"):
        run_module("s3_bucket", {"name": bucket}, conn)
        run_module("minio_policy", {"name": bucket + "-rw", "policy": scoped_policy(bucket)}, conn)
    return conn


def test_user_lifecycle(minio, policies):
    conn = policies
    args = {"name": "svc-one", "secret": "first-secret-123", "policies": ["team-one-rw"]}

    checked = run_module("minio_user", args, conn, check=True)
    assert checked["changed"] and checked["actions"] == ["create user", "attach policies team-one-rw"]
    assert user_info(minio, "svc-one") is None

    assert run_module("minio_user", args, conn)["changed"] is True
    assert user_info(minio, "svc-one") == {"status": "enabled", "policies": ["team-one-rw"]}
    assert can_sign_in(minio, "svc-one", "first-secret-123")
    assert run_module("minio_user", args, conn)["changed"] is False

    # A new secret: check mode reports it and leaves the old one working.
    rotated = dict(args, secret="second-secret-456")
    assert run_module("minio_user", rotated, conn, check=True)["actions"] == ["set secret"]
    assert can_sign_in(minio, "svc-one", "first-secret-123")
    assert run_module("minio_user", rotated, conn)["actions"] == ["set secret"]
    assert can_sign_in(minio, "svc-one", "second-secret-456")
    assert not can_sign_in(minio, "svc-one", "first-secret-123")
    # on_create leaves an existing user's secret alone.
    assert run_module("minio_user", dict(args, update_password="on_create"), conn)["changed"] is False

    # The exact policy list: one attached, the other detached.
    swapped = run_module("minio_user", dict(rotated, policies=["team-two-rw"]), conn)
    assert swapped["actions"] == ["attach policies team-two-rw", "detach policies team-one-rw"]
    assert user_info(minio, "svc-one")["policies"] == ["team-two-rw"]

    # Policies change before the user is disabled: MinIO refuses it afterwards.
    disabled = run_module("minio_user", dict(rotated, state="disabled"), conn)
    assert disabled["actions"] == ["attach policies team-one-rw", "detach policies team-two-rw", "disable user"]
    assert user_info(minio, "svc-one") == {"status": "disabled", "policies": ["team-one-rw"]}
    assert not can_sign_in(minio, "svc-one", "second-secret-456")
    stuck = run_module("minio_user", dict(rotated, state="disabled", policies=["team-two-rw"]), conn)
    assert stuck["failed"] and "does not change the policies of a disabled user" in stuck["msg"]
    again = run_module("minio_user", dict(rotated, state="disabled"), conn)
    assert again["changed"] is False
    assert any("cannot be checked" in w for w in again.get("warnings", []))

    enabled = run_module("minio_user", dict(rotated, state="enabled", policies=["team-two-rw"]), conn)
    assert enabled["changed"] is True
    assert user_info(minio, "svc-one")["status"] == "enabled"
    assert can_sign_in(minio, "svc-one", "second-secret-456")

    assert run_module("minio_user", {"name": "svc-one", "state": "absent"}, conn, check=True)["changed"] is True
    assert user_info(minio, "svc-one") is not None
    assert run_module("minio_user", {"name": "svc-one", "state": "absent"}, conn)["actions"] == ["remove user"]
    assert user_info(minio, "svc-one") is None
    assert run_module("minio_user", {"name": "svc-one", "state": "absent"}, conn)["changed"] is False


def test_new_disabled_user_and_input_errors(minio, policies):
    conn = policies
    created = run_module("minio_user", {"name": "svc-off", "secret": "off-secret-1234", "state": "disabled"}, conn)
    assert created["actions"] == ["create user", "disable user"]
    assert user_info(minio, "svc-off")["status"] == "disabled"
    run_module("minio_user", {"name": "svc-off", "state": "absent"}, conn)

    no_secret = run_module("minio_user", {"name": "svc-new"}, conn)
    assert no_secret["failed"] and "secret is required" in no_secret["msg"]
    short = run_module("minio_user", {"name": "svc-new", "secret": "short"}, conn)
    assert short["failed"] and "8 to 40 characters" in short["msg"]
    for bad in ("ab", "a-name-longer-than-20", "has,comma"):
        named = run_module("minio_user", {"name": bad, "secret": "long-enough-secret"}, conn)
        assert named["failed"] and repr(bad) in named["msg"]


def test_bucket_scoped_user_writes_its_bucket_and_is_denied_another(minio, policies):
    run_module("minio_user", {"name": "svc-scoped", "secret": "scoped-secret-123", "policies": ["team-one-rw"]},
               policies)
    client = minio.client("svc-scoped", "scoped-secret-123")
    client.put_object("team-one", "runs/1/model.pkl", io.BytesIO(b"model"), 5)
    assert client.get_object("team-one", "runs/1/model.pkl").read() == b"model"
    with pytest.raises(S3Error) as denied:
        client.put_object("team-two", "runs/1/model.pkl", io.BytesIO(b"model"), 5)
    assert denied.value.code == "AccessDenied"
    with pytest.raises(S3Error) as denied_read:
        list(client.list_objects("team-two"))
    assert denied_read.value.code == "AccessDenied"


def test_no_secret_in_verbose_output_or_diff(minio, policies):
    secret = "verbose-secret-9876"
    result = run_module("minio_user", {"name": "svc-quiet", "secret": secret, "policies": []}, policies,
                        diff=True, verbosity=3)
    assert result["changed"] is True
    assert secret not in result.output
    assert minio.root_password not in result.output
    assert secret not in json.dumps(result.get("diff", {}))
    # The server's root password travels in its environment, not its command line.
    with open("/proc/%d/cmdline" % minio.process.pid, "rb") as f:
        assert minio.root_password.encode() not in f.read()
    run_module("minio_user", {"name": "svc-quiet", "state": "absent"}, policies)
