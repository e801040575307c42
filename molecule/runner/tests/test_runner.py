"""Verify the runners as a data scientist meets them: jobs submitted with the mlops-job
CLI through the gateway (basic auth of team-a), run on runner-1 (2 configured GPU ids)
or runner-2 (CPU only), and reported on their MLflow runs; plus what an operator sees
on the runner hosts."""

import json
import re
import tempfile
import time

import mlflow
import numpy
import pytest
from mlflow.tracking import MlflowClient

from mlops_testing import JOB_FINAL as FINAL
from mlops_testing import commit_repository, host, jobs_cli, podman_exec, recap_changed, run_playbook, wait_for_job

# Every test as a data scientist: MLflow's client (here and in the CLI) reaches team-a
# through the gateway as alice.
pytestmark = pytest.mark.usefixtures("mlflow_env")
AIO = "mlops-platform"
RUNNERS = ("runner-1", "runner-2")
GPU_IDS = {"GPU-00000000-0000-0000-0000-0000000000a0", "GPU-00000000-0000-0000-0000-0000000000a1"}
REPO = "/srv/git/model"
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


def test_every_runner_runs_its_agent_with_private_configuration():
    for name in RUNNERS:
        node = host(name)
        agent = node.service("mlops-runner")
        assert agent.is_running and agent.is_enabled
        config = node.file("/etc/mlops-runner/config.json")
        assert config.user == "root" and config.mode == 0o600
        checked = json.loads(podman_exec(name, "/opt/mlops-runner/venv/bin/mlops-runner", "--check").stdout)
        assert checked["ok"] and checked["checked"] == {"database": "ok", "team-a": "ok"}
        # No package index was needed: the agent came from the controller's wheels.
        assert node.file("/opt/mlops-runner/venv/bin/mlops-runner").exists


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
                    "id -un; cat /etc/mlops-runner/config.json || echo config-unreadable; echo about to fail; exit 3")
    job = wait(job_id, lambda j: j["status"] in FINAL)
    assert job["status"] == "FAILED" and job["exit_code"] == 3, job
    run = MlflowClient().get_run(job["run_id"])
    assert run.info.status == "FAILED" and run.data.tags["mlops.exit_code"] == "3"
    log = artifact_text(job["run_id"], "logs/job.log")
    assert "mlops-job\n" in log and "config-unreadable" in log and "about to fail" in log
    assert '"password"' not in log


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
    assert podman_exec(job["runner"], "pgrep", "-u", "mlops-job", "sleep", check=False).returncode == 1


def test_a_two_gpu_job_sees_exactly_its_devices_and_a_one_gpu_job_waits(commit):
    first = submit(commit, "--gpus", "2", "--", "sh", "-c",
                   "echo devices=$CUDA_VISIBLE_DEVICES nvidia=$NVIDIA_VISIBLE_DEVICES; sleep 20")
    job = wait(first, lambda j: j["status"] == "RUNNING")
    assert job["runner"] == "runner-1" and set(job["gpu_ids"]) == GPU_IDS
    second = submit(commit, "--gpus", "1", "--", "sh", "-c", "echo devices=$CUDA_VISIBLE_DEVICES")
    for _second in range(8):
        assert cli("show", str(second))["status"] == "QUEUED"
        time.sleep(1)
    assert cli("show", str(first))["status"] == "RUNNING"
    job = wait(first, lambda j: j["status"] in FINAL)
    assert job["status"] == "SUCCEEDED"
    devices = artifact_text(job["run_id"], "logs/job.log").split("devices=", 1)[1].split()[0]
    assert set(devices.split(",")) == GPU_IDS
    later = wait(second, lambda j: j["status"] in FINAL)
    assert later["status"] == "SUCCEEDED" and later["runner"] == "runner-1" and len(later["gpu_ids"]) == 1
    assert "devices=%s\n" % later["gpu_ids"][0] in artifact_text(later["run_id"], "logs/job.log")


def test_killing_the_agent_mid_job_ends_it_lost_with_its_log_so_far(commit):
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
    podman_exec("runner-1", "systemctl", "kill", "--signal", "SIGKILL", "mlops-runner")
    job = wait(job_id, lambda j: j["status"] in FINAL, timeout=90)
    assert job["status"] == "LOST", job
    run = MlflowClient().get_run(job["run_id"])
    assert run.info.status == "FAILED" and run.data.tags["mlops.job_status"] == "LOST"
    assert "step-1-done" in artifact_text(job["run_id"], "logs/job.log")
    assert podman_exec("runner-1", "pgrep", "-u", "mlops-job", "sleep", check=False).returncode == 1
    assert host("runner-1").service("mlops-runner").is_running


def test_the_gateway_follows_the_job_apis_port():
    """jobs_api_port is 5090 in molecule.yml: the API listens there and the gateway,
    which reads the port from the inventory (no runtime fact of the mlflow role), sends
    every /api/mlops/jobs request there; the jobs above went that way."""
    platform = host(AIO)
    assert platform.socket("tcp://127.0.0.1:5090").is_listening
    assert "server 127.0.0.1:5090;" in platform.file("/etc/nginx/conf.d/mlops.conf").content_string


def test_the_runner_playbook_alone_changes_nothing():
    """playbooks/runner.yml runs no gateway task: the services' URLs come from the model."""
    rc, output = run_playbook("mlops.platform.runner")
    assert rc == 0, output[-3000:]
    assert re.findall(r"^PLAY \[(.*?)\]", output, re.M) == ["Training runners"], output[-3000:]
    assert "mlops.platform.gateway" not in output
    changed = recap_changed(output)
    assert changed and set(changed) == {0}, output[-3000:]
