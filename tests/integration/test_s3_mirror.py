"""mlops.platform.s3_mirror against a real MinIO: bucket -> directory -> new bucket, check
mode, re-runs that copy nothing, changed objects, and what it refuses."""

import io
import os
import stat

from conftest import run_module

OBJECTS = {
    "1/abc/artifacts/model/MLmodel": b"flavors: {}\n",
    "1/abc/artifacts/model/model.pkl": os.urandom(70000),
    "1/abc/artifacts/metrics.json": b'{"rmse": 0.5}',
    "top-level.txt": b"",
}


def put(client, bucket, objects):
    for key, body in objects.items():
        client.put_object(bucket, key, io.BytesIO(body), len(body))


def files_under(root):
    found = {}
    for directory, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            with open(path, "rb") as handle:
                found[os.path.relpath(path, root)] = handle.read()
    return found


def test_mirror_a_bucket_to_a_directory_and_back(minio, tmp_path):
    client = minio.client()
    client.make_bucket("mirror-source")
    put(client, "mirror-source", OBJECTS)
    backup = tmp_path / "backup" / "bucket"
    args = {"bucket": "mirror-source", "path": str(backup)}

    checked = run_module("s3_mirror", args, minio.connection(), check=True)
    assert checked["changed"] is True and checked["copied"] == 4 and checked["objects"] == 4, checked.output
    assert not backup.exists(), "check mode wrote the directory"

    copied = run_module("s3_mirror", args, minio.connection())
    assert copied["changed"] is True and copied["copied"] == 4, copied.output
    assert copied["bytes_copied"] == sum(len(body) for body in OBJECTS.values())
    assert files_under(backup) == OBJECTS
    assert stat.S_IMODE(backup.stat().st_mode) == 0o700
    assert stat.S_IMODE((backup / "1" / "abc" / "artifacts" / "metrics.json").stat().st_mode) == 0o600

    again = run_module("s3_mirror", args, minio.connection())
    assert again["changed"] is False and again["copied"] == 0, again.output
    assert run_module("s3_mirror", args, minio.connection(), check=True)["changed"] is False

    # A changed object is copied again; one deleted from the bucket stays in the backup.
    put(client, "mirror-source", {"1/abc/artifacts/metrics.json": b'{"rmse": 0.25}'})
    client.remove_object("mirror-source", "top-level.txt")
    changed = run_module("s3_mirror", args, minio.connection())
    assert changed["copied"] == 1 and changed["sample_keys"] == ["1/abc/artifacts/metrics.json"], changed.output
    restored = dict(OBJECTS, **{"1/abc/artifacts/metrics.json": b'{"rmse": 0.25}'})
    assert files_under(backup) == restored

    # Back into an empty bucket: every file, then nothing on a second run.
    client.make_bucket("mirror-target")
    back = {"bucket": "mirror-target", "path": str(backup), "direction": "to_bucket"}
    checked = run_module("s3_mirror", back, minio.connection(), check=True)
    assert checked["copied"] == 4 and list(client.list_objects("mirror-target", recursive=True)) == []
    uploaded = run_module("s3_mirror", back, minio.connection())
    assert uploaded["changed"] is True and uploaded["copied"] == 4, uploaded.output
    bodies = {o.object_name: client.get_object("mirror-target", o.object_name).read()
              for o in client.list_objects("mirror-target", recursive=True)}
    assert bodies == restored
    assert run_module("s3_mirror", back, minio.connection())["changed"] is False

    # An object that differs from its file (same size, other content) is put back.
    put(client, "mirror-target", {"1/abc/artifacts/metrics.json": b'{"rmse": 9.99}'})
    fixed = run_module("s3_mirror", back, minio.connection())
    assert fixed["copied"] == 1, fixed.output
    assert client.get_object("mirror-target", "1/abc/artifacts/metrics.json").read() == b'{"rmse": 0.25}'


def test_refuses_a_missing_bucket_or_directory(minio, tmp_path):
    # Keys that cannot be paths (a//b, ../x) are refused by MinIO itself; the module's own
    # check of them is a unit test (tests/unit/plugins/modules/test_s3_mirror.py).
    missing = run_module("s3_mirror", {"bucket": "no-such-bucket", "path": str(tmp_path / "x")}, minio.connection())
    assert missing.get("failed") is True and "bucket no-such-bucket does not exist" in missing["msg"]
    assert not (tmp_path / "x").exists()

    minio.client().make_bucket("mirror-empty")
    no_dir = run_module("s3_mirror", {"bucket": "mirror-empty", "path": str(tmp_path / "absent"),
                                      "direction": "to_bucket"}, minio.connection())
    assert no_dir.get("failed") is True and "is not a directory" in no_dir["msg"]
