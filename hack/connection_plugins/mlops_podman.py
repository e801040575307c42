# The test hosts' connection: containers.podman.podman, with pipelining and one
# long-lived `podman exec` per container instead of one per command.
#
# containers.podman.podman runs `podman exec` without -i, so a module piped on stdin
# never arrives, and it turns pipelining off; each task then costs a temporary
# directory, a copy, a chmod and a cleanup, each one more podman exec. This plugin
# pipelines, and sends every command to an agent: a small Python process started once
# per container with `podman exec -i`, which runs each command as podman exec would
# (same argv, environment, working directory; stdin only when Ansible sends some) and
# returns its exit status and output. A multiplexer on the controller (this file run
# as a script, one per container, found through a socket under
# $XDG_RUNTIME_DIR or /tmp) holds the agent's pipes, so every Ansible worker and every
# playbook run share it; it exits with the container or after IDLE_SECONDS unused.
# Where the agent cannot start (no python3 in the container, a --user set), commands go
# through a plain podman exec as before. Files still move through the container's
# mount point (the parent plugin).
#
# Test tooling only: not part of the collection (hack/ is outside the build).
from __future__ import annotations

DOCUMENTATION = """
name: mlops_podman
short_description: Run tasks in a podman container, with pipelining and a persistent exec
description:
  - containers.podman.podman, with the module sent on the standard input when Ansible pipelines, and every
    command run by one long-lived agent per container instead of one C(podman exec) each.
author: mlops.platform
extends_documentation_fragment:
  - connection_pipelining
options:
  remote_addr:
    description: The name or ID of the container.
    default: inventory_hostname
    vars:
      - name: ansible_host
      - name: inventory_hostname
      - name: ansible_podman_host
  remote_user:
    description: User to run commands as in the container.
    vars:
      - name: ansible_user
  podman_extra_args:
    description: Extra arguments for the podman command line.
    default: ''
    vars:
      - name: ansible_podman_extra_args
  podman_executable:
    description: The podman executable.
    default: podman
    vars:
      - name: ansible_podman_executable
"""

import base64
import fcntl
import hashlib
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time

IDLE_SECONDS = 300
START_SECONDS = 30
AGENT_FAILED = 3

# Runs in the container: one JSON request per line in ({"id", "argv", "stdin"}), one
# JSON response per line out ({"id", "rc", "stdout", "stderr"}), each request in its
# own thread, so a long command never holds up another.
AGENT = r"""
import base64, json, subprocess, sys, threading
out, lock = sys.stdout.buffer, threading.Lock()
def run(request):
    data = request.get("stdin")
    try:
        done = subprocess.run(request["argv"], input=base64.b64decode(data) if data is not None else None,
                              stdin=None if data is not None else subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        rc, stdout, stderr = done.returncode, done.stdout, done.stderr
    except OSError as error:
        rc, stdout, stderr = 127, b"", str(error).encode()
    line = json.dumps({"id": request["id"], "rc": rc, "stdout": base64.b64encode(stdout).decode(),
                       "stderr": base64.b64encode(stderr).decode()}).encode() + b"\n"
    with lock:
        out.write(line)
        out.flush()
out.write(b"ready\n")
out.flush()
for line in sys.stdin.buffer:
    threading.Thread(target=run, args=(json.loads(line),), daemon=True).start()
"""


def socket_path(podman_cmd, container):
    runtime = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    directory = os.path.join(runtime, "mlops-podman-%d" % os.getuid())
    os.makedirs(directory, mode=0o700, exist_ok=True)
    key = hashlib.sha256(json.dumps([podman_cmd, container]).encode()).hexdigest()[:20]
    return os.path.join(directory, key + ".sock")


def serve(podman_cmd, container, path):
    """The multiplexer: one agent for the container, any number of clients on the socket."""
    lock_fd = os.open(path + ".lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another multiplexer serves this container
    # One line in the container's process table (`podman top`, `ps`), not the code's lines.
    bootstrap = "import base64; exec(base64.b64decode('%s'))" % base64.b64encode(AGENT.encode()).decode()
    agent = subprocess.Popen(podman_cmd + ["exec", "-i", container, "python3", "-u", "-c", bootstrap],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    if agent.stdout.readline() != b"ready\n":
        agent.kill()
        return AGENT_FAILED
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(64)
    bound = os.stat(path).st_ino  # the socket file is ours to remove only while it is this one
    state = {"next": 0, "pending": {}, "last": time.monotonic()}
    state_lock, write_lock = threading.Lock(), threading.Lock()

    def stop():
        try:
            if os.stat(path).st_ino == bound:
                os.unlink(path)
        except OSError:
            pass
        os._exit(0)

    def read_responses():
        for line in agent.stdout:
            response = json.loads(line)
            with state_lock:
                slot = state["pending"].pop(response["id"], None)
            if slot:
                slot["response"] = line
                slot["done"].set()
        # The agent is gone (the container stopped or was removed): the next client
        # starts a new multiplexer, and every waiting one gets an empty answer, which it
        # reports as a lost connection.
        try:
            if os.stat(path).st_ino == bound:
                os.unlink(path)
        except OSError:
            pass
        os.close(lock_fd)
        with state_lock:
            for slot in state["pending"].values():
                slot["done"].set()
        time.sleep(1)
        os._exit(0)

    def handle(client):
        with client, client.makefile("rwb") as stream:
            request = json.loads(stream.readline())
            slot = {"done": threading.Event(), "response": b""}
            with state_lock:
                state["next"] += 1
                request["id"] = state["next"]
                state["pending"][request["id"]] = slot
            try:
                with write_lock:
                    agent.stdin.write(json.dumps(request).encode() + b"\n")
                    agent.stdin.flush()
            except OSError:  # the agent is gone; read_responses ends this process
                return
            slot["done"].wait()
            with state_lock:
                state["last"] = time.monotonic()
            stream.write(slot["response"])
            stream.flush()

    threading.Thread(target=read_responses, daemon=True).start()
    server.settimeout(30)
    while True:
        try:
            client, _address = server.accept()
        except socket.timeout:
            with state_lock:
                idle = not state["pending"] and time.monotonic() - state["last"] > IDLE_SECONDS
            if idle:
                agent.kill()
                stop()
            continue
        with state_lock:
            state["last"] = time.monotonic()
        threading.Thread(target=handle, args=(client,), daemon=True).start()


def connect(podman_cmd, container):
    """A socket connected to the container's multiplexer, started if needed; None if it cannot run."""
    path = socket_path(podman_cmd, container)
    started = None
    deadline = time.monotonic() + START_SECONDS
    while True:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            client.connect(path)
            return client
        except OSError:
            client.close()
        if started is None:
            started = subprocess.Popen([sys.executable, __file__, json.dumps(podman_cmd), container, path],
                                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
        elif started.poll() == AGENT_FAILED or time.monotonic() > deadline:
            return None
        elif started.poll() is not None:
            started = None  # a multiplexer on its way out held the lock: start another
        time.sleep(0.05)


def run(client, argv, in_data):
    """(rc, stdout, stderr) of argv run by the agent behind client; None if the agent ended first."""
    request = {"argv": argv, "stdin": base64.b64encode(in_data).decode() if in_data else None}
    with client, client.makefile("rwb") as stream:
        stream.write(json.dumps(request).encode() + b"\n")
        stream.flush()
        line = stream.readline()
    if not line:
        return None
    response = json.loads(line)
    return response["rc"], base64.b64decode(response["stdout"]), base64.b64decode(response["stderr"])


if __name__ == "__main__":
    sys.exit(serve(json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]))


from ansible.errors import AnsibleConnectionFailure  # noqa: E402
from ansible.module_utils.common.text.converters import to_native  # noqa: E402
from ansible.plugins.connection import ensure_connect  # noqa: E402
from ansible.utils.display import Display  # noqa: E402
from ansible_collections.containers.podman.plugins.connection.podman import (  # noqa: E402
    Connection as PodmanConnection,
)

display = Display()


class Connection(PodmanConnection):
    transport = "mlops_podman"
    has_pipelining = True

    def _podman_cmd(self):
        cmd = [self.get_option("podman_executable")]
        if self.get_option("podman_extra_args"):
            cmd += shlex.split(to_native(self.get_option("podman_extra_args"), errors="surrogate_or_strict"))
        return cmd

    @ensure_connect
    def exec_command(self, cmd, in_data=None, sudoable=False):
        argv = shlex.split(to_native(cmd, errors="surrogate_or_strict"))
        client = None if self.user else connect(self._podman_cmd(), self._container_id)
        if client is None:
            display.vvv("no agent in %s: a podman exec for this command" % self._container_id)
            if not in_data:
                result = super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
            else:
                exec_args = ["exec", "-i"] + (["--user", self.user] if self.user else [])
                result = self._podman(exec_args, argv, in_data)
            # A stopped container is a host that is down: unreachable, as ssh would report
            # it, so that plays which skip hosts that do not answer (failover.yml) see it so.
            if result[0] != 0 and b"container state improper" in result[2]:
                raise AnsibleConnectionFailure("%s is not running" % self._container_id)
            return result
        display.vvv("AGENT %s" % argv, host=self._container_id)
        result = run(client, argv, in_data)
        if result is None:
            raise AnsibleConnectionFailure("the agent in %s ended before answering (the container stopped?)"
                                           % self._container_id)
        return result
