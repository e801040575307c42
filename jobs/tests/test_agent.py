"""The runner agent end to end on this machine: jobs from the real queue, a real git
repository served from disk, a real MLflow server on loopback, the `local` executor
(child processes: this machine has no systemd; the `process` executor's transient units
are exercised on systemd test hosts)."""

import base64
import io
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

import psycopg
import pytest
from mlflow.tracking import MlflowClient

import git_server
import servers
from test_api import serve
from test_cli import behind_gateway

from mlops_jobs import cli
from mlops_jobs.agent import Agent, drop_links, started_agent
from mlops_jobs.api import create_app
from mlops_jobs.executors import ExecutorError, LocalExecutor, PodmanExecutor
from mlops_jobs.queue import Queue, migrate

MLFLOW_BASE = tempfile.mkdtemp(prefix="mlops-jobs-mlflow-")
PYTHON = sys.executable  # has mlflow; the jobs' own environments do not need to
GIT_TOKEN = "git-token-8f2c41d7e9"
SCRIPTS = {
    "train.py": """
import os, mlflow
with mlflow.start_run():  # MLFLOW_RUN_ID: the job's run
    mlflow.log_param("lr", os.environ.get("LR", "0.1"))
    for step in range(3):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
with open(os.path.join(os.environ["MLOPS_OUTPUT_DIR"], "model.txt"), "w") as out:
    out.write("weights")
print("trained", flush=True)
""",
    "fail.py": "import sys\nprint('about to fail', flush=True)\nsys.exit(3)\n",
    "sleep.py": """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
with open(os.path.join(os.environ["MLOPS_OUTPUT_DIR"], "child.pid"), "w") as out:
    out.write(str(child.pid))
print("sleeping", flush=True)
time.sleep(300)
""",
    "inputs.py": """
import os
for root, dirs, files in sorted(os.walk(os.environ["MLOPS_INPUT_DIR"])):
    for name in sorted(files):
        path = os.path.join(root, name)
        print("input", os.path.relpath(path, os.environ["MLOPS_INPUT_DIR"]), oct(os.stat(path).st_mode & 0o777),
              open(path).read().strip(), flush=True)
""",
    "devices.py": """
import os, time
print("devices=" + os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
time.sleep(float(os.environ.get("HOLD", "0")))
""",
}


@pytest.fixture(scope="module")
def mlflow_uri():
    with servers.mlflow_server(MLFLOW_BASE) as uri:
        yield uri


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo") / "model"
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    for name, text in SCRIPTS.items():
        (repo / name).write_text(text)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "scripts"], check=True)
    head = subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    return "file://%s" % repo, head


@pytest.fixture(scope="module")
def private_repository(repository, tmp_path_factory):
    """The repository behind a git server that answers only deploy:GIT_TOKEN; yields
    (the server, its URL prefix, (the repository's URL, its head))."""
    root = tmp_path_factory.mktemp("git-server")
    bare = root / "team" / "model.git"
    subprocess.run(["git", "clone", "-q", "--bare", repository[0], str(bare)], check=True)
    # Jobs name a commit, which git fetches by id (as hosted services allow).
    subprocess.run(["git", "-C", str(bare), "config", "uploadpack.allowAnySHA1InWant", "true"], check=True)
    server = git_server.serve(str(root), servers.free_port(), credential="deploy:" + GIT_TOKEN)
    prefix = "http://127.0.0.1:%d/" % server.server_port
    yield server, prefix, (prefix + "team/model.git", repository[1])
    server.shutdown()


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def make_agent(database, mlflow_uri, cache_dir, tmp_path):
    agents = []

    def make(name="gpu-1", gpu_ids=("GPU-a", "GPU-b"), cpus=4, work_dir=None, executor=None, git_credentials=()):
        config = {"name": name, "database": database["runner"], "work_dir": work_dir or str(tmp_path / name),
                  "gpu_ids": list(gpu_ids), "cpus": cpus, "memory_mb": 8192, "min_free_disk_mb": 1,
                  "lease_seconds": 5, "poll_seconds": 1, "log_upload_seconds": 1, "stop_grace_seconds": 2,
                  "services": {"team-a": {"uri": mlflow_uri, "git_credentials": list(git_credentials)}}}
        agent = Agent(config, executor=executor or LocalExecutor(cache_dir))
        agent.register()
        agent.reconcile()
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        for job in list(agent.jobs.values()):
            if job.handle:
                agent.executor.cleanup(job.handle)
        agent.close()


def test_the_agent_waits_in_its_process_until_the_queue_can_be_used(server, tmp_path, monkeypatch):
    """started_agent as a platform host being rebuilt meets it: no database at the
    address, then a database without the queue's tables, then the queue. The agent tries
    again after 1 s, then 2 s (doubled, at most a third of the watchdog's 6 s), and
    registers once it can; the pauses are recorded here instead of slept."""
    database = servers.queue_database(server, migrated=False)
    config = {"name": "waits", "executor": "local", "work_dir": str(tmp_path / "waits"), "cpus": 1,
              "memory_mb": 1024, "services": {},
              "database": "host=127.0.0.1 port=%d dbname=nothing user=nobody connect_timeout=5" % servers.free_port()}
    pauses = []

    def pause(seconds):
        pauses.append(seconds)
        if len(pauses) == 1:
            config["database"] = database["runner"]
        elif len(pauses) == 3:
            name = database["owner"].split("dbname=")[1].split()[0]
            with psycopg.connect(database["owner"], autocommit=True) as owner:
                migrate(owner, api_role=name + "_api", runner_role=name + "_runner")

    monkeypatch.setenv("WATCHDOG_USEC", "6000000")
    agent = started_agent(config, sleep=pause)
    try:
        assert pauses == [1.0, 2.0, 2.0]
        assert agent.queue.conn.execute("SELECT name FROM runners").fetchall() == [{"name": "waits"}]
    finally:
        agent.close()


@pytest.fixture
def api(database):
    queue = Queue(database["api"])
    yield queue
    queue.close()


def submit(api, repository, command, **spec):
    url, head = repository
    return api.submit("team-a", "alice", dict({"repository": url, "commit": head, "command": command}, **spec))


def drive(agents, api, job_id, until, timeout=60):
    """Run the agents' loops until until(job row) holds."""
    deadline = time.monotonic() + timeout
    while True:
        for agent in agents:
            agent.step()
        row = api.get(job_id, "team-a")
        if until(row):
            return row
        assert time.monotonic() < deadline, "job %d stayed %s" % (job_id, row["status"])
        time.sleep(0.2)


def artifact_text(mlflow_uri, run_id, path):
    local = MlflowClient(mlflow_uri).download_artifacts(run_id, path, tempfile.mkdtemp())
    with open(local) as handle:
        return handle.read()


def test_a_job_runs_logs_into_its_run_and_keeps_its_outputs_and_log(make_agent, api, repository, mlflow_uri):
    agent = make_agent()
    job = submit(api, repository, "%s train.py" % PYTHON, env={"LR": "0.05"}, experiment="diabetes")
    row = drive([agent], api, job["id"], lambda r: r["status"] == "SUCCEEDED")
    assert row["exit_code"] == 0 and row["runner"] == "gpu-1"
    run = MlflowClient(mlflow_uri).get_run(row["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["lr"] == "0.05" and run.data.metrics["loss"] == pytest.approx(1 / 3)
    assert run.data.params["job.commit"] == repository[1]
    assert run.data.tags["mlops.job_id"] == str(job["id"]) and run.data.tags["mlops.exit_code"] == "0"
    assert MlflowClient(mlflow_uri).get_experiment(run.info.experiment_id).name == "diabetes"
    assert "trained" in artifact_text(mlflow_uri, row["run_id"], "logs/job.log")
    assert artifact_text(mlflow_uri, row["run_id"], "outputs/model.txt") == "weights"


def test_a_failing_job_ends_failed_with_its_log(make_agent, api, repository, mlflow_uri):
    agent = make_agent()
    job = submit(api, repository, "%s fail.py" % PYTHON)
    row = drive([agent], api, job["id"], lambda r: r["status"] == "FAILED")
    assert row["exit_code"] == 3 and row["reason"] == "exit code 3"
    run = MlflowClient(mlflow_uri).get_run(row["run_id"])
    assert run.info.status == "FAILED" and run.data.tags["mlops.exit_code"] == "3"
    assert "about to fail" in artifact_text(mlflow_uri, row["run_id"], "logs/job.log")


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open("/proc/%d/stat" % pid) as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_cancelling_a_running_job_kills_it_and_its_children_within_10_s(make_agent, api, repository, mlflow_uri):
    agent = make_agent()
    job = submit(api, repository, "%s sleep.py" % PYTHON)
    drive([agent], api, job["id"], lambda r: r["status"] == "RUNNING")
    pid_file = os.path.join(agent.jobs[job["id"]].workdir, "outputs", "child.pid")
    deadline = time.monotonic() + 30
    while not os.path.exists(pid_file):
        assert time.monotonic() < deadline
        agent.step()
        time.sleep(0.2)
    time.sleep(0.2)
    child = int(open(pid_file).read())
    asked = time.monotonic()
    api.cancel(job["id"], "team-a")
    row = drive([agent], api, job["id"], lambda r: r["status"] == "CANCELLED", timeout=10)
    assert time.monotonic() - asked < 10
    assert not alive(child)
    assert MlflowClient(mlflow_uri).get_run(row["run_id"]).info.status == "KILLED"


def test_a_job_past_its_timeout_is_stopped(make_agent, api, repository):
    agent = make_agent()
    job = submit(api, repository, "%s sleep.py" % PYTHON, timeout_s=2)
    row = drive([agent], api, job["id"], lambda r: r["status"] == "TIMED_OUT", timeout=30)
    assert row["reason"] == "stopped when its timeout ran out"


def test_a_two_gpu_job_sees_both_devices_and_a_one_gpu_job_waits(make_agent, api, repository, mlflow_uri):
    agent = make_agent()
    both = submit(api, repository, "%s devices.py" % PYTHON, gpus=2, env={"HOLD": "3"})
    one = submit(api, repository, "%s devices.py" % PYTHON, gpus=1)
    drive([agent], api, both["id"], lambda r: r["status"] == "RUNNING")
    assert api.get(one["id"], "team-a")["status"] == "QUEUED"
    first = drive([agent], api, both["id"], lambda r: r["status"] == "SUCCEEDED")
    assert "devices=GPU-a,GPU-b" in artifact_text(mlflow_uri, first["run_id"], "logs/job.log")
    second = drive([agent], api, one["id"], lambda r: r["status"] == "SUCCEEDED")
    devices = artifact_text(mlflow_uri, second["run_id"], "logs/job.log").split("devices=")[1].split()[0]
    assert devices in ("GPU-a", "GPU-b")


def test_a_job_whose_agent_died_is_lost_with_its_log_so_far(make_agent, api, repository, mlflow_uri, tmp_path):
    work_dir = str(tmp_path / "shared")
    first = make_agent(name="gpu-2", work_dir=work_dir)
    job = submit(api, repository, "%s sleep.py" % PYTHON)
    drive([first], api, job["id"], lambda r: r["status"] == "RUNNING" and "sleeping" in open(
        os.path.join(work_dir, "jobs", str(job["id"]), "job.log")).read())
    # The agent dies: its children die with it (the kernel's parent-death signal); the
    # test process lives on, so it sends that signal itself.
    handle = first.jobs[job["id"]].handle
    os.killpg(first.executor.children[handle].pid, signal.SIGKILL)
    first.executor.children[handle].wait()
    first.jobs.clear()
    first.executor.children.clear()
    # The runner restarts: it finds the job gone and reports it LOST, with its log.
    make_agent(name="gpu-2", work_dir=work_dir)
    row = api.get(job["id"], "team-a")
    assert row["status"] == "LOST" and row["reason"] == "the runner did not see the command end"
    run = MlflowClient(mlflow_uri).get_run(row["run_id"])
    assert run.info.status == "FAILED" and run.data.tags["mlops.job_status"] == "LOST"
    assert "sleeping" in artifact_text(mlflow_uri, row["run_id"], "logs/job.log")


def test_inputs_and_the_parent_runs_artifacts_are_staged_read_only(make_agent, api, repository, mlflow_uri,
                                                                   tmp_path):
    client = MlflowClient(mlflow_uri)
    parent = client.create_run(client.create_experiment("parents")).info.run_id
    (tmp_path / "weights.txt").write_text("parent weights")
    client.log_artifact(parent, str(tmp_path / "weights.txt"), "model")
    # What the service's bucket holds outside runs: the artifact proxy serves its root.
    os.makedirs(os.path.join(MLFLOW_BASE, "artifacts", "datasets", "diabetes"), exist_ok=True)
    with open(os.path.join(MLFLOW_BASE, "artifacts", "datasets", "diabetes", "train.csv"), "w") as out:
        out.write("a,b")
    agent = make_agent()
    job = submit(api, repository, "%s inputs.py" % PYTHON, parent_run_id=parent,
                 inputs=["s3://mlflow-team-a/datasets/diabetes/", "runs:/%s/model" % parent])
    row = drive([agent], api, job["id"], lambda r: r["status"] == "SUCCEEDED")
    log = artifact_text(mlflow_uri, row["run_id"], "logs/job.log")
    assert "input diabetes/train.csv 0o444 a,b" in log
    assert "input model/weights.txt 0o444 parent weights" in log
    assert "input parent/model/weights.txt 0o444 parent weights" in log


@pytest.mark.parametrize("inputs,reason", [
    (["s3://mlflow-team-a/datasets/missing/"], "cannot stage s3://mlflow-team-a/datasets/missing/"),
    (["s3://mlflow-team-b/datasets/diabetes/"], "is not in the tracking service's bucket mlflow-team-a"),
])
def test_an_input_that_cannot_be_staged_fails_the_job_without_running_it(make_agent, api, repository, inputs,
                                                                         reason):
    agent = make_agent()
    job = submit(api, repository, "%s train.py" % PYTHON, inputs=inputs)
    row = drive([agent], api, job["id"], lambda r: r["status"] == "FAILED")
    assert reason in row["reason"] and row["started_at"] is None and row["exit_code"] is None


TEST_IMAGE = os.environ.get("MLOPS_IMAGE_PREFIX", "localhost/mlops-platform/debian") + ":12"


@pytest.fixture
def podman_executor(cache_dir):
    if subprocess.run(["podman", "image", "exists", TEST_IMAGE], check=False).returncode != 0:
        pytest.fail("no image %s for the podman executor: run `make images` first" % TEST_IMAGE)
    return PodmanExecutor(cache_dir, default_image=TEST_IMAGE)


def test_the_podman_executor_runs_a_job_in_a_container(make_agent, api, repository, mlflow_uri, podman_executor):
    agent = make_agent(name="podman-1", gpu_ids=(), executor=podman_executor)
    command = ('echo "in $(cat /etc/debian_version) as $(id -u), run $MLFLOW_RUN_ID"; '
               'echo weights > "$MLOPS_OUTPUT_DIR/model.txt"; exit 5')
    job = submit(api, repository, command)
    row = drive([agent], api, job["id"], lambda r: r["status"] == "FAILED")
    assert row["exit_code"] == 5
    log = artifact_text(mlflow_uri, row["run_id"], "logs/job.log")
    assert log.startswith("in 12.") and ("run %s" % row["run_id"]) in log
    assert artifact_text(mlflow_uri, row["run_id"], "outputs/model.txt") == "weights\n"
    assert subprocess.run(["podman", "container", "exists", "mlops-job-%d" % job["id"]],
                          check=False).returncode != 0


def test_cancelling_a_podman_job_removes_its_container(make_agent, api, repository, podman_executor):
    agent = make_agent(name="podman-2", gpu_ids=(), executor=podman_executor)
    job = submit(api, repository, "echo started; sleep 300")
    drive([agent], api, job["id"], lambda r: r["status"] == "RUNNING")
    asked = time.monotonic()
    api.cancel(job["id"], "team-a")
    row = drive([agent], api, job["id"], lambda r: r["status"] == "CANCELLED", timeout=15)
    assert time.monotonic() - asked < 10 and row["exit_code"] is not None
    assert subprocess.run(["podman", "container", "exists", "mlops-job-%d" % job["id"]],
                          check=False).returncode != 0


# Each podman job writes what it is, waits for the test to tell it the other job's
# outputs directory (a file the host writes into its own), then tries to read it there
# and to write its work directory beside its outputs.
PEEKING_JOB = r"""
out="$MLOPS_OUTPUT_DIR"
id -u > "$out/uid"
cat /proc/self/uid_map > "$out/uid_map"
echo "secret of job $MLOPS_JOB_ID" > "$out/secret.txt"
n=0
while [ ! -s "$out/peer" ] && [ "$n" -lt 600 ]; do sleep 0.1; n=$((n + 1)); done
peer=$(cat "$out/peer")
cat "$peer/secret.txt" > "$out/read-peer" 2>&1; echo "cat exit $?" >> "$out/read-peer"
ls "$peer" >> "$out/read-peer" 2>&1; echo "ls exit $?" >> "$out/read-peer"
touch "$out/../planted" >> "$out/read-peer" 2>&1; echo "touch exit $?" >> "$out/read-peer"
"""


def id_range(text):
    """The host ids a /proc/<pid>/uid_map or gid_map gives the namespace, which maps its 0 (root) to the first."""
    lines = [line.split() for line in text.strip().splitlines()]
    assert len(lines) == 1 and lines[0][0] == "0", text
    return range(int(lines[0][1]), int(lines[0][1]) + int(lines[0][2]))


def test_two_podman_jobs_get_host_ids_of_their_own_and_cannot_read_each_other(make_agent, api, repository,
                                                                              mlflow_uri, podman_executor, tmp_path):
    agent = make_agent(name="podman-3", gpu_ids=(), executor=podman_executor)
    jobs = [submit(api, repository, PEEKING_JOB), submit(api, repository, PEEKING_JOB)]
    workdirs = [str(tmp_path / "podman-3" / "jobs" / str(job["id"])) for job in jobs]
    outputs = [os.path.join(workdir, "outputs") for workdir in workdirs]
    drive([agent], api, jobs[0]["id"], lambda _row: all(
        os.path.exists(os.path.join(out, "secret.txt")) for out in outputs))

    # While both run: each container's first process as the host sees it.
    ids = []
    for job, out in zip(jobs, outputs):
        pid = subprocess.run(["podman", "inspect", "--format", "{{.State.Pid}}", "mlops-job-%d" % job["id"]],
                             check=True, capture_output=True, text=True).stdout.strip()
        with open("/proc/%s/uid_map" % pid) as uid_map, open("/proc/%s/gid_map" % pid) as gid_map:
            uids, gids = id_range(uid_map.read()), id_range(gid_map.read())
        with open("/proc/%s/status" % pid) as status:
            process = dict(line.split(":", 1) for line in status.read().splitlines() if ":" in line)
        # Root in its container (as the job saw it), the first id of its range on the host.
        with open(os.path.join(out, "uid")) as seen_uid, open(os.path.join(out, "uid_map")) as seen_map:
            assert seen_uid.read().strip() == "0" and id_range(seen_map.read()) == uids
        assert [int(x) for x in process["Uid"].split()] == [uids[0]] * 4
        assert [int(x) for x in process["Gid"].split()] == [gids[0]] * 4
        for taken in (uids, gids):
            assert len(taken) == 65536 and 0 not in taken and os.getuid() not in taken and os.getgid() not in taken
        ids.append((uids, gids))
    for mine, theirs in zip(ids[0], ids[1]):  # the uids, then the gids
        assert mine.stop <= theirs.start or theirs.stop <= mine.start, (mine, theirs)

    # On the host the files a job writes are its namespace root's; its work directory stays root's.
    for out, (uids, gids) in zip(outputs, ids):
        for path in (out, os.path.join(out, "secret.txt"), os.path.join(os.path.dirname(out), "job.log")):
            assert (os.stat(path).st_uid, os.stat(path).st_gid) == (uids[0], gids[0]), path
        assert os.stat(os.path.dirname(out)).st_uid == 0

    for out, peer in ((outputs[0], outputs[1]), (outputs[1], outputs[0])):
        with open(os.path.join(out, ".peer"), "w") as tell:
            tell.write(peer)
        os.replace(os.path.join(out, ".peer"), os.path.join(out, "peer"))
    rows = [drive([agent], api, job["id"], lambda row: row["status"] in ("SUCCEEDED", "FAILED")) for job in jobs]

    for row, job, other, workdir in zip(rows, jobs, reversed(jobs), workdirs):
        assert row["status"] == "SUCCEEDED", row
        # The agent (root) read the outputs the job's user wrote, then removed its directory.
        assert artifact_text(mlflow_uri, row["run_id"], "outputs/secret.txt") == "secret of job %d\n" % job["id"]
        read = artifact_text(mlflow_uri, row["run_id"], "outputs/read-peer")
        assert "secret of job %d" % other["id"] not in read, read
        assert "cat exit 1" in read and "ls exit 2" in read and "No such file or directory" in read, read
        assert "touch exit 1" in read and "Read-only file system" in read, read
        assert not os.path.exists(workdir)
        assert subprocess.run(["podman", "container", "exists", "mlops-job-%d" % job["id"]],
                              check=False).returncode != 0


class UnstartableExecutor(LocalExecutor):
    """Prepares as the local executor does; its start fails as systemd-run or podman can."""

    def start(self, job, workdir, env, log_path, prepared):
        raise ExecutorError("podman: no subordinate ids for the user containers")


def test_a_job_that_cannot_start_is_retried_as_a_platform_failure_and_the_agent_goes_on(make_agent, api,
                                                                                        repository, cache_dir):
    agent = make_agent(name="unstartable", gpu_ids=(), executor=UnstartableExecutor(cache_dir))
    job = submit(api, repository, "true")
    # Back to the queue after each failed start, up to the queue's limit of platform failures.
    row = drive([agent], api, job["id"], lambda r: r["status"] == "FAILED")
    assert "could not start on unstartable: podman: no subordinate ids" in row["reason"], row
    assert row["exit_code"] is None and not agent.jobs
    agent.step()


def test_the_cli_follows_a_running_jobs_log_until_it_ends(make_agent, api, database, repository, mlflow_uri, capsys):
    agent = make_agent(name="follow-1")
    command = "for i in 1 2 3 4 5; do echo line $i; sleep 0.5; done"
    job = submit(api, repository, command)
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            agent.step()
            time.sleep(0.1)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        out = io.StringIO()
        # The jobs API of the queue the agent serves, as the gateway would forward it.
        with serve(behind_gateway(create_app(database["api"], ["team-a"]), "team-a")) as base:
            environ = {"MLFLOW_TRACKING_URI": mlflow_uri, "MLOPS_JOBS_URL": base + "/api/mlops/jobs",
                       "MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": "pw"}
            rc = cli.main(["logs", str(job["id"]), "--follow", "--interval", "0.3"], environ=environ, out=out)
    finally:
        stop.set()
        thread.join(10)
    assert rc == 0
    assert out.getvalue() == "".join("line %d\n" % i for i in range(1, 6))
    assert "job %d SUCCEEDED" % job["id"] in capsys.readouterr().err


def test_check_names_what_refuses_the_runners_credentials(database, mlflow_uri):
    from mlops_jobs.agent import check  # pylint: disable=import-outside-toplevel

    good = {"name": "gpu-1", "database": database["runner"], "services": {"team-a": {"uri": mlflow_uri}}}
    assert check(good) == ([], {"database": "ok", "team-a": "ok"})
    bad = dict(good, database=database["runner"] + " password=wrong dbname=nonexistent_queue",
               services={"team-a": {"uri": mlflow_uri}, "team-b": {"uri": "http://127.0.0.1:9/"}})
    problems, found = check(bad)
    assert found["team-a"] == "ok"
    assert [p.split(":")[0] for p in problems] == ["the job queue's database", "tracking service team-b at http"]
    assert "nonexistent_queue" in found["database"]


def test_links_and_special_files_leave_the_outputs_before_upload(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "kept.txt").write_text("kept")
    (tmp_path / "to-config").symlink_to("/etc/hostname")
    (tmp_path / "sub" / "to-dir").symlink_to("/etc")
    os.mkfifo(tmp_path / "fifo")
    drop_links(str(tmp_path))
    left = sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*"))
    assert left == ["sub", "sub/kept.txt"]


def test_a_private_repository_is_fetched_with_the_services_credential_and_the_job_never_sees_it(
        make_agent, api, private_repository, mlflow_uri):
    server, prefix, repository = private_repository
    agent = make_agent(git_credentials=[
        {"url": prefix + "other/", "username": "deploy", "token": "not-this-one"},
        {"url": prefix + "team", "username": "deploy", "token": GIT_TOKEN}])
    server.seen.clear()
    job = submit(api, repository, "env; cat .git/config .git/FETCH_HEAD; git rev-parse HEAD")
    row = drive([agent], api, job["id"], lambda r: r["status"] in ("SUCCEEDED", "FAILED"), timeout=120)
    assert row["status"] == "SUCCEEDED", row
    log = artifact_text(mlflow_uri, row["run_id"], "logs/job.log")
    assert repository[1] in log
    # Every request to the git server carried the team's credential, and only those.
    assert server.seen and all(ok and path.startswith("/team/model.git/") for path, ok in server.seen)
    shown = str(row) + log + str(MlflowClient(mlflow_uri).get_run(row["run_id"]).data)
    secret = base64.b64encode(("deploy:" + GIT_TOKEN).encode()).decode()
    assert GIT_TOKEN not in shown and secret not in shown


def test_a_private_repository_without_a_credential_fails_at_once_saying_why(make_agent, api, private_repository):
    _server, _prefix, repository = private_repository
    agent = make_agent()
    job = submit(api, repository, "true")
    row = drive([agent], api, job["id"], lambda r: r["reason"], timeout=60)
    assert "terminal prompts disabled" in row["reason"], row
