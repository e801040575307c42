"""Verify a 4-node x 2-drive MinIO cluster: health, cross-node reads, a node down and back."""

import io
import os
import pathlib
import subprocess
import time
import urllib.request

import pytest
import testinfra
from minio import Minio

NODES = ["minio1", "minio2", "minio3", "minio4"]
CREDENTIALS = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "credentials" / "minio1" / "minio"


def address(name):
    return subprocess.check_output(
        ["podman", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name], text=True).strip()


def client(name):
    user = (CREDENTIALS / "root_user").read_text().split()[0]
    password = (CREDENTIALS / "root_password").read_text().split()[0]
    return Minio("%s:9000" % address(name), user, password, secure=False)


def health(name, path):
    try:
        with urllib.request.urlopen("http://%s:9000/minio/health/%s" % (address(name), path), timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def wait_for(predicate, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(2)
    return False


@pytest.mark.parametrize("name", NODES)
def test_every_node_is_healthy_and_sees_the_cluster(name):
    assert testinfra.get_host("podman://" + name).service("minio").is_running
    for path in ("live", "ready", "cluster"):
        assert health(name, path) == 200, (name, path)
    volumes = testinfra.get_host("podman://" + name).file("/etc/default/minio").content_string
    assert volumes.count("http://minio") == 8


def test_object_written_through_one_node_is_read_through_another():
    writer, reader = client("minio1"), client("minio3")
    if not writer.bucket_exists("verify-distributed"):
        writer.make_bucket("verify-distributed")
    body = os.urandom(3 * 1024 * 1024)
    writer.put_object("verify-distributed", "blob.bin", io.BytesIO(body), len(body))
    assert reader.get_object("verify-distributed", "blob.bin").read() == body
    # Erasure coded across the cluster: parts of the object sit on every node.
    for name in NODES:
        host = testinfra.get_host("podman://" + name)
        assert host.run("ls -d /srv/minio/disk1/verify-distributed/blob.bin").rc == 0, name


def test_one_node_down_reads_and_writes_go_on_and_it_heals():
    down = testinfra.get_host("podman://minio4")
    down.check_output("systemctl stop minio")
    try:
        assert wait_for(lambda: health("minio4", "live") is None, 30)
        writer, reader = client("minio2"), client("minio1")
        body = b"written while minio4 was down"
        writer.put_object("verify-distributed", "while-down.txt", io.BytesIO(body), len(body))
        assert reader.get_object("verify-distributed", "while-down.txt").read() == body
        assert reader.get_object("verify-distributed", "blob.bin").read()
        # Write quorum holds with 6 of 8 drives.
        assert health("minio1", "cluster") == 200
    finally:
        down.check_output("systemctl start minio")
    assert wait_for(lambda: all(health(n, "cluster") == 200 for n in NODES), 180)
    # Right after it reports healthy, the restarted node may still answer NoSuchKey for
    # an object written while it was down (seen here): it must serve it shortly after.
    assert wait_for(lambda: read_or_none("minio4", "while-down.txt") == b"written while minio4 was down", 60)


def read_or_none(name, key):
    try:
        return client(name).get_object("verify-distributed", key).read()
    except Exception:  # pylint: disable=broad-except
        return None
