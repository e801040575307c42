# The test hosts' connection: containers.podman.podman with pipelining. That plugin runs
# `podman exec` without -i, so a module piped on stdin never arrives, and it turns
# pipelining off; each task then costs a temporary directory, a copy, a chmod and a
# cleanup, each one more podman exec. Passing -i when there is input is the whole change
# (about 2.5x faster per task on this machine). Test tooling only: not part of the
# collection (hack/ is outside the build).
from __future__ import annotations

DOCUMENTATION = """
name: mlops_podman
short_description: Run tasks in a podman container, with pipelining
description:
  - containers.podman.podman, with the module sent on the standard input of C(podman exec -i) when Ansible
    pipelines.
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

import shlex

from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.connection import ensure_connect
from ansible_collections.containers.podman.plugins.connection.podman import Connection as PodmanConnection


class Connection(PodmanConnection):
    transport = "mlops_podman"
    has_pipelining = True

    @ensure_connect
    def exec_command(self, cmd, in_data=None, sudoable=False):
        if not in_data:
            return super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        exec_args = ["exec", "-i"] + (["--user", self.user] if self.user else [])
        return self._podman(exec_args, shlex.split(to_native(cmd, errors="surrogate_or_strict")), in_data)
