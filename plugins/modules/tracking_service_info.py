#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mlops.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: tracking_service_info
short_description: The MLflow tracking services on this host
version_added: 0.1.0
author: mlops.platform maintainers (@mlops-platform)
description:
  - Lists the MLflow tracking services that M(mlops.platform.tracking_service) configured on the host the module
    runs on (one environment file each in O(config_dir)), with the state of their systemd units.
  - Returns no secrets, neither the backend store URI nor S3 keys.
  - Runs as root, since the environment files are readable by root only.
attributes:
  check_mode:
    support: full
    description: Only reads; runs the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing, so has nothing to show.
  platform:
    support: full
    platforms: posix
    description: Linux hosts with systemd.
options:
  name:
    description: Only this tracking service; not given, all of them.
    type: str
  config_dir:
    description: Directory of the environment files.
    type: path
    default: /etc/mlflow/services
seealso:
  - module: mlops.platform.tracking_service
"""

EXAMPLES = r"""
- name: Tracking services of this host
  mlops.platform.tracking_service_info:
  register: tracking

- name: Show where each one answers
  ansible.builtin.debug:
    msg: "{{ item.name }}: {{ item.state }} at {{ item.internal_url }}"
  loop: "{{ tracking.services }}"

- name: One service
  mlops.platform.tracking_service_info:
    name: team-a
  register: team_a
"""

RETURN = r"""
services:
  description: The tracking services, sorted by name; empty when there is none (or O(name) has no service).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Name of the service; its unit is C(mlflow@NAME.service).
      type: str
      sample: team-a
    state:
      description: V(running), V(stopped) or V(failed) (the unit failed or systemd is restarting it after a failure).
      type: str
      sample: running
    enabled:
      description: Whether the unit starts at boot.
      type: bool
      sample: true
    port:
      description: Port the server listens on.
      type: int
      sample: 5001
    internal_url:
      description: URL of the server on its own host.
      type: str
      sample: http://127.0.0.1:5001
    public_url:
      description: URL users reach the service at, or null when none was configured.
      type: str
      sample: https://mlflow-a.example.com
    artifacts_destination:
      description: Where the server stores artifacts.
      type: str
      sample: s3://mlflow-team-a
    mlflow_version:
      description: MLflow version the service was configured with, or null.
      type: str
      sample: 3.17.2
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mlops.platform.plugins.module_utils.platform_model import name_problem
from ansible_collections.mlops.platform.plugins.module_utils.tracking_service import TrackingServiceError
from ansible_collections.mlops.platform.plugins.module_utils.tracking_service_env import parse_env
from ansible_collections.mlops.platform.plugins.module_utils.tracking_service_host import (
    TrackingServiceHost,
    internal_url,
    service_state,
)


def describe(client, name):
    """A service's public facts; None when it has no environment file."""
    text, _file_ok = client.read_env(name)
    if text is None:
        return None
    values = parse_env(text)
    unit = client.unit_status(name)
    host = values.get("MLFLOW_HOST", "127.0.0.1")
    try:
        port = int(values.get("MLFLOW_PORT", ""))
    except ValueError:
        port = None
    return dict(
        name=name,
        state=service_state(unit),
        enabled=unit["enabled"],
        port=port,
        internal_url=internal_url(host, port, "--ssl-certfile" in values.get("MLFLOW_UVICORN_OPTS", "")) if port else None,
        public_url=values.get("MLOPS_PUBLIC_URL") or None,
        artifacts_destination=values.get("MLFLOW_ARTIFACTS_DESTINATION"),
        mlflow_version=values.get("MLOPS_MLFLOW_VERSION") or None,
    )


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str"),
            config_dir=dict(type="path", default="/etc/mlflow/services"),
        ),
        supports_check_mode=True,
    )
    name = module.params["name"]
    if name is not None and name_problem(name):
        module.fail_json(msg=name_problem(name))
    client = TrackingServiceHost(module, module.params["config_dir"])
    try:
        names = [name] if name is not None else client.names()
        services = [service for service in (describe(client, n) for n in names) if service]
    except TrackingServiceError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, services=services)


if __name__ == "__main__":
    main()
