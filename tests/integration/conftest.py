"""Real servers for the module tests (MinIO, PostgreSQL), and a way to run a module through Ansible.

The MinIO server is the binary hack/build-minio.sh caches, started on a free loopback port
with a fresh data directory and random root credentials passed in its environment.
The PostgreSQL cluster is a throwaway one of the installed server binaries, on a Unix
socket only (no TCP listener), with peer authentication as on a database host.
Modules run through ansible-playbook (as users run them) with their arguments and the
connection in a 0600 vars file, never on a command line; results come back through
the ansible.posix.json callback.
"""

import glob
import json
import os
import pathlib
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
COLLECTIONS = REPO / ".build" / "collections"


def _versions():
    values = {}
    for line in (REPO / "hack" / "versions.env").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def minio_binary():
    cache = os.environ.get("MLOPS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mlops-platform")
    path = pathlib.Path(cache) / "minio" / _versions()["MINIO_MODULE_VERSION"] / "minio"
    if not path.exists():
        pytest.fail("no MinIO build at %s: run `make minio` first" % path)
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MinioServer:
    def __init__(self, workdir):
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.root_user = "root-" + secrets.token_hex(4)
        self.root_password = secrets.token_urlsafe(24)
        self.data = workdir / "data"
        self.data.mkdir()
        env = dict(os.environ, MINIO_ROOT_USER=self.root_user, MINIO_ROOT_PASSWORD=self.root_password,
                   MINIO_BROWSER="off")
        self.log = open(workdir / "minio.log", "w")
        self.process = subprocess.Popen(
            [str(minio_binary()), "server", "--quiet", "--address", "127.0.0.1:%d" % self.port,
             "--console-address", "127.0.0.1:%d" % free_port(), str(self.data)],
            env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/minio/health/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        self.stop()
        pytest.fail("MinIO did not become ready on %s" % self.url)

    def connection(self, **overrides):
        return dict(dict(endpoint_url=self.url, access_key=self.root_user, secret_key=self.root_password),
                    **overrides)

    def client(self, access_key=None, secret_key=None):
        from minio import Minio
        return Minio("127.0.0.1:%d" % self.port, access_key or self.root_user, secret_key or self.root_password,
                     secure=False)

    def admin(self):
        from minio import MinioAdmin
        from minio.credentials import StaticProvider
        return MinioAdmin(endpoint="127.0.0.1:%d" % self.port,
                          credentials=StaticProvider(self.root_user, self.root_password), secure=False)

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


@pytest.fixture(scope="session")
def minio():
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="mlops-minio-"))
    server = MinioServer(workdir)
    yield server
    server.stop()
    shutil.rmtree(workdir, ignore_errors=True)


def _as_cluster_owner(argv):
    # initdb refuses to run as root: the cluster belongs to the postgres user then.
    return ["runuser", "-u", "postgres", "--"] + argv if os.geteuid() == 0 else argv


class PostgresServer:
    """A cluster on a socket in a fresh directory; peer authentication only. The user these
    tests run as is a superuser of it (the modules run as that user, as they would as postgres)."""

    def __init__(self, base):
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
        if not found:
            pytest.fail("no PostgreSQL server binaries under /usr/lib/postgresql: run `make deps` first")
        self.bindir = pathlib.Path(found[-1]).parent
        self.socket_dir = str(base)
        self.port = free_port()  # names the socket file; nothing listens on TCP
        self.data = base / "data"
        self.user = pwd.getpwuid(os.geteuid()).pw_name
        os.chmod(base, 0o755)
        if os.geteuid() == 0:
            shutil.chown(base, "postgres")
        superuser = "postgres" if os.geteuid() == 0 else self.user
        subprocess.run(_as_cluster_owner([str(self.bindir / "initdb"), "-D", str(self.data), "-U", superuser,
                                          "--auth-local=peer", "--auth-host=reject", "--no-sync"]),
                       check=True, capture_output=True)
        subprocess.run(_as_cluster_owner([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-w", "-l",
                                          str(base / "log"), "-o", "-c listen_addresses='' -c port=%d "
                                          "-c unix_socket_directories=%s -c fsync=off" % (self.port, base), "start"]),
                       check=True, capture_output=True)
        if superuser != self.user:
            try:
                subprocess.run(_as_cluster_owner(self._psql_argv("postgres", 'CREATE ROLE "%s" SUPERUSER LOGIN'
                                                                 % self.user)), check=True, capture_output=True)
            except subprocess.CalledProcessError:
                self.stop()
                raise

    def _psql_argv(self, database, sql):
        return [str(self.bindir / "psql"), "--no-psqlrc", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.socket_dir,
                "-p", str(self.port), "-d", database, "-c", sql]

    def psql(self, sql, database="postgres"):
        """Run sql as this test's user; return its output."""
        return subprocess.run(self._psql_argv(database, sql), check=True, capture_output=True, text=True).stdout

    def stop(self):
        subprocess.run(_as_cluster_owner([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                                          "stop"]), check=False, capture_output=True)


@pytest.fixture(scope="session")
def postgresql():
    base = pathlib.Path(tempfile.mkdtemp(prefix="mlops-pg-"))
    try:
        server = PostgresServer(base)
        yield server
        server.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


class ModuleResult(dict):
    """One task's result, plus the run's whole output for checks on what it printed."""

    output = ""


PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: module under test
      module_defaults:
        group/mlops.platform.object_storage: "{{ connection }}"
      mlops.platform.%s: "{{ module_args }}"
"""


def run_module(module, args, connection, check=False, diff=False, verbosity=0):
    """Run mlops.platform.<module> on localhost; return its result."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        (tmp / "play.yml").write_text(PLAYBOOK % module)
        variables = tmp / "vars.json"
        variables.write_text(json.dumps({"module_args": args, "connection": connection}))
        variables.chmod(0o600)
        command = ["ansible-playbook", "-i", "localhost,", "-c", "local", "-e", "@%s" % variables, str(tmp / "play.yml")]
        if check:
            command.append("--check")
        if diff:
            command.append("--diff")
        if verbosity:
            command.append("-" + "v" * verbosity)
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
                   # The modules run on localhost with this interpreter, which has minio-py.
                   ANSIBLE_PYTHON_INTERPRETER=sys.executable,
                   ANSIBLE_LOCALHOST_WARNING="false")
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    output = done.stdout + done.stderr
    try:
        report = json.loads(done.stdout[done.stdout.index("{"):])
        result = ModuleResult(report["plays"][0]["tasks"][0]["hosts"]["localhost"])
    except (ValueError, KeyError, IndexError):
        raise AssertionError("no result from mlops.platform.%s:\n%s" % (module, output[-4000:]))
    result.output = output
    return result
