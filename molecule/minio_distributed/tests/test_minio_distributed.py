"""Verify a 4-node x 2-drive MinIO cluster: health, cross-node reads, a node down and back."""

import io
import os

import pytest
import urllib3
from minio.error import S3Error

from mlops_testing import (address, group_hosts, host, listening, minio_client, minio_object, minio_root,
                           minio_root_client, wait_for)
from mlops_testing import minio_health as health

NODES = group_hosts("minio")
# The cluster's root user, kept for its first node.
ROOT = NODES[0]
BUCKET = "verify-distributed"
# What MinIO answers a write its drives have no room for: the storage full, or (when a
# drive fills during the write) no write quorum.
STORAGE_REFUSALS = {"XMinioStorageFull", "XMinioWriteQuorum", "SlowDownWrite"}


@pytest.mark.parametrize("name", NODES)
def test_every_node_is_healthy_and_sees_the_cluster(name):
    assert host(name).service("minio").is_running
    for path in ("live", "ready", "cluster"):
        assert health(name, path) == 200, (name, path)
    volumes = host(name).file("/etc/default/minio").content_string
    assert volumes.count("http://minio") == 8
    # minio_console_enabled with minio_console_port 9101 (converge.yml); the API and the
    # console on the node's platform address (its name resolved there), MinIO's API on
    # loopback too (MinIO's own choice), nowhere else.
    here = address(name)
    assert "--address %s:9000 --console-address %s:9101" % (here, here) in volumes and "MINIO_BROWSER" not in volumes
    bound = {(bound_to, port) for bound_to, port in listening(host(name))
             if port in (9000, 9101) and bound_to not in ("127.0.0.1", "::1")}
    assert bound == {(here, 9000), (here, 9101)}, bound


def test_object_written_through_one_node_is_read_through_another():
    writer, reader = minio_root_client(ROOT, "minio1"), minio_root_client(ROOT, "minio3")
    if not writer.bucket_exists(BUCKET):
        writer.make_bucket(BUCKET)
    body = os.urandom(3 * 1024 * 1024)
    writer.put_object(BUCKET, "blob.bin", io.BytesIO(body), len(body))
    assert reader.get_object(BUCKET, "blob.bin").read() == body
    # Erasure coded across the cluster: parts of the object sit on every node.
    for name in NODES:
        node = host(name)
        assert node.run("ls -d /srv/minio/disk1/verify-distributed/blob.bin").rc == 0, name


def test_one_node_down_reads_and_writes_go_on_and_it_heals():
    down = host("minio4")
    down.check_output("systemctl stop minio")
    try:
        assert wait_for(lambda: health("minio4", "live") is None, 30)
        writer, reader = minio_root_client(ROOT, "minio2"), minio_root_client(ROOT, "minio1")
        body = b"written while minio4 was down"
        writer.put_object(BUCKET, "while-down.txt", io.BytesIO(body), len(body))
        assert reader.get_object(BUCKET, "while-down.txt").read() == body
        assert reader.get_object(BUCKET, "blob.bin").read()
        # Write quorum holds with 6 of 8 drives.
        assert health("minio1", "cluster") == 200
    finally:
        down.check_output("systemctl start minio")
    assert wait_for(lambda: all(health(n, "cluster") == 200 for n in NODES), 180)
    # Right after it reports healthy, the restarted node may still answer NoSuchKey for
    # an object written while it was down (seen here): it must serve it shortly after.
    assert wait_for(lambda: minio_object("minio4", BUCKET, "while-down.txt", ROOT) == body, 60)


DRIVES = ("/srv/minio/disk1", "/srv/minio/disk2")  # 256 MB tmpfs each (molecule.yml)


def put(client, name, body):
    client.put_object(BUCKET, name, io.BytesIO(body), len(body))


def test_full_drives_fail_writes_clearly_keep_every_object_and_recover_by_themselves():
    """Every drive of every node full: a write is refused with MinIO's own answer naming
    the storage, the objects written before read back whole, and once space returns
    writes work again with no restart."""
    # No retries of its own: MinIO's first answer is the one to judge.
    client = minio_client("minio2", *minio_root(ROOT), http_client=urllib3.PoolManager(retries=False))
    if not client.bucket_exists(BUCKET):
        client.make_bucket(BUCKET)
    before = os.urandom(1024 * 1024)
    put(client, "before-full.bin", before)
    try:
        for name in NODES:
            for drive in DRIVES:
                # dd stops when nothing is left: its own 'No space left on device' is expected.
                filled = host(name).run("dd if=/dev/zero of=%s/mlops-test-filler bs=1M", drive)
                assert "No space left on device" in filled.stderr, (name, drive, filled.stderr)
        with pytest.raises(S3Error) as refused:
            put(client, "while-full.bin", os.urandom(8 * 1024 * 1024))
        print("MinIO refused the write: %s: %s" % (refused.value.code, refused.value.message))
        assert refused.value.code in STORAGE_REFUSALS, (refused.value.code, refused.value.message)
        assert client.get_object(BUCKET, "before-full.bin").read() == before
    finally:
        for name in NODES:
            for drive in DRIVES:
                host(name).run("rm -f %s/mlops-test-filler", drive)

    after = os.urandom(1024 * 1024)

    def written():
        try:
            put(client, "after-full.bin", after)
            return True
        except S3Error:
            return False
    assert wait_for(written, 60), "no write succeeded 60 s after space returned"
    assert minio_object("minio4", BUCKET, "after-full.bin", ROOT) == after
    assert minio_object("minio3", BUCKET, "before-full.bin", ROOT) == before
