# -*- coding: utf-8 -*-
# Copyright: mlops.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The addresses at which the platform's hosts reach each other."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: host_addresses
author: mlops.platform maintainers (@mlops-platform)
short_description: The addresses at which the platform's hosts reach each other
version_added: 0.1.0
description:
  - For each inventory host name, the address other hosts of the platform use for it, in the order given.
  - That is the host's C(mlops_address) when set (a private address, when C(ansible_host) is the one the controller
    uses), else its C(ansible_host), else the inventory name itself (resolved by DNS).
  - With O(local), that host is reached on loopback, C(127.0.0.1).
options:
  _input:
    description: Inventory host names, such as C(groups['mlflow']).
    type: list
    elements: str
    required: true
  hostvars:
    description: C(hostvars).
    type: dict
    required: true
  local:
    description: The host asking, usually C(inventory_hostname); its own address is C(127.0.0.1).
    type: str
"""

EXAMPLES = r"""
- name: The MLflow hosts' addresses
  ansible.builtin.debug:
    msg: "{{ groups['mlflow'] | mlops.platform.host_addresses(hostvars) }}"

- name: The database host as this host reaches it (loopback when it is this host)
  ansible.builtin.debug:
    msg: "{{ (groups['postgresql'][:1] | mlops.platform.host_addresses(hostvars, local=inventory_hostname))[0] }}"
"""

RETURN = r"""
_value:
  description: One address per host name.
  type: list
  elements: str
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.mlops.platform.plugins.module_utils.platform_model import host_address


def host_addresses(names, hostvars, local=None):
    """Return the address of each host in names, 127.0.0.1 for local."""
    if isinstance(names, str) or not hasattr(names, "__iter__"):
        raise AnsibleFilterError("host_addresses needs a list of host names, got %r" % (names,))
    return [host_address(hostvars, name, local) for name in names]


class FilterModule(object):
    def filters(self):
        return {"host_addresses": host_addresses}
