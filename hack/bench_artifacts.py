"""Artifact throughput of one tracking service, measured on its host with the MLflow
environment's Python, over three paths to the same bucket in the same run:
  gateway  the standard MLflow client through the gateway (TLS, basic auth), as users do
  mlflow   the same HTTP calls straight to the service's MLflow port (no nginx, no TLS)
  s3       boto3 straight to the artifact store with the service's own keys (MLflow's
           S3 artifact repository does the same): the peer the gateway is measured against
  bench_artifacts.py SERVICE MEGABYTES ROUNDS --gateway URL --user U --cafile CA
(password: BENCH_PASSWORD). Each round uploads then downloads one file of MEGABYTES on
every path, the order of the paths rotating from round to round; one JSON line per
transfer: {"round", "path", "direction", "mb_per_s"}."""

import argparse
import json
import os
import pathlib
import tempfile
import time

import boto3
import requests
from botocore.config import Config
from mlflow.tracking import MlflowClient

CHUNK = 1024 * 1024


def service_env(service):
    """The service's environment file as a dict (root-only: run as root)."""
    values = {}
    for line in pathlib.Path("/etc/mlflow/services/%s.env" % service).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            values[key] = value.strip().strip('"')
    return values


def timed(transfer, megabytes):
    started = time.monotonic()
    transfer()
    return megabytes / (time.monotonic() - started)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("service")
    parser.add_argument("megabytes", type=int)
    parser.add_argument("rounds", type=int)
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--cafile", required=True)
    args = parser.parse_args()
    env = service_env(args.service)
    os.environ.update(MLFLOW_TRACKING_URI=args.gateway, MLFLOW_TRACKING_USERNAME=args.user,
                      MLFLOW_TRACKING_PASSWORD=os.environ["BENCH_PASSWORD"],
                      MLFLOW_TRACKING_SERVER_CERT_PATH=args.cafile)
    client = MlflowClient()
    experiment_id = client.create_experiment("bench-artifacts-%d" % time.time_ns())
    run_id = client.create_run(experiment_id).info.run_id
    # The run's artifacts as MLflow's proxy serves them, and where they land in the bucket.
    proxy = "http://%s:%s/api/2.0/mlflow-artifacts/artifacts/%s/%s/artifacts" % (
        env["MLFLOW_HOST"], env["MLFLOW_PORT"], experiment_id, run_id)
    host_header = env.get("MLFLOW_SERVER_ALLOWED_HOSTS", "").split(",")[0] or None
    bucket, _slash, prefix = env["MLFLOW_ARTIFACTS_DESTINATION"][len("s3://"):].partition("/")
    s3 = boto3.client("s3", endpoint_url=env["MLFLOW_S3_ENDPOINT_URL"], aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                      verify=env.get("AWS_CA_BUNDLE") or True,
                      config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    session = requests.Session()
    if host_header:
        session.headers["Host"] = host_header

    with tempfile.TemporaryDirectory() as work:
        source = pathlib.Path(work) / "artifact.bin"
        with source.open("wb") as out:
            for _megabyte in range(args.megabytes):
                out.write(os.urandom(CHUNK))
        received = pathlib.Path(work) / "received"

        def gateway(number, direction):
            if direction == "upload":
                client.log_artifact(run_id, str(source), "gateway-%d" % number)
            else:
                client.download_artifacts(run_id, "gateway-%d/artifact.bin" % number, str(received))

        def mlflow(number, direction):
            url = "%s/mlflow-%d/artifact.bin" % (proxy, number)
            if direction == "upload":
                with source.open("rb") as body:
                    session.put(url, data=body, timeout=600).raise_for_status()
            else:
                with session.get(url, stream=True, timeout=600) as answer, open(received / "m.bin", "wb") as out:
                    answer.raise_for_status()
                    for chunk in answer.iter_content(CHUNK):
                        out.write(chunk)

        def direct(number, direction):
            key = "%s/bench-artifacts/s3-%d/artifact.bin" % (prefix, number) if prefix else \
                "bench-artifacts/s3-%d/artifact.bin" % number
            if direction == "upload":
                s3.upload_file(str(source), bucket, key)
            else:
                s3.download_file(bucket, key, str(received / "s.bin"))

        received.mkdir()
        paths = [("gateway", gateway), ("mlflow", mlflow), ("s3", direct)]
        for number in range(args.rounds):
            order = paths[number % 3:] + paths[:number % 3]
            for direction in ("upload", "download"):
                for name, transfer in order:
                    rate = timed(lambda: transfer(number, direction), args.megabytes)
                    print(json.dumps({"round": number, "path": name, "direction": direction,
                                      "mb_per_s": round(rate, 1)}), flush=True)
                    for leftover in received.rglob("*"):
                        if leftover.is_file():
                            leftover.unlink()
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [
            {"Key": "%s/bench-artifacts/s3-%d/artifact.bin" % (prefix, n) if prefix else
             "bench-artifacts/s3-%d/artifact.bin" % n} for n in range(args.rounds)]})
    client.delete_experiment(experiment_id)


if __name__ == "__main__":
    main()
