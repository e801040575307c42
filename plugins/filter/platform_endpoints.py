# -*- coding: utf-8 -*-
# Copyright: mlops.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the platform's services reach each other, from the inventory alone."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: platform_endpoints
author: mlops.platform maintainers (@mlops-platform)
short_description: How each service of the platform is reached, from the inventory alone
version_added: 0.2.0
extends_documentation_fragment:
  - mlops.platform.platform_inventory
description:
  - Each role that offers a service publishes here how the others reach it, computed from group membership and the
    inventory variables of the providing host (the role's default when the inventory does not set it). No role
    reads another role's runtime facts.
  - C(postgresql) (C(host), C(address), C(port) from C(postgresql_port), C(tls) from C(postgresql_tls_enabled),
    C(verify) when the client must connect with TLS and verify the server, that is with TLS on and the server not
    on the asking host, C(ca_file) where a client host keeps the server's CA, C(ca_host) the host under whose
    credentials directory the controller keeps that CA (the first C(postgresql) host), C(standbys) the other
    C(postgresql) hosts) is the primary, the host C(postgresql_primary) names in the first C(postgresql) host's
    inventory, else that first host.
    C(s3) (C(host), C(address), C(port), C(scheme), C(tls), C(url), from C(minio_port) and C(minio_tls_enabled))
    is the first C(minio) host. C(mlflow) describes the MLflow hosts (C(host) the first, C(across_hosts) when the
    C(mlflow) and C(gateway) groups are not one single host (MLflow and the job API then listen on their platform
    addresses and are never reached on loopback), C(tls) and C(scheme) (TLS when C(mlflow_tls_enabled) is on and
    C(across_hosts)), C(ca_file) where a gateway host keeps their CA, C(ca_dir) where the controller keeps it under
    the credentials directory, C(tls_name) the name every MLflow host's certificate carries). C(jobs_api)
    (C(host), C(address), C(port) from C(jobs_api_port), C(tls) and C(scheme) as C(mlflow)) is the first
    C(mlflow) host. C(gateway) (C(host), C(scheme), C(tls) from C(gateway_tls_enabled), C(public_host))
    is the first C(gateway) host.
  - Addresses follow the host_addresses filter; a service on the asking host is reached on loopback (the job API
    only when not C(across_hosts)).
options:
  _input:
    description: C(hostvars).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: The S3 endpoint as this host reaches it
  ansible.builtin.debug:
    msg: "{{ (hostvars | mlops.platform.platform_endpoints(groups, local=inventory_hostname)).s3.url }}"
"""

RETURN = r"""
_value:
  description: The endpoints by service, C(postgresql), C(s3), C(mlflow), C(jobs_api) and C(gateway).
  type: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.mlops.platform.plugins.module_utils.platform_model import (
    ModelError,
    platform_endpoints as _platform_endpoints,
)


def platform_endpoints(hostvars, groups, local=None):
    try:
        return _platform_endpoints(hostvars, groups, local=local)
    except ModelError as exc:
        raise AnsibleFilterError(str(exc))


class FilterModule(object):
    def filters(self):
        return {"platform_endpoints": platform_endpoints}
