"""Real-GPU check of the runner's GPU code, on a machine with NVIDIA GPUs:
    make gpu-check      (PYTHONPATH=jobs/src python3 hack/gpu_check.py)

What the runner does with GPUs, against the real driver rather than the stated inventory
the test hosts use: the agent's detection (mlops_jobs.inventory: nvidia-smi's UUIDs), the
role's CUDA smoke test (roles/runner/tasks/gpu.yml: a computation on every GPU), and what
a job sees through the environment the agent gives it (mlops_jobs.runs.job_environment):
exactly its own devices with one, two or no GPUs. Needs only python3, the NVIDIA driver
and, for the CUDA part, PyTorch for the system Python; prints one line per check and exits
non-zero on the first failure."""

import json
import os
import subprocess
import sys

from mlops_jobs import inventory, runs

# What a job process reports of the devices CUDA gives it, and a computation on each.
PROBE = r"""
import json, torch
count = torch.cuda.device_count()
sums = [float((torch.arange(1024, dtype=torch.float32, device="cuda:%d" % i) * 2).sum()) for i in range(count)]
names = [torch.cuda.get_device_properties(i).name for i in range(count)]
print(json.dumps({"count": count, "sums": sums, "names": names}))
"""
TRACKING = {"uri": "https://mlflow.example.invalid", "username": "runner-gpu", "password": "unused"}


def check(name, ok, detail):
    print("%s  %s: %s" % ("ok  " if ok else "FAIL", name, detail), flush=True)
    if not ok:
        sys.exit(1)


def job_sees(gpu_ids):
    env = dict(os.environ)
    env.update(runs.job_environment({"id": 1}, TRACKING, "run", "/tmp", gpu_ids))
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    check("job with %d GPU(s) starts" % len(gpu_ids), done.returncode == 0, (done.stderr or done.stdout)[-500:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    gpus = inventory.detect_gpus()
    check("nvidia-smi lists GPUs (agent's detection)", len(gpus) > 0, json.dumps(gpus))
    found = inventory.host_inventory()
    check("runner inventory offers every detected GPU by UUID", found["gpu_ids"] == [g["uuid"] for g in gpus],
          json.dumps(found))
    try:
        import torch  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    except ImportError:
        print("skip  no PyTorch for %s: CUDA checks not run" % sys.executable)
        return
    every = job_sees([g["uuid"] for g in gpus])
    check("a job given every GPU sees all of them and computes on each", every["count"] == len(gpus)
          and every["sums"] == [1024.0 * 1023] * len(gpus), json.dumps(every))
    for gpu in gpus[:2]:
        one = job_sees([gpu["uuid"]])
        check("a job given %s sees exactly that device" % gpu["uuid"],
              one["count"] == 1 and one["names"] == [gpu["name"]] and one["sums"] == [1024.0 * 1023], json.dumps(one))
    if len(gpus) >= 2:
        two = job_sees([gpus[-1]["uuid"], gpus[0]["uuid"]])
        check("a job given two GPUs sees exactly two", two["count"] == 2, json.dumps(two))
    done = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.device_count())"],
                          env=dict(os.environ, **runs.job_environment({"id": 1}, TRACKING, "run", "/tmp", [])),
                          capture_output=True, text=True, timeout=300, check=False)
    check("a job given no GPU sees none", done.returncode == 0 and done.stdout.strip() == "0",
          (done.stdout + done.stderr)[-300:])


if __name__ == "__main__":
    main()
