"""The runner's inventory: nvidia-smi output parsed, a failing nvidia-smi an error, a
host without it CPU-only. The nvidia-smi here is a script the test writes (this machine
has no GPU); the real one is checked on GPU hosts by the runner role."""

import pytest

from mlops_jobs.inventory import InventoryError, detect_gpus, host_inventory, parse_nvidia_smi

TWO_GPUS = ("0, GPU-5c9b3e6a-0000-1111-2222-333344445555, NVIDIA H100 80GB HBM3, 81559\n"
            "1, GPU-7d1f0a2b-6666-7777-8888-9999aaaabbbb, NVIDIA H100 80GB HBM3, 81559\n")


def fake_nvidia_smi(tmp_path, output, status=0):
    script = tmp_path / "nvidia-smi"
    script.write_text("#!/bin/sh\ncat <<'OUT'\n%sOUT\nexit %d\n" % (output, status))
    script.chmod(0o755)
    return str(script)


def test_parse_two_gpus():
    gpus = parse_nvidia_smi(TWO_GPUS)
    assert [g["uuid"] for g in gpus] == ["GPU-5c9b3e6a-0000-1111-2222-333344445555",
                                         "GPU-7d1f0a2b-6666-7777-8888-9999aaaabbbb"]
    assert gpus[1] == {"index": 1, "uuid": "GPU-7d1f0a2b-6666-7777-8888-9999aaaabbbb",
                       "name": "NVIDIA H100 80GB HBM3", "memory_mb": 81559}


def test_unexpected_output_is_an_error():
    with pytest.raises(InventoryError, match="unexpected nvidia-smi output"):
        parse_nvidia_smi("No devices were found\n")


def test_detect_reads_nvidia_smi(tmp_path):
    assert len(detect_gpus(fake_nvidia_smi(tmp_path, TWO_GPUS))) == 2


def test_a_failing_nvidia_smi_is_a_broken_driver_not_a_cpu_runner(tmp_path):
    broken = fake_nvidia_smi(tmp_path, "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA "
                                       "driver.\n", status=9)
    with pytest.raises(InventoryError, match="nvidia-smi failed \\(exit 9\\): NVIDIA-SMI has failed"):
        detect_gpus(broken)


def test_configured_values_win_and_the_rest_is_detected():
    inventory = host_inventory(gpu_ids=["GPU-a", "GPU-b"], cpus=2)
    assert inventory["gpu_ids"] == ["GPU-a", "GPU-b"] and inventory["cpus"] == 2 and inventory["memory_mb"] > 0
    with pytest.raises(InventoryError, match="names a device twice"):
        host_inventory(gpu_ids=["GPU-a", "GPU-a"])
