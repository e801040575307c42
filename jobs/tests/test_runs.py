"""How a job's end and environment are derived (pure logic)."""

import pytest

from mlops_jobs.executors import CheckoutExecutor, ProcessExecutor
from mlops_jobs.queue import FINAL
from mlops_jobs.runs import RUN_STATUS, job_environment, outcome, run_end

TRACKING = {"uri": "https://mlflow.example.com:8443", "username": "runner-gpu-1", "password": "s3cret",
            "cert_path": "/etc/mlops-runner/ca.crt"}


def test_the_command_logs_into_its_run_and_sees_only_its_devices():
    job = {"id": 7, "env": {"EPOCHS": "3"}}
    paths = CheckoutExecutor.paths(7, "/var/lib/mlops-runner/jobs/7")
    env = job_environment(job, TRACKING, "abc123", paths, ["GPU-a", "GPU-b"])
    assert env["MLFLOW_RUN_ID"] == "abc123" and env["MLFLOW_TRACKING_URI"] == TRACKING["uri"]
    assert env["MLFLOW_TRACKING_USERNAME"] == "runner-gpu-1" and env["MLFLOW_TRACKING_PASSWORD"] == "s3cret"
    assert env["CUDA_VISIBLE_DEVICES"] == "GPU-a,GPU-b" and env["NVIDIA_VISIBLE_DEVICES"] == "GPU-a,GPU-b"
    assert env["MLOPS_OUTPUT_DIR"] == "/var/lib/mlops-runner/jobs/7/outputs" and env["EPOCHS"] == "3"
    assert "HOME" not in env


def test_a_process_job_writes_in_its_own_directory_and_reads_its_inputs_from_the_runners():
    executor = ProcessExecutor("/var/lib/mlops-runner/cache")
    paths = executor.paths(7, "/var/lib/mlops-runner/jobs/7")
    env = job_environment({"id": 7, "env": {}}, TRACKING, "r", paths, [])
    assert env["MLOPS_OUTPUT_DIR"] == "/var/lib/mlops-jobs/7/outputs" and env["HOME"] == "/var/lib/mlops-jobs/7/home"
    assert env["MLOPS_INPUT_DIR"] == "/var/lib/mlops-runner/jobs/7/inputs"
    # The agent collects the outputs from the private directory systemd hands the job.
    assert paths["collect"] == "/var/lib/private/mlops-jobs/7/outputs"
    assert executor.work_dir == "/var/lib/mlops-runner"


def test_a_cpu_job_sees_no_gpu():
    env = job_environment({"id": 1, "env": {}}, {"uri": "http://127.0.0.1:5001"}, "r", CheckoutExecutor.paths(1, "/w"),
                          [])
    assert env["CUDA_VISIBLE_DEVICES"] == "" and env["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert "MLFLOW_TRACKING_PASSWORD" not in env


def test_the_jobs_env_cannot_override_what_the_runner_sets():
    env = job_environment({"id": 1, "env": {"MLFLOW_RUN_ID": "other", "CUDA_VISIBLE_DEVICES": "0,1,2,3"}},
                          TRACKING, "mine", CheckoutExecutor.paths(1, "/w"), ["GPU-a"])
    assert env["MLFLOW_RUN_ID"] == "mine" and env["CUDA_VISIBLE_DEVICES"] == "GPU-a"


@pytest.mark.parametrize("kwargs,status,reason", [
    (dict(exit_code=0), "SUCCEEDED", "exit code 0"),
    (dict(exit_code=3), "FAILED", "exit code 3"),
    (dict(exit_code=-9), "FAILED", "killed by signal 9"),
    (dict(exit_code=-15, cancelled=True), "CANCELLED", "cancelled on request"),
    (dict(exit_code=0, cancelled=True), "CANCELLED", "cancelled on request"),
    (dict(exit_code=-15, timed_out=True), "TIMED_OUT", "stopped when its timeout ran out"),
    (dict(exit_code=None), "LOST", "the runner did not see the command end"),
    (dict(exit_code=None, cancelled=True), "CANCELLED", "cancelled on request"),
    (dict(exit_code=0, lost=True), "LOST", "the runner did not see the command end"),
])
def test_outcome(kwargs, status, reason):
    assert outcome(**kwargs) == (status, reason)


def test_every_final_state_has_a_run_status_and_tags():
    assert set(RUN_STATUS) == set(FINAL)
    assert run_end("CANCELLED", -15, "cancelled on request", "gpu-1") == (
        "KILLED", {"mlops.job_status": "CANCELLED", "mlops.reason": "cancelled on request",
                   "mlops.runner": "gpu-1", "mlops.exit_code": "-15"})
    status, tags = run_end("LOST", None, "the runner did not see the command end", "gpu-1")
    assert status == "FAILED" and "mlops.exit_code" not in tags


@pytest.mark.parametrize("state,stopping,expected", [
    ({"LoadState": "loaded", "ActiveState": "active", "ExecMainCode": "0"}, False, None),
    ({"LoadState": "loaded", "ActiveState": "active", "ExecMainCode": "1", "ExecMainStatus": "3"}, True, 3),
    ({"LoadState": "loaded", "ActiveState": "failed", "ExecMainCode": "2", "ExecMainStatus": "9"}, False, -9),
    # Killed while the host shuts down: the platform lost the job, it did not fail.
    ({"LoadState": "loaded", "ActiveState": "deactivating", "ExecMainCode": "2", "ExecMainStatus": "15"}, True, "Gone"),
    ({"LoadState": "not-found", "ActiveState": "inactive"}, False, "Gone"),
])
def test_a_job_unit_reads_as_running_ended_or_lost(monkeypatch, state, stopping, expected):
    from mlops_jobs import executors
    executor = ProcessExecutor("/var/lib/mlops-runner/cache")
    monkeypatch.setattr(executor, "_show", lambda unit: state)
    monkeypatch.setattr(executors, "host_stopping", lambda: stopping)
    if expected == "Gone":
        with pytest.raises(executors.Gone):
            executor.poll("mlops-job-7.service")
    else:
        assert executor.poll("mlops-job-7.service") == expected
