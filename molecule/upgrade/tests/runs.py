"""Runs on the test host with a tracking service's own python (its venv link):
  runs.py log URL      logs three runs (params, a metric history, tags, two artifacts)
  runs.py snapshot URL prints every run of every experiment with its data and the sha256
                       of every artifact, as one JSON line
so that what an older MLflow wrote can be compared with what a newer one reads."""

import hashlib
import json
import os
import sys
import tempfile

import mlflow
from mlflow.tracking import MlflowClient


def log(client):
    experiment = client.create_experiment("upgrade-%s" % os.urandom(4).hex())
    for index in range(3):
        run = client.create_run(experiment, tags={"purpose": "upgrade", "index": str(index)})
        client.log_param(run.info.run_id, "learning_rate", str(0.1 * (index + 1)))
        client.log_param(run.info.run_id, "layers", str(index + 2))
        for step in range(5):
            client.log_metric(run.info.run_id, "loss", 1.0 / (step + index + 1), step=step)
        with tempfile.TemporaryDirectory() as scratch:
            notes = os.path.join(scratch, "notes.txt")
            with open(notes, "w") as handle:
                handle.write("run %d of the upgrade test\n" % index)
            weights = os.path.join(scratch, "weights.bin")
            with open(weights, "wb") as handle:
                handle.write(os.urandom(1024 * 1024 + index))
            client.log_artifact(run.info.run_id, notes)
            client.log_artifact(run.info.run_id, weights, artifact_path="model")
        client.set_terminated(run.info.run_id)
    print(json.dumps({"experiment": experiment}))


def artifacts(client, run_id, path=None):
    found = {}
    for entry in client.list_artifacts(run_id, path):
        if entry.is_dir:
            found.update(artifacts(client, run_id, entry.path))
            continue
        with tempfile.TemporaryDirectory() as scratch:
            local = client.download_artifacts(run_id, entry.path, scratch)
            with open(local, "rb") as handle:
                found[entry.path] = hashlib.sha256(handle.read()).hexdigest()
    return found


def snapshot(client):
    runs = {}
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id], max_results=1000):
            run_id = run.info.run_id
            runs[run_id] = {
                "experiment": experiment.name,
                "experiment_id": experiment.experiment_id,
                "status": run.info.status,
                "params": run.data.params,
                "tags": {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")},
                "loss": [(m.step, m.value) for m in client.get_metric_history(run_id, "loss")],
                "artifacts": artifacts(client, run_id),
            }
    print(json.dumps({"version": mlflow.__version__, "runs": runs}, sort_keys=True))


if __name__ == "__main__":
    mlflow.set_tracking_uri(sys.argv[2])
    {"log": log, "snapshot": snapshot}[sys.argv[1]](MlflowClient())
