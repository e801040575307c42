# -*- coding: utf-8 -*-
# Copyright: mlops.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tracking services of the platform as one checked, secret-free record each."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: tracking_services
author: mlops.platform maintainers (@mlops-platform)
short_description: One checked, secret-free record per tracking service
version_added: 0.2.0
extends_documentation_fragment:
  - mlops.platform.platform_inventory
description:
  - Turns C(mlops_tracking_services) (or a role's copy of it) and the inventory into one record per service, checked
    against every rule once. Every role and playbook of the collection reads a service from here, so the name rule,
    the names of its resources and its public URL are written in one place
    (C(plugins/module_utils/platform_model.py)).
  - A record has C(name), C(state), C(present) (state is not absent), C(database) (also its login role),
    C(bucket) (also its MinIO user and policy), C(s3) (its artifact store, C(external) false for the platform's
    MinIO, else the entry's C(s3) over the inventory's C(mlops_s3) without its secret key, as C(endpoint_url),
    C(access_key), C(region), C(addressing_style), C(ca_file), C(ca_host_file), C(create_bucket)), C(postgresql)
    (its database server, C(external) false for the platform's, else the entry's C(postgresql) over the inventory's
    C(mlops_postgresql) without its admin password, as C(host), C(port), C(ca_file), C(admin_user),
    C(admin_database)), C(unit),
    C(secrets_dir), C(database_password_file),
    C(s3_secret_key_file), C(users_dir) (on the controller), C(mlflow_port), C(gateway_port), C(server_name),
    C(public_host), C(public_url), C(allowed_hosts), C(cors_origins), C(allow), C(features) and
    C(refused_routes) (the MLflow features the entry turns on; the routes of the others), C(git_urls) (where the
    runners fetch with a git credential of the entry; tokens stay in the entry), C(upstreams) (host:port
    of each MLflow host as the asking host reaches it), C(users) and C(generated_users) (names only), C(runner_users),
    and the per-service MLflow settings the entry gives (C(workers), C(environment), ...).
  - The public host is the entry's C(server_name), else the first gateway host's C(gateway_public_host) or
    C(mlops_public_host) from the inventory, else that host's default IPv4 address, else its platform address.
  - Fails on the first entry that breaks a rule, naming the variable, the entry and the rule. Passwords are never in a
    record nor in a message.
options:
  _input:
    description: The tracking services, such as C(mlops_tracking_services).
    type: list
    elements: dict
    required: true
  hostvars:
    description: C(hostvars).
    type: dict
    required: true
  credentials_dir:
    description: The controller directory of generated secrets (C(mlops_credentials_dir)).
    type: str
  variable:
    description: The name of the variable the list came from, for messages.
    type: str
    default: mlops_tracking_services
"""

EXAMPLES = r"""
- name: The database of every service
  ansible.builtin.debug:
    msg: >-
      {{ mlops_tracking_services | mlops.platform.tracking_services(hostvars, groups)
         | map(attribute='database') | list }}
"""

RETURN = r"""
_value:
  description: One record per entry, in the order given.
  type: list
  elements: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.mlops.platform.plugins.module_utils.platform_model import (
    ModelError,
    tracking_services as _tracking_services,
)


def tracking_services(entries, hostvars, groups, local=None, credentials_dir="", variable="mlops_tracking_services"):
    try:
        return _tracking_services(entries, hostvars, groups, local=local, credentials_dir=credentials_dir,
                                  variable=variable)
    except ModelError as exc:
        raise AnsibleFilterError(str(exc))


class FilterModule(object):
    def filters(self):
        return {"tracking_services": tracking_services}
