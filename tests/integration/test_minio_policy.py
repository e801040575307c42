"""mlops.platform.minio_policy against a real MinIO."""

import json

from conftest import run_module

POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
         "Resource": ["arn:aws:s3:::team-a"]},
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
         "Resource": ["arn:aws:s3:::team-a/*"]},
    ],
}

# The same grants written differently: statements swapped, actions reordered, a
# single resource as a string, no Version.
SAME_POLICY = {
    "Statement": [
        {"Effect": "Allow", "Action": ["s3:PutObject", "s3:DeleteObject", "s3:GetObject"],
         "Resource": "arn:aws:s3:::team-a/*"},
        {"Effect": "Allow", "Action": ["s3:GetBucketLocation", "s3:ListBucket"], "Resource": "arn:aws:s3:::team-a"},
    ],
}


def server_policy(minio, name):
    try:
        return json.loads(minio.admin().policy_info(name))
    except Exception:  # pylint: disable=broad-except
        return None


def test_policy_lifecycle(minio):
    conn = minio.connection()
    args = {"name": "team-a-rw", "policy": POLICY}

    checked = run_module("minio_policy", args, conn, check=True)
    assert checked["changed"] is True and checked["actions"] == ["create policy"]
    assert server_policy(minio, "team-a-rw") is None

    assert run_module("minio_policy", args, conn)["changed"] is True
    stored = server_policy(minio, "team-a-rw")
    assert sorted(s["Resource"][0] for s in stored["Statement"]) == ["arn:aws:s3:::team-a", "arn:aws:s3:::team-a/*"]

    assert run_module("minio_policy", args, conn)["changed"] is False
    assert run_module("minio_policy", {"name": "team-a-rw", "policy": SAME_POLICY}, conn)["changed"] is False
    assert run_module("minio_policy", args, conn, check=True)["changed"] is False

    read_only = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::team-a/*"]}]}
    updated = run_module("minio_policy", {"name": "team-a-rw", "policy": read_only}, conn, diff=True)
    assert updated["changed"] is True and updated["actions"] == ["update policy"]
    assert len(updated["diff"]["before"]["Statement"]) == 2 and len(updated["diff"]["after"]["Statement"]) == 1
    assert len(server_policy(minio, "team-a-rw")["Statement"]) == 1

    # Attached to a user: removal is refused with a message that says what to do.
    admin = minio.admin()
    admin.user_add("policy-holder", "holder-secret-123")
    admin.attach_policy(["team-a-rw"], user="policy-holder")
    refused = run_module("minio_policy", {"name": "team-a-rw", "state": "absent"}, conn)
    assert refused["failed"] and "still attached" in refused["msg"]
    admin.user_remove("policy-holder")

    assert run_module("minio_policy", {"name": "team-a-rw", "state": "absent"}, conn, check=True)["changed"] is True
    assert server_policy(minio, "team-a-rw") is not None
    assert run_module("minio_policy", {"name": "team-a-rw", "state": "absent"}, conn)["changed"] is True
    assert server_policy(minio, "team-a-rw") is None
    assert run_module("minio_policy", {"name": "team-a-rw", "state": "absent"}, conn)["changed"] is False


def test_policy_input_errors(minio):
    missing = run_module("minio_policy", {"name": "p"}, minio.connection())
    assert missing["failed"] and "policy" in missing["msg"]
    empty = run_module("minio_policy", {"name": "p", "policy": {"Version": "2012-10-17"}}, minio.connection())
    assert empty["failed"] and "Statement" in empty["msg"]
