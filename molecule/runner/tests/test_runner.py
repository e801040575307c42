"""Verify the runners as a data scientist meets them: jobs submitted with the mlops-job
CLI through the gateway (basic auth of team-a), run on runner-1 (2 configured GPU ids)
or runner-2 (CPU only), and reported on their MLflow runs; plus what an operator sees
on the runner hosts."""

import base64
import json
import os
import re
import tempfile
import time

import mlflow
import numpy
import pytest
import requests
from mlflow.tracking import MlflowClient

from mlops_testing import JOB_FINAL as FINAL
from mlops_testing import (PROJECT, commit_repository, host, jobs_cli, podman_exec, recap_changed, run_playbook,
                           tracking_env, unit_exposure, unit_properties, wait_for, wait_for_job)

# Every test as a data scientist: MLflow's client (here and in the CLI) reaches team-a
# through the gateway as alice.
pytestmark = pytest.mark.usefixtures("mlflow_env")
AIO = "mlops-platform"
RUNNERS = ("runner-1", "runner-2")
GPU_IDS = {"GPU-00000000-0000-0000-0000-0000000000a0", "GPU-00000000-0000-0000-0000-0000000000a1"}
REPO = "/srv/git/model"
# team-a's git credential (molecule.yml) and the private repository it opens.
GIT_TOKEN = "git-token-runner-5e1f93"
GIT_HOST = "runner-2"
PRIVATE_REPO = "http://runner-2:8418/team/model.git"
# As many workstations have it: the CLI must still check the gateway against
# MLFLOW_TRACKING_SERVER_CERT_PATH.
WORKSTATION = {"REQUESTS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt"}

TRAIN = '''"""The seed tutorial's training, as a job: autolog into the job's run (MLFLOW_RUN_ID)."""
import os

import mlflow
from sklearn.datasets import load_diabetes
from sklearn.ensemble import RandomForestRegressor
from sklearn.model_selection import train_test_split

mlflow.sklearn.autolog()
X, y = load_diabetes(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
with mlflow.start_run() as run:
    model = RandomForestRegressor(n_estimators=20, max_depth=6, max_features=3).fit(X_train, y_train)
    print("trained in run", run.info.run_id, flush=True)
with open(os.path.join(os.environ["MLOPS_OUTPUT_DIR"], "score.txt"), "w") as out:
    out.write("%.4f\\n" % model.score(X_test, y_test))
'''


def cli(*args):
    return jobs_cli(*args, **WORKSTATION)


def wait(job_id, until, timeout=300, interval=1.0):
    return wait_for_job(job_id, until, timeout, interval, **WORKSTATION)


def artifact_text(run_id, path):
    local = MlflowClient().download_artifacts(run_id, path, tempfile.mkdtemp())
    with open(local) as handle:
        return handle.read()


@pytest.fixture(scope="module")
def commit():
    """The same repository, commit for commit, on both runners at REPO (file://)."""
    files = {"train.py": TRAIN, "requirements.txt": "mlflow==%s\nscikit-learn\n" % mlflow.__version__}
    heads = {commit_repository(name, REPO, files, "tutorial") for name in RUNNERS}
    assert len(heads) == 1
    return heads.pop()


def submit(commit, *options):
    args = ["submit", "--repo", "file://" + REPO, "--commit", commit] + list(options)
    return cli(*args)["id"]


@pytest.fixture(scope="module")
def private_commit():
    """A private repository of team-a: on runner-2 (a host with git), behind a git server
    (jobs/tests/git_server.py) that answers only the token of team-a's git_credentials
    (molecule.yml); the commit id."""
    script = (PROJECT / "jobs" / "tests" / "git_server.py").read_text()
    podman_exec(GIT_HOST, "sh", "-c", "cat > /usr/local/lib/test-git-server.py", stdin=script)
    head = commit_repository(GIT_HOST, "/srv/git-src/model", {"README": "private\n"}, "private")
    podman_exec(GIT_HOST, "rm", "-rf", "/srv/git-private")
    podman_exec(GIT_HOST, "git", "clone", "-q", "--bare", "/srv/git-src/model", "/srv/git-private/team/model.git")
    podman_exec(GIT_HOST, "git", "-C", "/srv/git-private/team/model.git", "config", "uploadpack.allowAnySHA1InWant",
                "true")
    podman_exec(GIT_HOST, "systemctl", "stop", "test-git-server", check=False)
    podman_exec(GIT_HOST, "systemd-run", "--unit", "test-git-server", "--setenv",
                "GIT_SERVER_CREDENTIAL=deploy:" + GIT_TOKEN,
                "python3", "/usr/local/lib/test-git-server.py", "/srv/git-private", "8418", "0.0.0.0")
    assert wait_for(lambda: host(GIT_HOST).socket("tcp://0.0.0.0:8418").is_listening, timeout=30)
    yield head
    podman_exec(GIT_HOST, "systemctl", "stop", "test-git-server", check=False)


def test_every_runner_runs_its_agent_with_private_configuration():
    for name in RUNNERS:
        node = host(name)
        agent = node.service("mlops-runner")
        assert agent.is_running and agent.is_enabled
        config = node.file("/etc/mlops-runner/config.json")
        assert config.user == "root" and config.mode == 0o600
        checked = json.loads(podman_exec(name, "/opt/mlops-runner/venv/bin/mlops-runner", "--check").stdout)
        served = {"team-a": "ok", "team-b": "ok"} if name == "runner-1" else {"team-a": "ok"}
        assert checked["ok"] and checked["checked"] == dict(served, database="ok"), checked
        # No package index was needed: the agent came from the controller's wheels.
        assert node.file("/opt/mlops-runner/venv/bin/mlops-runner").exists
        # Sandboxed, though it asks systemd to start units (about 2.3; the role's README).
        exposure, report = unit_exposure(node, "mlops-runner")
        assert exposure <= 4.0, report


def test_the_tutorial_runs_as_a_job_into_a_finished_run(commit):
    job_id = submit(commit, "--cpus", "1", "--memory", "2G", "--timeout", "20m", "--experiment", "diabetes-jobs",
                    "--", "python", "train.py")
    job = wait(job_id, lambda j: j["status"] in FINAL, timeout=900, interval=3)
    assert job["status"] == "SUCCEEDED", job
    run = MlflowClient().get_run(job["run_id"])
    assert run.info.status == "FINISHED"
    assert {"training_score", "training_mean_squared_error"} <= set(run.data.metrics)
    assert run.data.tags["mlops.job_status"] == "SUCCEEDED" and run.data.tags["mlops.exit_code"] == "0"
    assert run.data.tags["mlops.runner"] in RUNNERS
    assert "trained in run %s" % job["run_id"] in artifact_text(job["run_id"], "logs/job.log")
    assert float(artifact_text(job["run_id"], "outputs/score.txt")) > 0
    model = mlflow.pyfunc.load_model("runs:/%s/model" % job["run_id"])
    assert len(model.predict(numpy.zeros((3, 10)))) == 3
    listed = cli("list")
    assert job_id in [j["id"] for j in listed["jobs"]]


def test_a_failing_job_ends_failed_with_its_log_and_ran_unprivileged(commit):
    job_id = submit(commit, "--", "sh", "-c",
                    "echo uid=$(id -u); cat /etc/mlops-runner/config.json || echo config-unreadable; "
                    "echo about to fail; exit 3")
    job = wait(job_id, lambda j: j["status"] in FINAL)
    assert job["status"] == "FAILED" and job["exit_code"] == 3, job
    run = MlflowClient().get_run(job["run_id"])
    assert run.info.status == "FAILED" and run.data.tags["mlops.exit_code"] == "3"
    log = artifact_text(job["run_id"], "logs/job.log")
    # A user systemd made for this job (DynamicUser: 61184-65519), not root.
    uid = int(re.search(r"^uid=(\d+)$", log, re.M).group(1))
    assert 61184 <= uid <= 65519, log
    assert "config-unreadable" in log and "about to fail" in log
    assert '"password"' not in log


def test_a_private_repository_runs_and_its_token_shows_nowhere(private_commit, mlflow_env):
    job_id = cli("submit", "--repo", PRIVATE_REPO, "--commit", private_commit, "--",
                 "sh", "-c", "env; cat .git/config .git/FETCH_HEAD; echo fetched-$(cat README)")["id"]
    job = wait(job_id, lambda j: j["status"] in FINAL, timeout=300)
    assert job["status"] == "SUCCEEDED", job
    log = artifact_text(job["run_id"], "logs/job.log")
    assert "fetched-private" in log
    basic = base64.b64encode(("deploy:" + GIT_TOKEN).encode()).decode()
    queue = podman_exec(AIO, "runuser", "-u", "postgres", "--", "pg_dump", "--data-only", "mlops_jobs").stdout
    journals = [podman_exec(name, "journalctl", "--no-pager", "-u", "mlops-runner").stdout for name in RUNNERS]
    for text in [log, json.dumps(cli("show", str(job_id))), json.dumps(cli("list")), queue] + journals:
        assert GIT_TOKEN not in text and basic not in text
    # The job API itself refuses a URL carrying a token, and does not repeat it.
    refused = requests.post(mlflow_env["MLFLOW_TRACKING_URI"] + "/api/mlops/jobs", timeout=30,
                            auth=(mlflow_env["MLFLOW_TRACKING_USERNAME"], mlflow_env["MLFLOW_TRACKING_PASSWORD"]),
                            verify=mlflow_env["MLFLOW_TRACKING_SERVER_CERT_PATH"],
                            json={"repository": "https://deploy:%s@git.example/m.git" % GIT_TOKEN,
                                  "commit": private_commit, "command": "true"})
    assert refused.status_code == 400 and "credentials in it is refused" in refused.text, refused.text
    assert GIT_TOKEN not in refused.text


# What the second of two jobs on one runner tries against the first (whose id and
# marker it is given) and against the runner; each line says which way it went. (The
# pattern [1]234 keeps pgrep from finding this script's own command line.)
PROBE = """echo uid=$(id -u)
echo user=$MLFLOW_TRACKING_USERNAME
echo processes=$(ls -d /proc/[0-9]* | wc -l)
pgrep -f 'sleep [1]234' >/dev/null && echo saw-the-other-job || echo no-other-job
grep -l {marker} /proc/[0-9]*/environ 2>/dev/null | grep -q . && echo read-its-env || echo no-other-env
cat /var/lib/mlops-jobs/{other}/outputs/secret.txt 2>/dev/null || echo its-outputs-unreadable
cat /var/lib/private/mlops-jobs/{other}/outputs/secret.txt 2>/dev/null || echo its-private-dir-unreadable
ls /var/lib/mlops-runner/jobs/{other} 2>/dev/null | grep -q . && echo saw-its-work-dir || echo its-work-dir-hidden
cat /etc/mlops-runner/config.json 2>/dev/null || echo config-unreadable
ls /tmp /dev/shm | grep -q other-job-file && echo saw-its-tmp || echo its-tmp-private
"""


def test_two_jobs_of_two_tenants_on_one_runner_cannot_reach_each_other_nor_the_runner(commit, monkeypatch):
    # Both need a GPU: only runner-1 has two (and serves team-a and team-b), so they run
    # side by side there: team-a's first, then team-b's, which probes it.
    first = submit(commit, "--gpus", "1", "--env", "MARK=marker-of-job-one", "--", "sh", "-c",
                   "echo uid=$(id -u); echo the-secret > $MLOPS_OUTPUT_DIR/secret.txt; "
                   "echo $MLFLOW_TRACKING_USERNAME:$MLFLOW_TRACKING_PASSWORD > $MLOPS_OUTPUT_DIR/credential.txt; "
                   "touch /tmp/other-job-file /dev/shm/other-job-file; sleep 1234")
    job = wait(first, lambda j: j["status"] == "RUNNING")
    assert job["runner"] == "runner-1"
    team_b = tracking_env("team-b", "bob")
    second = jobs_cli("submit", "--repo", "file://" + REPO, "--commit", commit, "--gpus", "1", "--", "sh", "-c",
                      PROBE.format(marker="marker-of-job-one", other=first), **WORKSTATION, **team_b)["id"]
    probed = wait_for_job(second, lambda j: j["status"] in FINAL, 300, 1.0, **WORKSTATION, **team_b)
    assert probed["status"] == "SUCCEEDED" and probed["runner"] == "runner-1", probed
    cli("cancel", str(first))
    ended = wait(first, lambda j: j["status"] in FINAL, timeout=30)
    with monkeypatch.context() as tenant:
        for name, value in team_b.items():
            tenant.setenv(name, value)
        log = artifact_text(probed["run_id"], "logs/job.log")
    # Neither tenant sees the other's job.
    assert first not in [j["id"] for j in jobs_cli("list", **WORKSTATION, **team_b)["jobs"]]
    assert second not in [j["id"] for j in cli("list")["jobs"]]
    for line in ("no-other-job", "no-other-env", "its-outputs-unreadable", "its-private-dir-unreadable",
                 "its-work-dir-hidden", "config-unreadable", "its-tmp-private"):
        assert line + "\n" in log, log
    # Its own processes only: the shell and what it runs.
    assert int(re.search(r"^processes=(\d+)$", log, re.M).group(1)) < 10, log
    uids = {re.search(r"^uid=(\d+)$", text, re.M).group(1)
            for text in (artifact_text(ended["run_id"], "logs/job.log"), log)}
    assert len(uids) == 2, uids
    # The first job's outputs reached its own run.
    assert artifact_text(ended["run_id"], "outputs/secret.txt") == "the-secret\n"
    # Each job logged with a credential of its own (user job-<id>), never the runner's.
    assert "user=job-%d\n" % second in log, log
    user, secret = artifact_text(ended["run_id"], "outputs/credential.txt").strip().split(":", 1)
    assert user == "job-%d" % first and len(secret) >= 32
    assert_refused_soon(user, secret)


def gateway_status(user, secret):
    url = os.environ["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow/experiments/search?max_results=1"
    return requests.get(url, auth=(user, secret), verify=os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"],
                        timeout=30).status_code


def assert_refused_soon(user, secret, seconds=15):
    """The job API remembers an accepted credential 5 s: refused within seconds of the end."""
    deadline = time.monotonic() + seconds
    while gateway_status(user, secret) != 401:
        assert time.monotonic() < deadline, "%s still accepted %d s after its job ended" % (user, seconds)
        time.sleep(1)


def test_a_jobs_credential_works_while_it_runs_and_not_after(commit):
    job_id = submit(commit, "--", "sh", "-c", "echo $MLFLOW_TRACKING_USERNAME:$MLFLOW_TRACKING_PASSWORD "
                    "> $MLOPS_OUTPUT_DIR/credential.txt; sleep 1234")
    job = wait(job_id, lambda j: j["status"] == "RUNNING")
    # Read from the job's directory on its runner while it runs (as an operator could).
    written = podman_exec(job["runner"], "sh", "-c", "until test -s /var/lib/private/mlops-jobs/%d/outputs/"
                          "credential.txt; do sleep 0.5; done; cat /var/lib/private/mlops-jobs/%d/outputs/"
                          "credential.txt" % (job_id, job_id), timeout=60).stdout
    user, secret = written.strip().split(":", 1)
    assert user == "job-%d" % job_id
    assert gateway_status(user, secret) == 200
    assert gateway_status(user, secret + "x") == 401
    # Another service's credential check refuses it: jobs/tests/test_api.py.
    cli("cancel", str(job_id))
    wait(job_id, lambda j: j["status"] in FINAL, timeout=30)
    assert_refused_soon(user, secret)


def test_a_link_in_a_jobs_outputs_uploads_nothing_it_points_at(commit):
    job_id = submit(commit, "--", "sh", "-c", "ln -s /etc/mlops-runner/config.json $MLOPS_OUTPUT_DIR/config.json; "
                    "ln -s /etc/hostname $MLOPS_OUTPUT_DIR/hostname; echo kept > $MLOPS_OUTPUT_DIR/kept.txt")
    job = wait(job_id, lambda j: j["status"] in FINAL)
    assert job["status"] == "SUCCEEDED", job
    listed = {a.path for a in MlflowClient().list_artifacts(job["run_id"], "outputs")}
    assert listed == {"outputs/kept.txt"}, listed


def test_cancelling_a_running_job_kills_it_within_10_s(commit):
    job_id = submit(commit, "--", "sh", "-c", "echo started; sleep 300 & sleep 300")
    job = wait(job_id, lambda j: j["status"] == "RUNNING")
    cancelled_at = time.monotonic()
    cli("cancel", str(job_id))
    job = wait(job_id, lambda j: j["status"] in FINAL, timeout=30, interval=0.5)
    assert job["status"] == "CANCELLED" and time.monotonic() - cancelled_at <= 10, job
    assert MlflowClient().get_run(job["run_id"]).info.status == "KILLED"
    state = podman_exec(job["runner"], "systemctl", "show", "mlops-job-%d" % job_id, "-p", "ActiveState",
                        "--value").stdout
    assert state.strip() in ("inactive", "")
    assert podman_exec(job["runner"], "pgrep", "-f", "sleep 300", check=False).returncode == 1


def test_a_two_gpu_job_sees_exactly_its_devices_and_a_one_gpu_job_waits(commit):
    first = submit(commit, "--gpus", "2", "--", "sh", "-c",
                   "echo devices=$CUDA_VISIBLE_DEVICES nvidia=$NVIDIA_VISIBLE_DEVICES; sleep 20")
    job = wait(first, lambda j: j["status"] == "RUNNING")
    assert job["runner"] == "runner-1" and set(job["gpu_ids"]) == GPU_IDS
    second = submit(commit, "--gpus", "1", "--", "sh", "-c", "echo devices=$CUDA_VISIBLE_DEVICES")
    # The second waits while the first holds both GPUs: its status read before the
    # first's, so a first still RUNNING means it held them when the second was read. On a
    # busy CI machine one `mlops-job show` can take seconds: the checks end when the
    # first does, and at least one must have been made.
    checked = 0
    for _second in range(8):
        waiting = cli("show", str(second))["status"]
        if cli("show", str(first))["status"] != "RUNNING":
            break
        assert waiting == "QUEUED"
        checked += 1
        time.sleep(1)
    assert checked > 0, "the first job ended before the second could be seen waiting"
    job = wait(first, lambda j: j["status"] in FINAL)
    assert job["status"] == "SUCCEEDED"
    devices = artifact_text(job["run_id"], "logs/job.log").split("devices=", 1)[1].split()[0]
    assert set(devices.split(",")) == GPU_IDS
    later = wait(second, lambda j: j["status"] in FINAL)
    assert later["status"] == "SUCCEEDED" and later["runner"] == "runner-1" and len(later["gpu_ids"]) == 1
    assert "devices=%s\n" % later["gpu_ids"][0] in artifact_text(later["run_id"], "logs/job.log")


def agent_restarts():
    """How often systemd restarted runner-1's agent, and whether it runs now."""
    values = unit_properties(host("runner-1"), "mlops-runner", "NRestarts", "ActiveState")
    return int(values["NRestarts"]), values["ActiveState"] == "active"


def agent_restarted_since(restarts):
    now, active = agent_restarts()
    return active and now > restarts


def test_killing_the_agent_mid_job_ends_it_lost_with_its_log_so_far(commit, fault_figures):
    job_id = submit(commit, "--gpus", "1", "--", "sh", "-c", "echo step-1-done; sleep 600")
    job = wait(job_id, lambda j: j["status"] == "RUNNING")
    deadline = time.monotonic() + 60
    while True:
        try:
            if "step-1-done" in artifact_text(job["run_id"], "logs/job.log"):
                break
        except Exception:  # pylint: disable=broad-exception-caught
            pass
        assert time.monotonic() < deadline, "the log was never uploaded while the job ran"
        time.sleep(1)
    restarts, _active = agent_restarts()
    killed = time.monotonic()
    podman_exec("runner-1", "systemctl", "kill", "--signal", "SIGKILL", "mlops-runner")
    # Back by itself (its restart policy), claiming jobs again; how soon is printed (its
    # stop waits for the killed job's unit, bound to it, to stop).
    assert wait_for(lambda: agent_restarted_since(restarts), timeout=60, interval=0.25)
    fault_figures.append("kill -9 %-28s running again after %5.1f s"
                         % ("runner agent (mlops-runner)", time.monotonic() - killed))
    job = wait(job_id, lambda j: j["status"] in FINAL, timeout=90)
    assert job["status"] == "LOST", job
    run = MlflowClient().get_run(job["run_id"])
    assert run.info.status == "FAILED" and run.data.tags["mlops.job_status"] == "LOST"
    assert "step-1-done" in artifact_text(job["run_id"], "logs/job.log")
    assert podman_exec("runner-1", "pgrep", "-f", "sleep 600", check=False).returncode == 1
    assert host("runner-1").service("mlops-runner").is_running


def test_a_hung_agent_is_killed_by_its_watchdog_and_runs_again(fault_figures):
    # Frozen (SIGSTOP): alive to systemd, deaf to the queue, and no request a health
    # check could ask. Its loop stops pinging; after runner_watchdog_seconds (30 here,
    # molecule.yml) systemd kills it and its restart policy starts it again.
    restarts, _active = agent_restarts()
    frozen = time.monotonic()
    podman_exec("runner-1", "systemctl", "kill", "--signal", "SIGSTOP", "mlops-runner")
    try:
        assert wait_for(lambda: agent_restarted_since(restarts), timeout=120, interval=0.5), \
            "the frozen agent was not restarted within 120 s"
    finally:
        podman_exec("runner-1", "systemctl", "kill", "--signal", "SIGCONT", "mlops-runner", check=False)
    fault_figures.append("SIGSTOP %-28s running again after %5.1f s (watchdog 30 s)"
                         % ("runner agent (mlops-runner)", time.monotonic() - frozen))
    journal = podman_exec("runner-1", "journalctl", "-u", "mlops-runner", "--no-pager", "-n", "50").stdout
    assert "watchdog" in journal.lower(), journal[-2000:]


def test_the_gateway_follows_the_job_apis_port():
    """jobs_api_port is 5090 in molecule.yml: the API listens there and the gateway,
    which reads the port from the inventory (no runtime fact of the mlflow role), sends
    every /api/mlops/jobs request there; the jobs above went that way."""
    platform = host(AIO)
    assert platform.socket("tcp://127.0.0.1:5090").is_listening
    assert "server 127.0.0.1:5090;" in platform.file("/etc/nginx/conf.d/mlops.conf").content_string


def test_the_runner_playbook_alone_changes_nothing():
    """playbooks/runner.yml runs no gateway task: the services' URLs come from the model."""
    rc, output = run_playbook("mlops.platform.runner", None, "-vvv")
    assert rc == 0, output[-3000:]
    assert GIT_TOKEN not in output
    assert re.findall(r"^PLAY \[(.*?)\]", output, re.M) == ["Training runners"], output[-3000:]
    assert "mlops.platform.gateway" not in output
    changed = recap_changed(output)
    assert changed and set(changed) == {0}, output[-3000:]
