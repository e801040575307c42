"""What the verify tests of the molecule scenarios share: the scenario's inventory and its
hosts, the credentials directory, the gateway and the MLflow clients behind it, MinIO and
PostgreSQL on the hosts, the job CLI, and playbook runs with their recap.

molecule/pytest.ini puts this directory on the import path (pythonpath = shared) of every
scenario's pytest run; the fixtures and the order of the tests are in molecule/conftest.py.
Everything here reads the environment molecule's verifier gives pytest:
MOLECULE_EPHEMERAL_DIRECTORY, MOLECULE_INVENTORY_FILE, MOLECULE_PROJECT_DIRECTORY."""

import json
import os
import pathlib
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import requests
import testinfra
import urllib3
import yaml
from minio import Minio

SHARED = pathlib.Path(__file__).resolve().parent
PROJECT = pathlib.Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", SHARED.parents[1]))
EPHEMERAL = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
# mlops_credentials_dir of every scenario (.config/molecule/config.yml).
CREDENTIALS = EPHEMERAL / "credentials"
TRACKING_SERVICES = CREDENTIALS / "tracking-services"
SEED_TUTORIAL = SHARED / "seed_tutorial.py"
APPLY_ROLE = SHARED / "apply_role.yml"

# The image's Debian release (hack/molecule.sh), its suite and the PostgreSQL it ships.
DEBIAN = os.environ.get("MOLECULE_DEBIAN", "12")
DEBIAN_SUITE = {"12": "bookworm", "13": "trixie"}[DEBIAN]
PG_VERSION = {"12": "15", "13": "17"}[DEBIAN]

# The states a job of the queue ends in.
JOB_FINAL = ("SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT", "LOST")


# The scenario's inventory, as molecule wrote it for this run.

def inventory_directory():
    """ansible_inventory.yml (hosts and groups), group_vars/ and host_vars/ of the scenario."""
    return pathlib.Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent


def group_hosts(group):
    """The names of the scenario's hosts in group, in the inventory's order."""
    inventory = yaml.safe_load(pathlib.Path(os.environ["MOLECULE_INVENTORY_FILE"]).read_text())
    return list(inventory[group]["hosts"])


def group_vars(group="all"):
    """The variables molecule.yml (over .config/molecule/config.yml) gives group."""
    return yaml.safe_load((inventory_directory() / "group_vars" / group).read_text())


def platform_host():
    """The host that serves the gateway: in the one-host scenarios the whole platform."""
    return group_hosts("gateway")[0]


# The test hosts.

def host(name):
    """The testinfra host for a test host."""
    return testinfra.get_host("podman://" + name)


def address(name):
    """A test host's address on its podman network."""
    template = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
    return subprocess.check_output(["podman", "inspect", "-f", template, name], text=True).strip()


def podman_exec(name, *argv, stdin=None, check=True, timeout=300):
    """argv run in a test host (stdin given as text); the CompletedProcess, failed unless it succeeds with check."""
    done = subprocess.run(["podman", "exec", "-i", name] + list(argv), input=stdin, capture_output=True, text=True,
                          timeout=timeout, check=False)
    if check:
        assert done.returncode == 0, "%s %s: %s" % (name, argv, done.stderr[-2000:])
    return done


def put_private_file(name, path, text):
    """text written to path on test host name, readable by root alone: through stdin, never
    a command line."""
    podman_exec(name, "sh", "-c", 'umask 077 && cat > "$1"', "put_private_file", path, stdin=text)


def wait_for(predicate, timeout=120, interval=2):
    """Whether predicate() comes true within timeout seconds, asked every interval seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


# Secrets of the credentials directory.

def secret(path):
    """A secret the roles keep in the credentials directory: the first word of its file
    (the password lookup may append " salt=..." for its own use)."""
    return path.read_text().split()[0]


def service_keys(service):
    """A tracking service's S3 access key (also its bucket's name) and secret key."""
    return "mlflow-" + service, secret(TRACKING_SERVICES / service / "s3_secret_key")


def tracking_service(service):
    """A tracking service's entry in mlops_tracking_services of the scenario's inventory."""
    return next(entry for entry in group_vars()["mlops_tracking_services"] if entry["name"] == service)


def user_password(service, user):
    """A user's password: as the inventory gives it (pass), else the one the roles generated."""
    for entry in tracking_service(service).get("users", []):
        if entry["user_name"] == user and entry.get("pass"):
            return entry["pass"]
    return secret(TRACKING_SERVICES / service / "users" / (user + ".password"))


# The gateway and the MLflow clients behind it.

def gateway_ca():
    """The gateway's CA certificate, from the credentials directory."""
    return CREDENTIALS / platform_host() / "gateway" / "ca.crt"


def gateway_url(port, path=""):
    return "https://%s:%d%s" % (address(platform_host()), port, path)


def gateway_get(port, path, auth=None):
    """GET through the gateway from this machine, its certificate checked against its CA."""
    return requests.get(gateway_url(port, path), auth=auth, verify=str(gateway_ca()), timeout=30)


def tracking_env(service, user):
    """The MLFLOW_* variables an MLflow client needs for service through the gateway as user.
    The client waits up to 15 minutes for an answer: a 2 GB artifact goes in one request."""
    return {
        "MLFLOW_TRACKING_URI": gateway_url(tracking_service(service)["gateway_port"]),
        "MLFLOW_TRACKING_USERNAME": user,
        "MLFLOW_TRACKING_PASSWORD": user_password(service, user),
        "MLFLOW_TRACKING_SERVER_CERT_PATH": str(gateway_ca()),
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "900",
    }


def gateway_session(service, user):
    """A requests session to service through the gateway as user, its CA checked; not the
    environment's CA bundle (REQUESTS_CA_BUNDLE would win over verify) nor proxies."""
    client = requests.Session()
    client.auth = (user, user_password(service, user))
    client.trust_env = False
    client.verify = str(gateway_ca())
    return client


class MetricLoad:
    """Clients logging a metric each through the gateway, as fast as answers come (after a
    failed request, pause_after_failure seconds): one thread per run of service (their own
    sessions as user), until the with block ends. acknowledged: the steps the gateway
    answered 200 to, per run; failures: the requests that got another answer or none;
    acknowledged_after_mark: those acknowledged after mark() (a fault's end, say), per
    run; longest_pause(): the longest time in which no client got an acknowledgement."""

    def __init__(self, service, user, runs, pause_after_failure=0.0):
        self.pause_after_failure = pause_after_failure
        self.api = gateway_url(tracking_service(service)["gateway_port"], "/api/2.0/mlflow")
        self.service, self.user, self.runs = service, user, list(runs)
        self.acknowledged = {run: [] for run in self.runs}
        self.failures = {run: 0 for run in self.runs}
        self.acknowledged_after_mark = {run: 0 for run in self.runs}
        self._acknowledged_at = []
        self._marked, self._stop = threading.Event(), threading.Event()
        self._threads = [threading.Thread(target=self._log, args=(run,)) for run in self.runs]

    def _log(self, run):
        own, step = gateway_session(self.service, self.user), 0
        while not self._stop.is_set():
            body = {"run_id": run, "key": "load", "value": step, "step": step, "timestamp": int(time.time() * 1000)}
            try:
                status = own.post(self.api + "/runs/log-metric", json=body, timeout=10).status_code
            except requests.RequestException:
                status = None
            if status == 200:
                self.acknowledged[run].append(step)
                self.acknowledged_after_mark[run] += self._marked.is_set()
                self._acknowledged_at.append(time.monotonic())
            else:
                self.failures[run] += 1
                time.sleep(self.pause_after_failure)
            step += 1

    def mark(self):
        self._marked.set()

    def longest_pause(self):
        """Seconds, the longest gap between two acknowledgements (to any client)."""
        times = sorted(self._acknowledged_at)
        return max((later - earlier for earlier, later in zip(times, times[1:])), default=0.0)

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def lost_on(self, node, database):
        """Per run, how many acknowledged metrics the service's database on node (its
        PostgreSQL server) lacks; empty when none was lost."""
        lost = {}
        for run in self.runs:
            stored = as_postgres(node, "select step from metrics where run_uuid = '%s' and key = 'load'" % run,
                                 database)
            missing = set(self.acknowledged[run]) - {int(step) for step in stored.split()}
            if missing:
                lost[run] = len(missing)
        return lost


def client_env(service, user, **extra):
    """This process's environment with tracking_env(service, user) and extra: for a client in a subprocess."""
    return dict(os.environ, **tracking_env(service, user), **extra)


def run_tutorial(env, timeout=600):
    """The seed tutorial (seed_tutorial.py) as a data scientist runs it, with env; the CompletedProcess."""
    return subprocess.run([sys.executable, str(SEED_TUTORIAL)], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def mlflow_health(node, port):
    """/health of an MLflow instance, asked on its host (the image has no curl): "200",
    or "" when it does not answer."""
    return node.run("python3 -c \"import urllib.request as u; print(u.urlopen('http://127.0.0.1:%d/health',"
                    " timeout=5).status)\"" % port).stdout.strip()


def unit_properties(node, unit, *names):
    """{name: value} of systemd properties of unit on node, as `systemctl show` gives them."""
    shown = node.check_output("systemctl show " + " ".join("--property=" + name for name in names) + " %s", unit)
    return dict(line.split("=", 1) for line in shown.splitlines())


def unit_exposure(node, unit):
    """systemd's exposure figure of unit on node, 0 (locked down) to 10 (exposed); 4.0
    and below is "OK". Returns (figure, the report's end for an assertion message)."""
    report = node.check_output("systemd-analyze security --no-pager %s", unit)
    return float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", report).group(1)), report[-3000:]


# Connects to address:port, first moving itself into the cgroup given, if any (writing
# 0 to cgroup.procs moves the writer), as a process of that unit would. systemd's address
# filters hang on the unified (v2) hierarchy, at /sys/fs/cgroup/unified on a hybrid host.
_CONNECT = ("import os, socket, sys\n"
            "root = '/sys/fs/cgroup/unified' if os.path.isdir('/sys/fs/cgroup/unified') else '/sys/fs/cgroup'\n"
            "if sys.argv[1]: open(root + sys.argv[1] + '/cgroup.procs', 'w').write('0')\n"
            "socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=3).close()\n")


def connects(node, address, port, unit=""):
    """Whether a TCP connection from node (from inside unit's cgroup when given) to
    address:port is answered within 3 s."""
    group = node.check_output("systemctl show -p ControlGroup --value %s", unit) if unit else ""
    return node.run("python3 -c %s %s %s %s", _CONNECT, group, address, str(port)).rc == 0


# What a TCP socket in LISTEN state (0A) in /proc/net/tcp{,6} is bound to: the address
# in hex (host byte order for IPv4) and the port.
_LISTENING = r"""
import socket, struct
for name in ("/proc/net/tcp", "/proc/net/tcp6"):
    for line in open(name).read().splitlines()[1:]:
        fields = line.split()
        if fields[3] != "0A":
            continue
        address, port = fields[1].split(":")
        raw = bytes.fromhex(address)
        if len(raw) == 4:
            shown = socket.inet_ntop(socket.AF_INET, raw[::-1])
        else:
            shown = socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
        print(shown, int(port, 16))
"""


def listening(node):
    """[(address, port)] of every TCP socket listening on node."""
    return [(address, int(port)) for address, port in
            (line.split() for line in node.check_output("python3 -c %s", _LISTENING).splitlines())]


def service_running(node, service):
    return node.service("mlflow@" + service).is_running


# MinIO.

def minio_root(owner):
    """MinIO's root user and password, kept for owner (the MinIO host, or the cluster's first node)."""
    root = CREDENTIALS / owner / "minio"
    return secret(root / "root_user"), secret(root / "root_password")


# A service that listens on a test host's loopback only (MinIO on a one-host platform) is
# reached as an operator reaches it, through a tunnel: a port on this machine's loopback
# whose every connection is relayed by a python3 started in the host with podman exec.
_RELAY = r"""
import socket, sys, threading
peer = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
def down():
    while True:
        data = peer.recv(65536)
        if not data:
            break
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
receiving = threading.Thread(target=down)
receiving.start()
while True:
    data = sys.stdin.buffer.read1(65536)
    if not data:
        break
    peer.sendall(data)
peer.shutdown(socket.SHUT_WR)
receiving.join()
"""
_TUNNELS = {}


def _pump(source, sink):
    try:
        while True:
            data = source(65536)
            if not data:
                break
            sink(data)
    except OSError:
        pass


def tunnel(name, port):
    """A port on this machine's loopback reaching port on the loopback of test host name."""
    if (name, port) in _TUNNELS:
        return _TUNNELS[(name, port)]
    listener = socket.create_server(("127.0.0.1", 0))

    def relay(conn):
        proc = subprocess.Popen(["podman", "exec", "-i", name, "python3", "-c", _RELAY, str(port)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)

        def upstream():
            _pump(conn.recv, proc.stdin.write)
            proc.stdin.close()

        threading.Thread(target=upstream, daemon=True).start()
        _pump(proc.stdout.read, conn.sendall)
        # shutdown, not only close: it ends the upstream thread's recv and tells the client.
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        conn.close()
        proc.wait()

    def accept():
        while True:
            conn, _peer = listener.accept()
            threading.Thread(target=relay, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    _TUNNELS[(name, port)] = listener.getsockname()[1]
    return _TUNNELS[(name, port)]


def minio_endpoint(name, port=9000):
    """host:port this machine reaches a test host's MinIO API at: its address, or a tunnel
    when MinIO listens on the host's loopback only (minio_listen_address)."""
    options = host(name).file("/etc/default/minio").content_string
    if "--address 127.0.0.1:" in options:
        return "127.0.0.1:%d" % tunnel(name, port)
    return "%s:%d" % (address(name), port)


def minio_client(name, access_key, secret_key, secure=False, ca=None, **options):
    """A MinIO client of the S3 API on port 9000 of a test host, plain HTTP unless secure;
    ca: the CA file its certificate is checked with."""
    if ca:
        options["http_client"] = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=str(ca))
    return Minio(minio_endpoint(name), access_key, secret_key, secure=secure, **options)


def minio_root_client(owner, name=None):
    """A client of name's S3 API (default: owner's) as the root user kept for owner."""
    return minio_client(name or owner, *minio_root(owner))


def minio_health(name, path):
    """The status of MinIO's /minio/health/<path> on a test host, None when it does not answer."""
    try:
        with urllib.request.urlopen("http://%s/minio/health/%s" % (minio_endpoint(name), path), timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def minio_object(name, bucket, key, owner=None):
    """An object's bytes as name's S3 API serves them to the root user kept for owner
    (default: name); None when it cannot be read."""
    try:
        return minio_root_client(owner or name, name).get_object(bucket, key).read()
    except Exception:  # pylint: disable=broad-except
        return None


# PostgreSQL.

def as_postgres(node, sql, database="postgres"):
    """sql run by psql as postgres on a test host; its rows, unaligned, without headers."""
    return node.check_output("runuser -u postgres -- psql -X -q -A -t -d %s -c %s", database, sql)


# The job queue.

def jobs_cli(*args, **env):
    """The mlops-job CLI of this checkout (jobs/src) with this process's environment and env:
    its JSON answer, or its text."""
    environment = dict(os.environ, PYTHONPATH=str(PROJECT / "jobs" / "src"), **env)
    done = subprocess.run([sys.executable, "-m", "mlops_jobs.cli"] + list(args), capture_output=True, text=True,
                          timeout=120, check=False, env=environment)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout) if done.stdout.strip().startswith(("{", "[")) else done.stdout


def wait_for_job(job_id, until, timeout=300, interval=1.0, **env):
    """The job as jobs_cli shows it once until(job) holds; fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        job = jobs_cli("show", str(job_id), **env)
        if until(job):
            return job
        assert time.monotonic() < deadline, "job %d stayed %s: %s" % (job_id, job["status"], job.get("reason"))
        time.sleep(interval)


def commit_repository(name, path, files, message):
    """A git repository at path on a test host with files ({name: text}) in one commit, of
    fixed dates so that every host gets the same commit id; returns the commit id."""
    git = ["env", "GIT_AUTHOR_DATE=2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE=2026-01-01T00:00:00Z",
           "git", "-C", path, "-c", "user.name=ci", "-c", "user.email=ci@example.invalid"]
    podman_exec(name, "rm", "-rf", path)
    podman_exec(name, "git", "init", "-q", "-b", "main", path)
    for file_name, text in files.items():
        podman_exec(name, "sh", "-c", "cat > %s/%s" % (path, file_name), stdin=text)
    podman_exec(name, *git, "add", ".")
    podman_exec(name, *git, "commit", "-q", "-m", message)
    return podman_exec(name, "git", "-C", path, "rev-parse", "HEAD").stdout.strip()


# Playbooks against the scenario's inventory, and their recap.

def ansible_playbook(playbook, extra_vars=None, *args, timeout=1500, result_format=None):
    """ansible-playbook PLAYBOOK (a path or a collection playbook name) with extra_vars (in a
    0600 file, not on the command line) and further command line args; returns the
    CompletedProcess. result_format "json" keeps each message on one line for word checks."""
    command = ["ansible-playbook", "-i", str(inventory_directory()), str(playbook), *args]
    # Plain text: molecule forces colour on for its own runs.
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", PY_COLORS="0")
    if result_format:
        env["ANSIBLE_CALLBACK_RESULT_FORMAT"] = result_format
    vars_file = None
    if extra_vars is not None:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(extra_vars, f)
        vars_file = f.name
        os.chmod(vars_file, 0o600)
        command += ["-e", "@" + vars_file]
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    finally:
        if vars_file:
            os.unlink(vars_file)


def run_playbook(playbook, extra_vars=None, *args, **options):
    """ansible_playbook's (exit status, stdout and stderr)."""
    done = ansible_playbook(playbook, extra_vars, *args, **options)
    return done.returncode, done.stdout + done.stderr


def platform_playbook(name, extra_vars=None, *args, timeout=1200, result_format="json"):
    """A playbook of the collection (mlops.platform.NAME) as an operator runs it on the
    scenario's hosts: (exit status, output), messages one per line (json)."""
    return run_playbook("mlops.platform." + name, extra_vars, *args, timeout=timeout, result_format=result_format)


def recap_changed(output):
    """The changed= count of every host in the last PLAY RECAP."""
    return [int(n) for n in re.findall(r"changed=(\d+)", output.split("PLAY RECAP")[-1])]


def apply_role(role, target, variables, *extra):
    """Apply role to target with variables (in a 0600 file, not on the command line), by
    apply_role.yml; returns the CompletedProcess."""
    return ansible_playbook(APPLY_ROLE, dict(variables, role_under_test=role), "--limit", target, *extra, timeout=900)


def run_module(target, module, args=None):
    """ansible TARGET -b -m MODULE [-a ARGS as JSON] against the scenario's inventory, its
    result as JSON (module_result reads one host's); returns the CompletedProcess."""
    command = ["ansible", "-i", str(inventory_directory()), target, "-b", "-m", module]
    if args is not None:
        command += ["-a", json.dumps(args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False,
                          env=dict(os.environ, ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
                                   ANSIBLE_STDOUT_CALLBACK="ansible.posix.json"))


def module_result(done, target):
    """target's result in the JSON of a run_module run."""
    return json.loads(done.stdout)["plays"][0]["tasks"][0]["hosts"][target]
