"""Real servers for the jobs tests and benchmark, on this machine: a throwaway PostgreSQL
cluster on a Unix socket (no TCP listener) and an MLflow server on loopback."""

import contextlib
import glob
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


class ServerError(Exception):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_owner(argv):
    # initdb refuses to run as root: the cluster belongs to the postgres user then.
    return ["runuser", "-u", "postgres", "--"] + argv if os.geteuid() == 0 else argv


@contextlib.contextmanager
def postgres():
    """A running cluster; yields the libpq connection string of its socket (superuser postgres)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise ServerError("no PostgreSQL server binaries under /usr/lib/postgresql: run `make deps` first")
    bindir = pathlib.Path(found[-1]).parent
    base = pathlib.Path(tempfile.mkdtemp(prefix="mlops-jobs-pg-"))
    os.chmod(base, 0o755)
    data = base / "data"
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
    try:
        subprocess.run(_as_owner([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                                  "--no-sync"]), check=True, capture_output=True)
        subprocess.run(_as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(base / "log"), "-o",
                                  "-c listen_addresses='' -c unix_socket_directories=%s -c fsync=off" % base,
                                  "start"]), check=True, capture_output=True)
        yield "host=%s port=5432" % base
    finally:
        subprocess.run(_as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                       check=False, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def mlflow_server(base):
    """`mlflow server` of this Python's environment on a free loopback port, SQLite and
    artifacts under base; yields its URI."""
    port = free_port()
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    log_path = os.path.join(base, "server.log")
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [os.path.join(os.path.dirname(sys.executable), "mlflow"), "server", "--host", "127.0.0.1", "--port",
             str(port), "--workers", "1", "--backend-store-uri", "sqlite:///%s/mlflow.db" % base,
             "--artifacts-destination", "%s/artifacts" % base], env=env, stdout=subprocess.DEVNULL, stderr=log)
    uri = "http://127.0.0.1:%d" % port
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(uri + "/health", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    with open(log_path) as log:
                        raise ServerError("the MLflow server did not start: " + log.read()[-3000:])
                time.sleep(0.5)
        yield uri
    finally:
        server.terminate()
        server.wait(30)


def queue_database(server, migrated=True):
    """A fresh queue database on server with its owner, API and runner roles, migrated
    unless told not to; {owner, api, runner: connection string}."""
    import uuid  # pylint: disable=import-outside-toplevel

    import psycopg  # pylint: disable=import-outside-toplevel

    from mlops_jobs.queue import migrate  # pylint: disable=import-outside-toplevel

    name = "jobs_" + uuid.uuid4().hex[:8]
    with psycopg.connect(server + " user=postgres dbname=postgres", autocommit=True) as admin:
        for role in ("owner", "api", "runner"):
            admin.execute("CREATE ROLE %s_%s LOGIN" % (name, role))
        admin.execute("CREATE DATABASE %s OWNER %s_owner" % (name, name))
        admin.execute("REVOKE ALL ON DATABASE %s FROM PUBLIC" % name)
        admin.execute("GRANT CONNECT ON DATABASE %s TO %s_api, %s_runner" % (name, name, name))
    conninfo = {role: "%s dbname=%s user=%s_%s" % (server, name, name, role) for role in ("owner", "api", "runner")}
    if not migrated:
        return conninfo
    with psycopg.connect(conninfo["owner"], autocommit=True) as owner:
        migrate(owner, api_role=name + "_api", runner_role=name + "_runner")
    return conninfo
