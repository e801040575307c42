"""Log-metric load against one MLflow address, as the MLflow client sends it: one
POST per metric over a keep-alive session per client thread. Runs on the sandbox
host with the MLflow environment's Python (it has requests).
  bench_load.py URL CLIENTS SECONDS [--user U] [--cafile CA]   (password: BENCH_PASSWORD)
Prints one JSON line: requests per second, p50 and p95 latency in ms, errors."""

import argparse
import json
import os
import statistics
import threading
import time

import requests


def session(args):
    s = requests.Session()
    if args.user:
        s.auth = (args.user, os.environ["BENCH_PASSWORD"])
    s.verify = args.cafile or True
    s.headers["Content-Type"] = "application/json"
    return s


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("clients", type=int)
    parser.add_argument("seconds", type=float)
    parser.add_argument("--user")
    parser.add_argument("--cafile")
    args = parser.parse_args()
    api = args.url.rstrip("/") + "/api/2.0/mlflow"
    setup = session(args)
    name = "bench-%d" % time.time_ns()
    experiment = setup.post(api + "/experiments/create", json={"name": name}, timeout=30)
    experiment.raise_for_status()
    run = setup.post(api + "/runs/create", json={"experiment_id": experiment.json()["experiment_id"]}, timeout=30)
    run.raise_for_status()
    run_id = run.json()["run"]["info"]["run_id"]

    latencies, errors, lock = [], [0], threading.Lock()
    warmup_end = time.monotonic() + 2
    end = warmup_end + args.seconds

    def client(number):
        s = session(args)
        step = 0
        while True:
            started = time.monotonic()
            if started >= end:
                return
            body = {"run_id": run_id, "key": "m%d" % number, "value": step * 0.5,
                    "timestamp": int(time.time() * 1000), "step": step}
            ok = s.post(api + "/runs/log-metric", json=body, timeout=30).status_code == 200
            took = time.monotonic() - started
            step += 1
            if started >= warmup_end:
                with lock:
                    if ok:
                        latencies.append(took)
                    else:
                        errors[0] += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    print(json.dumps({
        "rps": round(len(latencies) / args.seconds, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "p95_ms": round(latencies[int(len(latencies) * 0.95) - 1] * 1000, 1) if latencies else None,
        "requests": len(latencies),
        "errors": errors[0],
    }))


if __name__ == "__main__":
    main()
