# -*- coding: utf-8 -*-
# Copyright: mlops.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The names of a tracking service's resources, written down once."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: tracking_service_resource
author: mlops.platform maintainers (@mlops-platform)
short_description: The name of one resource of a tracking service
version_added: 0.1.0
description:
  - Every tracking service owns a PostgreSQL database and login role, a bucket with a MinIO user and policy of the
    same name, and a systemd unit. Roles, playbooks and tests take those names from this filter so they cannot
    disagree.
  - C(database) is C(mlflow_) plus the service name with hyphens as underscores (also the login role);
    C(bucket) is C(mlflow-) plus the name (also the MinIO user and policy); C(unit) is C(mlflow@<name>.service).
options:
  _input:
    description: The tracking service name (lowercase letters, digits and hyphens, at most 30 characters).
    type: str
    required: true
  kind:
    description: Which resource.
    type: str
    required: true
    choices: [database, bucket, unit]
"""

EXAMPLES = r"""
- name: The database of the service team-a (mlflow_team_a)
  ansible.builtin.debug:
    msg: "{{ 'team-a' | mlops.platform.tracking_service_resource('database') }}"
"""

RETURN = r"""
_value:
  description: The resource name.
  type: str
"""

import re

from ansible.errors import AnsibleFilterError

NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,28}[a-z0-9])?$")


def tracking_service_resource(name, kind):
    """Return the name of resource kind of the tracking service name."""
    name = str(name)
    if not NAME_PATTERN.match(name):
        raise AnsibleFilterError(
            "tracking service name %r: use lowercase letters, digits and hyphens, at most 30 characters, "
            "not starting or ending with a hyphen" % name
        )
    if kind == "database":
        return "mlflow_" + name.replace("-", "_")
    if kind == "bucket":
        return "mlflow-" + name
    if kind == "unit":
        return "mlflow@%s.service" % name
    raise AnsibleFilterError("tracking_service_resource: kind must be database, bucket or unit, not %r" % kind)


class FilterModule(object):
    def filters(self):
        return {"tracking_service_resource": tracking_service_resource}
