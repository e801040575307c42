#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mlops.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: minio_policy
short_description: A MinIO canned policy
version_added: 0.1.0
author: mlops.platform maintainers (@mlops-platform)
description:
  - Creates, updates or removes a canned (IAM) policy on MinIO through its admin API.
  - The policy is compared with the one on the server as normalized JSON (statement order, a single string versus a
    list of one, and the order of actions and resources do not count), so a re-run reports no change.
extends_documentation_fragment:
  - mlops.platform.s3_endpoint
attributes:
  check_mode:
    support: full
    description: Reads the policy and reports what it would change; changes nothing.
  diff_mode:
    support: full
    description: Shows the normalized policy before and after.
options:
  name:
    description: Policy name.
    type: str
    required: true
  policy:
    description: The policy document (C(Version), C(Statement)). Required with O(state=present).
    type: dict
  state:
    description: Whether the policy should exist. A policy still attached to a user or group cannot be removed.
    type: str
    choices: [present, absent]
    default: present
"""

EXAMPLES = r"""
- name: Read and write one bucket only
  mlops.platform.minio_policy:
    endpoint_url: https://minio.example.com:9000
    access_key: "{{ minio_root_user }}"
    secret_key: "{{ minio_root_password }}"
    name: mlflow-team-a-rw
    policy:
      Version: "2012-10-17"
      Statement:
        - Effect: Allow
          Action: ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"]
          Resource: ["arn:aws:s3:::mlflow-team-a"]
        - Effect: Allow
          Action: ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
          Resource: ["arn:aws:s3:::mlflow-team-a/*"]
"""

RETURN = r"""
actions:
  description: What the module did, or would do in check mode.
  returned: always
  type: list
  elements: str
  sample: ["create policy"]
policy:
  description: The normalized policy after the run; empty when it is absent.
  returned: always
  type: dict
"""

import json

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mlops.platform.plugins.module_utils.object_storage import (
    ObjectStorageError,
    argument_spec,
    connect,
    normalize_policy,
)


def read_policy(client, name):
    found = client.admin_json("read policy %s" % name, client.admin.policy_info, name)
    if found is None:
        return None
    # Newer servers wrap the document: {"PolicyName": ..., "Policy": {...}}.
    document = found.get("Policy", found)
    if isinstance(document, str):
        document = json.loads(document)
    return normalize_policy(document)


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(
            name=dict(type="str", required=True),
            policy=dict(type="dict"),
            state=dict(type="str", default="present", choices=["present", "absent"]),
        ),
        required_if=[("state", "present", ("policy",))],
        supports_check_mode=True,
    )
    name = module.params["name"]
    desired = None
    if module.params["state"] == "present":
        try:
            desired = normalize_policy(module.params["policy"])
        except ValueError as exc:
            module.fail_json(msg="policy: %s" % exc)

    client = connect(module)
    try:
        current = read_policy(client, name)
        actions = []
        if desired is None and current is not None:
            actions.append("remove policy")
        elif desired is not None and current is None:
            actions.append("create policy")
        elif desired is not None and desired != current:
            actions.append("update policy")
        if actions and not module.check_mode:
            if desired is None:
                try:
                    client.call("remove policy %s" % name, client.admin.policy_remove, name)
                except ObjectStorageError as exc:
                    if exc.code == "XMinioIAMPolicyInUse":
                        raise ObjectStorageError("policy %s is still attached to a user or group; detach it first "
                                                 "(mlops.platform.minio_user policies)" % name)
                    raise
            else:
                client.call("write policy %s" % name, client.admin.policy_add, name, policy=desired)
    except ObjectStorageError as exc:
        module.fail_json(msg=str(exc))

    module.exit_json(changed=bool(actions), actions=actions, policy=desired or {},
                     diff=dict(before=current or {}, after=desired or {}))


if __name__ == "__main__":
    main()
