"""A real PostgreSQL for the queue's tests: a throwaway cluster from the machine's own
PostgreSQL binaries (hack/bootstrap.sh installs them), reached only on a Unix socket in
its temporary directory (no TCP listener), removed at the end of the session."""

import glob
import os
import pathlib
import shutil
import subprocess
import tempfile
import uuid

import psycopg
import pytest

from mlops_jobs import queue as jobs_queue


def _binaries():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        pytest.fail("no PostgreSQL server binaries under /usr/lib/postgresql: run `make deps` first")
    return pathlib.Path(found[-1]).parent


def _as_owner(argv):
    # initdb refuses to run as root: the cluster belongs to the postgres user then.
    return ["runuser", "-u", "postgres", "--"] + argv if os.geteuid() == 0 else argv


@pytest.fixture(scope="session")
def server():
    bindir = _binaries()
    base = pathlib.Path(tempfile.mkdtemp(prefix="mlops-jobs-pg-"))
    os.chmod(base, 0o755)
    data = base / "data"
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
    subprocess.run(_as_owner([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                              "--no-sync"]), check=True, capture_output=True)
    subprocess.run(_as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(base / "log"), "-o",
                              "-c listen_addresses='' -c unix_socket_directories=%s -c fsync=off" % base, "start"]),
                   check=True, capture_output=True)
    try:
        yield "host=%s port=5432" % base
    finally:
        subprocess.run(_as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                       check=False, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def database(server):
    """A fresh queue database with its two roles; the conninfo of each (owner, api, runner)."""
    name = "jobs_" + uuid.uuid4().hex[:8]
    with psycopg.connect(server + " user=postgres dbname=postgres", autocommit=True) as admin:
        for role in ("owner", "api", "runner"):
            admin.execute("CREATE ROLE %s_%s LOGIN" % (name, role))
        admin.execute("CREATE DATABASE %s OWNER %s_owner" % (name, name))
        admin.execute("REVOKE ALL ON DATABASE %s FROM PUBLIC" % name)
        admin.execute("GRANT CONNECT ON DATABASE %s TO %s_api, %s_runner" % (name, name, name))
    conninfo = {role: "%s dbname=%s user=%s_%s" % (server, name, name, role) for role in ("owner", "api", "runner")}
    with psycopg.connect(conninfo["owner"], autocommit=True) as owner:
        jobs_queue.migrate(owner, api_role=name + "_api", runner_role=name + "_runner")
    return conninfo
