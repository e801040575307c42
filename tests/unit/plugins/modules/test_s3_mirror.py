import pytest

from ansible_collections.mlops.platform.plugins.modules.s3_mirror import key_parts, local_files


@pytest.mark.parametrize("key,parts", [
    ("model.pkl", ["model.pkl"]),
    ("1/abc/artifacts/model/MLmodel", ["1", "abc", "artifacts", "model", "MLmodel"]),
    ("a..b/c.d", ["a..b", "c.d"]),
])
def test_keys_that_are_relative_paths(key, parts):
    assert key_parts(key) == parts


@pytest.mark.parametrize("key", ["", "/etc/passwd", "a//b", "dir/", "../x", "a/../../x", "./a", "a/.", "a\0b"])
def test_keys_that_would_leave_the_directory_or_lose_a_part_are_refused(key):
    assert key_parts(key) is None


def test_local_files_are_keys_in_order_without_partial_downloads(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "two.bin").write_bytes(b"2")
    (tmp_path / "a.txt").write_bytes(b"1")
    (tmp_path / "b" / "two.bin.0123abcd.part.minio").write_bytes(b"")
    (tmp_path / "link").symlink_to(tmp_path / "a.txt")
    assert [key for key, _path in local_files(str(tmp_path))] == ["a.txt", "b/two.bin"]
