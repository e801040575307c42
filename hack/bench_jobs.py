"""`make bench-jobs`: the job queue and runner agent on this machine.

Starts what the jobs tests start (a throwaway PostgreSQL on a Unix socket, an MLflow
server on loopback, a git repository on disk) and one agent with 2 GPU slots and the
`local` executor (this machine has no systemd), then measures:

- submit-to-RUNNING latency on an idle runner: N jobs one after another, each the
  time from the job's insert to its command's start as the database recorded them, with
  the share spent before the claim (the wake-up) and in staging (run, checkout, env);
- slot utilization: 20 jobs of BENCH_JOB_SECONDS each, 1 GPU each, on the 2 slots:
  busy slot-seconds / (2 x the span from first start to last end). The peer is the
  ideal schedule of the same jobs (no overhead between them), measured as a ratio.

  BENCH_JOB_SECONDS=5 BENCH_LATENCY_JOBS=20 python hack/bench_jobs.py

With --deployed, the same figures of a deployed platform, through its gateway and job
API as a data scientist reaches it (MLFLOW_TRACKING_URI, _USERNAME, _PASSWORD and
_SERVER_CERT_PATH as for mlops-job): BENCH_REPO and BENCH_COMMIT name a repository the
runners can fetch; BENCH_GPUS (default 1) jobs of 1 GPU go to runners with GPU ids, so
the slots are those of the runners that have them (BENCH_SLOTS, default 2).
"""

import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", "jobs", "src"), os.path.join(HERE, "..", "jobs", "tests")]

import servers  # noqa: E402  pylint: disable=wrong-import-position
from mlops_jobs import cli  # noqa: E402  pylint: disable=wrong-import-position
from mlops_jobs.agent import Agent  # noqa: E402  pylint: disable=wrong-import-position
from mlops_jobs.executors import LocalExecutor  # noqa: E402  pylint: disable=wrong-import-position
from mlops_jobs.queue import Queue  # noqa: E402  pylint: disable=wrong-import-position

JOB_SECONDS = float(os.environ.get("BENCH_JOB_SECONDS", "5"))
LATENCY_JOBS = int(os.environ.get("BENCH_LATENCY_JOBS", "20"))
UTILIZATION_JOBS = 20
SLOTS = int(os.environ.get("BENCH_SLOTS", "2"))
FINAL = ("SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT", "LOST")


def repository(base):
    repo = os.path.join(base, "repo")
    git = ["git", "-C", repo, "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    subprocess.run(["git", "init", "-q", "-b", "main", repo], check=True)
    with open(os.path.join(repo, "work.py"), "w") as out:
        out.write("import os, time\ntime.sleep(float(os.environ.get('SECONDS_TO_WORK', '0')))\n")
    subprocess.run(git + ["add", "work.py"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "work"], check=True)
    head = subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    return "file://" + repo, head


class AgentThread(threading.Thread):
    def __init__(self, agent):
        super().__init__(daemon=True)
        self.agent = agent
        self.done = False

    def run(self):
        self.agent.register()
        self.agent.reconcile()
        self.agent.queue.listen()
        while not self.done:
            self.agent.step()
            self.agent.queue.wait(self.agent.pause())


class DeployedApi(object):
    """Queue.submit/get as the job API behind the gateway answers them."""

    def __init__(self):
        self.client = cli.Client(os.environ)

    def submit(self, _service, _user, spec):
        return self.client.call("POST", json=spec)

    def get(self, job_id, _service):
        row = self.client.call("GET", "/%d" % job_id)
        for key in ("created_at", "claimed_at", "started_at", "finished_at"):
            if row.get(key):
                row[key] = datetime.datetime.fromisoformat(row[key])
        return row


def wait_final(api, ids, timeout):
    deadline = time.monotonic() + timeout
    while True:
        rows = [api.get(job_id, "team-a") for job_id in ids]
        if all(r["status"] in FINAL for r in rows):
            return rows
        if time.monotonic() > deadline:
            raise SystemExit("jobs did not finish: %s" % [r["status"] for r in rows])
        time.sleep(0.1)


def percentile(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def measure(api, spec):
    """(latencies, wake, staging, utilization rows) of the jobs spec describes."""
    # One warm-up job: the cached environment, MLflow's first requests.
    wait_final(api, [api.submit("team-a", "bench", spec)["id"]], 600)
    latencies, wake, staging = [], [], []
    for _round in range(LATENCY_JOBS):
        row = wait_final(api, [api.submit("team-a", "bench", spec)["id"]], 120)[0]
        latencies.append((row["started_at"] - row["created_at"]).total_seconds())
        wake.append((row["claimed_at"] - row["created_at"]).total_seconds())
        staging.append((row["started_at"] - row["claimed_at"]).total_seconds())
    work = dict(spec, env={"SECONDS_TO_WORK": str(JOB_SECONDS)})
    ids = [api.submit("team-a", "bench", work)["id"] for _job in range(UTILIZATION_JOBS)]
    return latencies, wake, staging, wait_final(api, ids, UTILIZATION_JOBS * JOB_SECONDS * 3 + 300)


def local():
    base = tempfile.mkdtemp(prefix="mlops-bench-jobs-")
    url, head = repository(base)
    spec = {"repository": url, "commit": head, "command": "%s work.py" % sys.executable, "gpus": 1}
    with servers.postgres() as server, servers.mlflow_server(base) as mlflow_uri:
        database = servers.queue_database(server)
        config = {"name": "bench", "database": database["runner"], "work_dir": os.path.join(base, "runner"),
                  "gpu_ids": ["GPU-bench-0", "GPU-bench-1"], "cpus": 8, "memory_mb": 16384, "min_free_disk_mb": 1,
                  "lease_seconds": 30, "poll_seconds": 5, "log_upload_seconds": 30,
                  "services": {"team-a": {"uri": mlflow_uri}}}
        agent = AgentThread(Agent(config, executor=LocalExecutor(os.path.join(base, "cache"))))
        agent.start()
        api = Queue(database["api"])
        figures = measure(api, spec)
        agent.done = True
        agent.join(30)
        api.close()
    return figures, "Executor local (child processes), one agent, PostgreSQL and MLflow on this machine"


def deployed():
    spec = {"repository": os.environ["BENCH_REPO"], "commit": os.environ["BENCH_COMMIT"],
            "command": "sleep ${SECONDS_TO_WORK:-0}", "gpus": int(os.environ.get("BENCH_GPUS", "1"))}
    return measure(DeployedApi(), spec), "Deployed runners behind %s" % os.environ["MLFLOW_TRACKING_URI"]


def main():
    (latencies, wake, staging, rows), setting = deployed() if "--deployed" in sys.argv[1:] else local()

    busy = sum((r["finished_at"] - r["started_at"]).total_seconds() for r in rows)
    span = (max(r["finished_at"] for r in rows) - min(r["started_at"] for r in rows)).total_seconds()
    utilization = busy / (SLOTS * span)
    ideal_span = busy / SLOTS
    failed = [r["id"] for r in rows if r["status"] != "SUCCEEDED"]
    print("| figure | value | target |")
    print("| --- | --- | --- |")
    print("| submit-to-RUNNING p50 (s), %d jobs on an idle runner | %.3f | <= 1 |" % (
        LATENCY_JOBS, statistics.median(latencies)))
    print("| submit-to-RUNNING p95 (s) | %.3f | |" % percentile(latencies, 0.95))
    print("| of which submit-to-claim p50 (s) | %.3f | |" % statistics.median(wake))
    print("| of which claim-to-RUNNING (staging) p50 (s) | %.3f | |" % statistics.median(staging))
    print("| slot utilization, %d jobs of %.0f s on %d slots | %.1f %% | >= 95 %% |" % (
        UTILIZATION_JOBS, JOB_SECONDS, SLOTS, 100 * utilization))
    print("| span, ours / ideal schedule (peer: no time between jobs) | %.3f (%.1f s / %.1f s) | |" % (
        span / ideal_span, span, ideal_span))
    print()
    outcome = "every job SUCCEEDED" if not failed else "NOT SUCCEEDED: jobs %s" % failed
    print("%s; %s." % (setting, outcome))


if __name__ == "__main__":
    main()
