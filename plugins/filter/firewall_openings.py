# -*- coding: utf-8 -*-
# Copyright: mlops.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The platform's ports on one host and who may reach each, from the inventory alone."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: firewall_openings
author: mlops.platform maintainers (@mlops-platform)
short_description: The platform's ports on a host and the hosts that may reach each
version_added: 0.2.0
extends_documentation_fragment:
  - mlops.platform.platform_inventory
description:
  - What mlops.platform.firewall lets through on a host, computed from group membership and the inventory
    (C(plugins/module_utils/platform_model.py)), so that each port is open only to the hosts that use it.
  - PostgreSQL (C(postgresql_port)) to the C(mlflow) and C(runners) hosts; MinIO (C(minio_port), and
    C(minio_console_port) when C(minio_console_enabled)) to the C(mlflow) hosts and the other C(minio) nodes;
    each service's C(mlflow_port) and the job API (C(jobs_api_port)) to the C(gateway) hosts; each service's
    C(gateway_port) to its C(allow) networks, or to everyone when it has none.
  - Hosts are named by their platform address (the host_addresses filter), which the role resolves on the host.
options:
  _input:
    description: The tracking services as the tracking_services filter returns them.
    type: list
    elements: dict
    required: true
  hostvars:
    description: C(hostvars).
    type: dict
    required: true
  host:
    description: The inventory host whose ports are wanted.
    type: str
    required: true
  extra:
    description: Further openings, each C(port) and C(sources) (C(firewall_allow)); their sources join those of the
      same port.
    type: list
    elements: dict
    default: []
  trusted:
    description: Sources every port admits (C(firewall_trusted_sources)).
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: This host's ports and their sources
  ansible.builtin.debug:
    msg: >-
      {{ mlops_tracking_services | mlops.platform.tracking_services(hostvars, groups)
         | mlops.platform.firewall_openings(hostvars, groups, inventory_hostname) }}
"""

RETURN = r"""
_value:
  description: One item per port, sorted by port, each with C(port), C(service) (what listens there) and
    C(sources) (addresses, host names or CIDR networks; null for everyone).
  type: list
  elements: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.mlops.platform.plugins.module_utils.platform_model import (
    ModelError,
    firewall_openings as _firewall_openings,
)


def firewall_openings(records, hostvars, groups, host, extra=(), trusted=()):
    try:
        return _firewall_openings(records, hostvars, groups, host, extra=extra, trusted=trusted)
    except ModelError as exc:
        raise AnsibleFilterError(str(exc))


class FilterModule(object):
    def filters(self):
        return {"firewall_openings": firewall_openings}
