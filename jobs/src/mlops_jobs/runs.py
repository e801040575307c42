"""How a job meets its MLflow run: the environment its command gets, and how its end is
reported, in the queue and on the run."""

import contextlib
import os

JOB_TAG = "mlops.job_id"
EXIT_CODE_TAG = "mlops.exit_code"
REASON_TAG = "mlops.reason"
RUNNER_TAG = "mlops.runner"
STATUS_TAG = "mlops.job_status"
# The queue's final states as MLflow run statuses. MLflow has no state for a job that
# ran out of time or lost its runner: those runs are FAILED, and the tags say which.
TRACKING_ENV = {"username": "MLFLOW_TRACKING_USERNAME", "password": "MLFLOW_TRACKING_PASSWORD",
                "cert_path": "MLFLOW_TRACKING_SERVER_CERT_PATH"}
RUN_STATUS = {"SUCCEEDED": "FINISHED", "FAILED": "FAILED", "CANCELLED": "KILLED", "TIMED_OUT": "FAILED",
              "LOST": "FAILED"}


def job_environment(job, tracking, run_id, paths, gpu_ids):
    """The environment of a job's command.

    tracking: {uri, username, password, cert_path} of the job's tracking service as the
    runner reaches it. paths: the job's inputs, outputs and (optional) home directory as
    the job sees them (the executor's paths()). The job's own env comes first and cannot
    override what the runner sets (the queue refuses MLFLOW_* and the device variables at
    submit time as well).
    """
    env = dict(job.get("env") or {})
    env.update({
        "MLFLOW_TRACKING_URI": tracking["uri"],
        "MLFLOW_RUN_ID": run_id,
        "MLOPS_JOB_ID": str(job["id"]),
        "MLOPS_OUTPUT_DIR": paths["outputs"],
        "MLOPS_INPUT_DIR": paths["inputs"],
        # Device ids by UUID: stable whatever order the driver enumerates them in. An
        # empty list hides every GPU from CUDA and from the NVIDIA container runtime.
        "CUDA_VISIBLE_DEVICES": ",".join(gpu_ids),
        "NVIDIA_VISIBLE_DEVICES": ",".join(gpu_ids) if gpu_ids else "void",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
    })
    if paths.get("home"):
        env["HOME"] = paths["home"]
    for key, name in TRACKING_ENV.items():
        if tracking.get(key):
            env[name] = tracking[key]
    return env


def outcome(exit_code, cancelled=False, timed_out=False, lost=False):
    """(queue status, reason) of a job whose command ended with exit_code (None: unknown).

    The order matters: a job the runner stopped (cancel, timeout) is reported as stopped
    whatever its exit code, and one whose exit was not seen is never a success.
    """
    if lost:
        return "LOST", "the runner did not see the command end"
    if cancelled:
        return "CANCELLED", "cancelled on request"
    if timed_out:
        return "TIMED_OUT", "stopped when its timeout ran out"
    if exit_code is None:
        return "LOST", "the runner did not see the command end"
    if exit_code == 0:
        return "SUCCEEDED", "exit code 0"
    if exit_code < 0:
        return "FAILED", "killed by signal %d" % -exit_code
    return "FAILED", "exit code %d" % exit_code


def run_end(status, exit_code, reason, runner):
    """(MLflow run status, tags) that report a job's final status on its run."""
    tags = {STATUS_TAG: status, REASON_TAG: reason, RUNNER_TAG: runner}
    if exit_code is not None:
        tags[EXIT_CODE_TAG] = str(exit_code)
    return RUN_STATUS[status], tags


@contextlib.contextmanager
def mlflow_environment(values):
    """The MLFLOW_* variables of values in os.environ while the block runs (empty ones
    removed), the previous values back afterwards. MLflow's client reads the tracking
    credentials from the environment on every request; callers serving several
    tracking services hold a lock around this."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value:
                os.environ[name] = value
            else:
                os.environ.pop(name, None)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
