"""The test hosts' connection (hack/connection_plugins/mlops_podman.py): its multiplexer
and agent, with a stand-in for podman that runs `exec -i CONTAINER COMMAND...` as
COMMAND... on this machine, so the agent's real code runs as it does in a container."""

import importlib.util
import os
import pathlib
import subprocess
import sys
import threading
import time

import pytest

PLUGIN = pathlib.Path(__file__).resolve().parents[2] / "hack" / "connection_plugins" / "mlops_podman.py"


@pytest.fixture(scope="module")
def plugin():
    spec = importlib.util.spec_from_file_location("mlops_podman_under_test", PLUGIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def fake_podman(tmp_path, monkeypatch):
    """A podman whose `exec -i CONTAINER ...` runs the rest here; fails for container 'stopped'."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    script = tmp_path / "podman"
    script.write_text("#!/bin/sh\n"
                      "[ \"$1\" = exec ] && [ \"$2\" = -i ] || exit 125\n"
                      "[ \"$3\" = stopped ] && { echo 'container is not running' >&2; exit 125; }\n"
                      "shift 3\nexec \"$@\"\n")
    script.chmod(0o755)
    return [str(script)]


def multiplexer_pids(container):
    found = subprocess.run(["pgrep", "-f", "mlops_podman.py .* %s " % container], capture_output=True, text=True,
                           check=False).stdout
    return [int(pid) for pid in found.split()]


def test_commands_run_with_their_input_exit_status_and_output(plugin, fake_podman):
    client = plugin.connect(fake_podman, "host-a")
    assert client is not None
    rc, out, err = plugin.run(client, ["/bin/sh", "-c", "cat; echo err >&2; exit 3"], b"module code\x00\xff")
    assert (rc, out, err) == (3, b"module code\x00\xff", b"err\n")
    # Without input the command reads an empty stdin, as under podman exec without -i.
    assert plugin.run(plugin.connect(fake_podman, "host-a"), ["cat"], None) == (0, b"", b"")
    assert plugin.run(plugin.connect(fake_podman, "host-a"), ["/nonexistent"], None)[0] == 127


def test_one_multiplexer_serves_every_client_and_a_slow_command_holds_up_none(plugin, fake_podman):
    results = {}

    def slow():
        results["slow"] = plugin.run(plugin.connect(fake_podman, "host-b"), ["sleep", "3"], None)

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.5)
    started = time.monotonic()
    for i in range(20):
        assert plugin.run(plugin.connect(fake_podman, "host-b"), ["echo", str(i)], None) == (0, b"%d\n" % i, b"")
    assert time.monotonic() - started < 2.5
    thread.join()
    assert results["slow"] == (0, b"", b"")
    assert len(multiplexer_pids("host-b")) == 1


def test_an_agent_that_cannot_start_gives_none_and_a_lost_one_an_empty_answer(plugin, fake_podman):
    assert plugin.connect(fake_podman, "stopped") is None
    client = plugin.connect(fake_podman, "host-c")
    (pid,) = multiplexer_pids("host-c")
    # The multiplexer is the only thing that holds the agent; killing its group is the
    # container going away under a running command.
    killer = threading.Timer(0.5, lambda: os.killpg(os.getpgid(pid), 9))
    killer.start()
    assert plugin.run(client, ["sleep", "5"], None) is None
    killer.join()
    while multiplexer_pids("host-c"):
        time.sleep(0.05)
    # The next command starts a new multiplexer and agent.
    assert plugin.run(plugin.connect(fake_podman, "host-c"), ["echo", "again"], None) == (0, b"again\n", b"")


def test_when_only_the_agent_ends_the_next_command_gets_a_new_one_at_once(plugin, fake_podman):
    # The container going away ends the agent; its multiplexer lingers a second to
    # answer the clients it holds, and must not stand in the way of the next one.
    client = plugin.connect(fake_podman, "host-e")
    (multiplexer,) = multiplexer_pids("host-e")
    (agent,) = subprocess.run(["pgrep", "-P", str(multiplexer)], capture_output=True, text=True,
                              check=True).stdout.split()
    killer = threading.Timer(0.5, lambda: os.kill(int(agent), 9))
    killer.start()
    assert plugin.run(client, ["sleep", "5"], None) is None
    killer.join()
    started = time.monotonic()
    assert plugin.run(plugin.connect(fake_podman, "host-e"), ["echo", "new"], None) == (0, b"new\n", b"")
    assert time.monotonic() - started < 5


@pytest.fixture(autouse=True)
def no_leftover_multiplexers():
    yield
    for container in ("host-a", "host-b", "host-c", "host-e"):
        for pid in multiplexer_pids(container):
            os.kill(pid, 9)


def test_the_multiplexer_runs_without_ansible(tmp_path):
    # It is this file run by the controller's Python without site-packages: it must get
    # as far as starting the agent (here `false`, which fails) without importing Ansible.
    done = subprocess.run([sys.executable, "-S", str(PLUGIN), '["false"]', "host-d", str(tmp_path / "x.sock")],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 3, done.stderr
