"""A MinIO binary upgrade of the converged 4-node cluster: a binary that does not come up
is rolled back on every node, a good one replaces the old on every node and keeps it as
minio.previous, a second run changes nothing, and no upgrade starts on a cluster without
write quorum. The cluster runs another binary after them (changes_platform: they run
after the scenario's unmarked tests, see molecule/conftest.py); they read an object those
wrote (blob.bin).

No second MinIO version can be built here (the module proxy serves one), so the "new"
binary is the pinned build with bytes appended: it runs the same, but its checksum differs
as a new release's would, and MinIO itself compares checksums between nodes."""

import hashlib
import io
import os
import pathlib
import re
import shutil
import subprocess

import pytest

from mlops_testing import group_hosts, host, minio_object, minio_root_client, recap_changed, run_playbook, wait_for
from mlops_testing import minio_health as health

pytestmark = pytest.mark.changes_platform
HERE = pathlib.Path(__file__).parent
NODES = group_hosts("minio")
# The cluster's root user, kept for its first node.
ROOT = NODES[0]
# The bucket test_minio_distributed.py writes to.
BUCKET = "verify-distributed"
BODY = os.urandom(2 * 1024 * 1024)


def converge(binary, **extra):
    """The scenario's own converge playbook with another binary; (rc, output)."""
    return run_playbook(HERE.parent / "converge.yml", dict(extra, minio_binary_file=str(binary)), timeout=900)


def sha256(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def running_binary(name):
    """sha256 of the file the node's minio server process runs, read from this machine:
    inside the container root lacks CAP_SYS_PTRACE and cannot read /proc/<pid>/exe."""
    table = subprocess.check_output(["podman", "top", name, "hpid", "args"], text=True)
    for line in table.splitlines()[1:]:
        hpid, args = line.split(None, 1)
        if " server " in args and "minio" in args:
            return sha256("/proc/%s/exe" % hpid)
    return None


def on_node(name):
    """What a node has: the installed binary, the one its server runs, the kept one, the PID."""
    node = host(name)

    def digest(path):
        found = node.run("sha256sum %s", path)
        return found.stdout.split()[0] if found.rc == 0 else None

    return {"installed": digest("/usr/local/bin/minio"), "running": running_binary(name),
            "previous": digest("/usr/local/bin/minio.previous"),
            "pid": node.check_output("systemctl show --property MainPID --value minio")}


@pytest.fixture(scope="module")
def binaries(tmp_path_factory):
    here = tmp_path_factory.mktemp("minio-binaries")
    pinned = pathlib.Path(os.environ["MLOPS_MINIO_BINARY"])
    new = here / "minio-new"
    shutil.copyfile(pinned, new)
    with new.open("ab") as tail:
        tail.write(b"\nmlops.platform upgrade test\n")
    broken = here / "minio-broken"
    broken.write_text("#!/bin/sh\necho 'this MinIO build does not start' >&2\nexit 1\n")
    for path in (new, broken):
        path.chmod(0o755)
    return {"pinned": sha256(pinned), "new": new, "new_sha": sha256(new), "broken": broken}


@pytest.fixture(scope="module")
def stored():
    writer = minio_root_client(ROOT, "minio1")
    if not writer.bucket_exists(BUCKET):
        writer.make_bucket(BUCKET)
    writer.put_object(BUCKET, "before.bin", io.BytesIO(BODY), len(BODY))
    return BODY


def healthy_everywhere():
    return all(health(name, "cluster") == 200 for name in NODES)


def test_a_binary_that_does_not_start_is_rolled_back_on_every_node(binaries, stored):
    rc, output = converge(binaries["broken"], minio_wait_timeout=20)
    assert rc != 0, output[-3000:]
    flat = re.sub(r"\s+", " ", output)
    for name in NODES:
        # What failed, the new build's own words from its log, and the rollback, per node.
        assert re.search(r"%s: the new MinIO binary \(sha256 \w+\) did not become healthy \(.*this MinIO build does "
                         r"not start.*\); rolled back: the node runs the previous binary" % name, flat), output[-3000:]
    for name in NODES:
        state = on_node(name)
        assert state["installed"] == state["running"] == state["previous"] == binaries["pinned"], (name, state)
    assert healthy_everywhere()
    assert wait_for(lambda: minio_object("minio2", BUCKET, "before.bin", ROOT) == stored, 60)


def test_a_new_binary_replaces_the_old_on_every_node_and_keeps_it(binaries, stored):
    before = {name: on_node(name) for name in NODES}
    rc, output = converge(binaries["new"])
    assert rc == 0, output[-3000:]
    # One restart of every node (the handler runs once for all of them).
    assert output.count("RUNNING HANDLER [mlops.platform.minio : Restart minio]") == 1, output[-3000:]
    for name in NODES:
        state = on_node(name)
        assert state["installed"] == state["running"] == binaries["new_sha"], (name, state)
        assert state["previous"] == binaries["pinned"], (name, state)
        assert state["pid"] != before[name]["pid"], name
    assert healthy_everywhere()
    assert wait_for(lambda: minio_object("minio2", BUCKET, "before.bin", ROOT) == stored, 60)
    assert minio_object("minio3", BUCKET, "blob.bin", ROOT)

    rc, output = converge(binaries["new"])
    assert rc == 0, output[-3000:]
    assert recap_changed(output) and not any(recap_changed(output)), output[-3000:]


def test_no_upgrade_starts_on_a_cluster_without_write_quorum(binaries):
    before = {name: on_node(name) for name in NODES}
    stopped = ["minio3", "minio4"]
    for name in stopped:
        host(name).check_output("systemctl stop minio")
    try:
        assert wait_for(lambda: health("minio1", "cluster") not in (200, None), 60)
        # Back to the pinned build: an upgrade like any other for the role.
        rc, output = converge(os.environ["MLOPS_MINIO_BINARY"])
        assert rc != 0, output[-3000:]
        assert "the upgrade starts only from a healthy cluster" in re.sub(r"\s+", " ", output), output[-3000:]
        for name in NODES:
            state = on_node(name)
            assert (state["installed"], state["previous"]) == (binaries["new_sha"], binaries["pinned"]), (name, state)
        for name in ("minio1", "minio2"):
            assert on_node(name)["pid"] == before[name]["pid"], name
    finally:
        for name in stopped:
            host(name).check_output("systemctl start minio")
    assert wait_for(healthy_everywhere, 180)
