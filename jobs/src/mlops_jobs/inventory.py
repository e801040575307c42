"""What a runner host offers: its GPUs by UUID, its CPUs and memory.

GPUs come from the configuration when it lists them (a runner that should offer only
some devices, or a test host with a stated inventory), else from nvidia-smi; a host
without nvidia-smi is a CPU-only runner. nvidia-smi that is present but fails means a
broken driver: that is an error, never a silent CPU-only runner.
"""

import os
import shutil
import subprocess

NVIDIA_SMI_QUERY = ["--query-gpu=index,uuid,name,memory.total", "--format=csv,noheader,nounits"]
# Left for the system and the agent itself when the memory is not configured.
RESERVED_MEMORY_MB = 1024


class InventoryError(Exception):
    pass


def parse_nvidia_smi(text):
    """nvidia-smi's CSV (index, uuid, name, memory.total in MiB) -> [{index, uuid, name, memory_mb}]."""
    gpus = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = [field.strip() for field in line.split(",")]
        if len(fields) < 4 or not fields[1].startswith(("GPU-", "MIG-")):
            raise InventoryError("unexpected nvidia-smi output line: %r" % line)
        index, uuid, memory = fields[0], fields[1], fields[-1]
        gpus.append({"index": int(index), "uuid": uuid, "name": ", ".join(fields[2:-1]),
                     "memory_mb": int(float(memory)) if memory.replace(".", "", 1).isdigit() else None})
    return gpus


def detect_gpus(nvidia_smi=None, timeout=30):
    """The host's GPUs from nvidia-smi; [] when it is not installed."""
    path = nvidia_smi or shutil.which("nvidia-smi")
    if not path:
        return []
    try:
        done = subprocess.run([path] + NVIDIA_SMI_QUERY, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InventoryError("nvidia-smi did not answer: %s" % exc)
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip()[:500]
        raise InventoryError("nvidia-smi failed (exit %d): %s" % (done.returncode, message))
    return parse_nvidia_smi(done.stdout)


def memory_total_mb(meminfo="/proc/meminfo"):
    with open(meminfo) as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    raise InventoryError("no MemTotal in %s" % meminfo)


def host_inventory(gpu_ids=None, cpus=None, memory_mb=None, nvidia_smi=None):
    """{gpu_ids, cpus, memory_mb}: the configured values, the detected ones otherwise."""
    if gpu_ids is None:
        gpu_ids = [gpu["uuid"] for gpu in detect_gpus(nvidia_smi)]
    if len(set(gpu_ids)) != len(gpu_ids):
        raise InventoryError("the GPU inventory names a device twice: %s" % ", ".join(gpu_ids))
    if cpus is None:
        cpus = len(os.sched_getaffinity(0))
    if memory_mb is None:
        memory_mb = max(memory_total_mb() - RESERVED_MEMORY_MB, 256)
    if cpus < 1 or memory_mb < 1:
        raise InventoryError("a runner needs at least one CPU and some memory, got %d CPUs and %d MB"
                             % (cpus, memory_mb))
    return {"gpu_ids": list(gpu_ids), "cpus": cpus, "memory_mb": memory_mb}
