"""The bucket backup program's own rules (roles/mlflow/files/mlflow-bucket-backup.py): which
part sizes can have made a multipart ETag, when a file is its object's content, and when the
files of deleted objects leave the backup. Its copies and status against a real MinIO run in
molecule/runner (test_operations.py) and molecule/multi_host."""

import datetime
import hashlib
import importlib.machinery
import importlib.util
import pathlib

PROGRAM = pathlib.Path(__file__).resolve().parents[2] / "roles/mlflow/files/mlflow-bucket-backup.py"
_loader = importlib.machinery.SourceFileLoader("mlflow_bucket_backup", str(PROGRAM))
_spec = importlib.util.spec_from_loader("mlflow_bucket_backup", _loader)
backup = importlib.util.module_from_spec(_spec)
_loader.exec_module(backup)

MIB = 1024 * 1024
NOW = datetime.datetime(2026, 12, 2, 3, 0, tzinfo=datetime.timezone.utc)


def multipart_etag(data, part_size):
    parts = [data[i:i + part_size] for i in range(0, len(data), part_size)]
    return '"%s-%d"' % (hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest(), len(parts))


def test_part_sizes_are_those_that_give_the_etags_part_count():
    # 2 GiB in 256 parts: boto3's 8 MiB, nothing else among whole MiB.
    assert backup.part_sizes(2 * 1024 * MIB, 256) == [8 * MIB]
    # 2 GiB in 205 parts: MLflow's 10 MiB first, then the other MiB sizes that split it so.
    sizes = backup.part_sizes(2 * 1024 * MIB, 205)
    assert sizes[0] == 10 * MIB and all(-(-2 * 1024 * MIB // s) == 205 for s in sizes)
    # A part count no part size of whole MiB can give.
    assert backup.part_sizes(10, 3) == []
    assert len(backup.part_sizes(1000 * MIB, 2)) <= 6


def test_a_file_is_its_objects_content_by_single_or_multipart_etag(tmp_path):
    data = bytes(range(256)) * (52 * 1024)  # 13 MiB
    path = tmp_path / "model.bin"
    path.write_bytes(data)
    assert backup.same_content(str(path), '"%s"' % hashlib.md5(data).hexdigest(), len(data)) is True
    assert backup.same_content(str(path), multipart_etag(data, 8 * MIB), len(data)) is True
    assert backup.same_content(str(path), multipart_etag(data, 5 * MIB), len(data)) is True
    # One byte changed on the backup storage, size and all else kept.
    path.write_bytes(b"x" + data[1:])
    assert backup.same_content(str(path), '"%s"' % hashlib.md5(data).hexdigest(), len(data)) is False
    # A multipart ETag the usual part sizes do not reproduce cannot tell: size only.
    assert backup.same_content(str(path), multipart_etag(data, 8 * MIB), len(data)) is None
    # Neither an MD5 nor a multipart ETag (an encrypting store's).
    assert backup.same_content(str(path), '"not-an-md5"', len(data)) is None


def test_files_of_deleted_objects_stay_until_their_age_passes_keep_days():
    before = {"old/run.txt": (NOW - datetime.timedelta(days=10)).isoformat(),
              "recent/run.txt": (NOW - datetime.timedelta(days=1)).isoformat(),
              "back/again.txt": (NOW - datetime.timedelta(days=20)).isoformat()}
    local = {"old/run.txt", "recent/run.txt", "back/again.txt", "new/gone.txt", "kept.txt"}
    listed = {"kept.txt": {}, "back/again.txt": {}}
    gone, delete = backup.retire(before, listed, local, NOW, 7)
    assert delete == ["old/run.txt"]
    # Seen gone for the first time now; an object that came back is no longer gone.
    assert gone == {"recent/run.txt": before["recent/run.txt"], "new/gone.txt": NOW.isoformat()}
    # keep_days 0: every file stays, however long its object has been gone.
    gone, delete = backup.retire(before, listed, local, NOW, 0)
    assert delete == [] and set(gone) == {"old/run.txt", "recent/run.txt", "new/gone.txt"}


def test_keys_that_cannot_be_paths_are_refused():
    assert backup.key_parts("a/b/c.txt") == ["a", "b", "c.txt"]
    for key in ("a//b", "a/../b", "./a", "dir/"):
        assert backup.key_parts(key) is None
