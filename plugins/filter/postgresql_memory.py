# -*- coding: utf-8 -*-
# Copyright: mlops.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL memory settings derived from a host's RAM."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: postgresql_memory
author: mlops.platform maintainers (@mlops-platform)
short_description: PostgreSQL memory settings derived from a host's RAM
version_added: 0.1.0
description:
  - Returns C(shared_buffers), C(effective_cache_size), C(maintenance_work_mem) and C(work_mem) for a dedicated
    database host, as strings in MB.
  - C(shared_buffers) is 25 % of RAM (128MB to 16GB), C(effective_cache_size) 75 %, C(maintenance_work_mem) RAM/16
    (64MB to 2GB), C(work_mem) the RAM left after C(shared_buffers) divided by three per connection (at least 4MB).
options:
  _input:
    description: RAM in MiB, as in C(ansible_facts['memtotal_mb']).
    type: int
    required: true
  max_connections:
    description: The server's C(max_connections).
    type: int
    default: 100
"""

EXAMPLES = r"""
- name: Settings for a 16 GiB host
  ansible.builtin.debug:
    msg: "{{ 16384 | mlops.platform.postgresql_memory(200) }}"
"""

RETURN = r"""
_value:
  description: The four settings, each a string such as C(4096MB).
  type: dict
"""

from ansible.errors import AnsibleFilterError

MIB_PER_GIB = 1024


def postgresql_memory(memory_mb, max_connections=100):
    """Return the memory settings for a host with memory_mb MiB of RAM."""
    try:
        memory_mb = int(memory_mb)
        max_connections = int(max_connections)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError("postgresql_memory needs integers: %s" % exc)
    if memory_mb <= 0 or max_connections <= 0:
        raise AnsibleFilterError(
            "postgresql_memory needs a positive RAM size and max_connections, got %d MiB and %d"
            % (memory_mb, max_connections)
        )
    shared_buffers = min(max(memory_mb // 4, 128), 16 * MIB_PER_GIB)
    effective_cache_size = max(memory_mb * 3 // 4, shared_buffers)
    maintenance_work_mem = min(max(memory_mb // 16, 64), 2 * MIB_PER_GIB)
    # Each connection may run a few sorts or hashes at once; three work_mem
    # allocations per connection is the budget for the RAM shared_buffers leaves.
    work_mem = max((memory_mb - shared_buffers) // (3 * max_connections), 4)
    return {
        "shared_buffers": "%dMB" % shared_buffers,
        "effective_cache_size": "%dMB" % effective_cache_size,
        "maintenance_work_mem": "%dMB" % maintenance_work_mem,
        "work_mem": "%dMB" % work_mem,
    }


class FilterModule(object):
    def filters(self):
        return {"postgresql_memory": postgresql_memory}
