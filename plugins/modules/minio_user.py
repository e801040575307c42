#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mlops.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: minio_user
short_description: A MinIO user, its secret, status and exact list of policies
version_added: 0.1.0
author: mlops.platform maintainers (@mlops-platform)
description:
  - Creates, enables, disables or removes a user of MinIO's built-in identity provider through the admin API, sets
    its secret key and attaches exactly the policies given.
  - MinIO does not reveal a user's secret. With O(update_password=always) the module checks the given secret by
    signing one read-only request as the user, and sets it only when the server refuses the signature.
extends_documentation_fragment:
  - mlops.platform.s3_endpoint
attributes:
  check_mode:
    support: full
    description: Reads the user and reports what it would change; changes nothing.
  diff_mode:
    support: full
    description: Shows status and policies before and after; the secret never appears.
options:
  name:
    description: The user's access key, 3 to 20 characters without spaces, commas, V(=) or V(/).
    type: str
    required: true
  secret:
    description:
      - The user's secret key, 8 to 40 characters. Required to create a user.
    type: str
  state:
    description:
      - V(present) makes sure the user exists (a new user is enabled; an existing one keeps its status).
      - V(enabled) and V(disabled) also set the status. V(absent) removes the user.
    type: str
    choices: [present, absent, enabled, disabled]
    default: present
  update_password:
    description:
      - V(always) sets the secret whenever it differs from O(secret); V(on_create) sets it only for a new user.
      - The secret of a user that is disabled and stays disabled cannot be checked; it is left alone, with a warning.
    type: str
    choices: [always, on_create]
    default: always
  policies:
    description:
      - The exact list of canned policies attached to the user; others are detached. V([]) detaches all.
      - Not given, the attached policies are left as they are.
    type: list
    elements: str
"""

EXAMPLES = r"""
- name: The tracking service's own user, limited to its bucket
  mlops.platform.minio_user:
    endpoint_url: https://minio.example.com:9000
    access_key: "{{ minio_root_user }}"
    secret_key: "{{ minio_root_password }}"
    name: mlflow-team-a
    secret: "{{ team_a_minio_secret }}"
    policies: [mlflow-team-a-rw]
  no_log: true
"""

RETURN = r"""
actions:
  description: What the module did, or would do in check mode, in order.
  returned: always
  type: list
  elements: str
  sample: ["create user", "attach policies mlflow-team-a-rw"]
user:
  description: The user after the run (what it would be, in check mode); no secret.
  returned: always
  type: dict
  sample: {"name": "mlflow-team-a", "exists": true, "status": "enabled", "policies": ["mlflow-team-a-rw"]}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mlops.platform.plugins.module_utils.object_storage import (
    ObjectStorageError,
    argument_spec,
    connect,
)


def read_user(client, name):
    info = client.admin_json("read user %s" % name, client.admin.user_info, name)
    if info is None:
        return {"name": name, "exists": False}
    policies = [p for p in (info.get("policyName") or "").split(",") if p]
    return {"name": name, "exists": True, "status": info.get("status", "enabled"), "policies": sorted(policies)}


def secret_matches(client, params):
    """True, False, or None when the server cannot tell (a disabled user)."""
    user = client.as_user(params["name"], params["secret"], params)
    try:
        return user.sign_in()
    except ObjectStorageError as exc:
        if exc.code == "SignatureDoesNotMatch":
            return False
        if exc.code == "InvalidAccessKeyId":
            return None
        raise


def plan(client, params, current, warnings):
    name, state = params["name"], params["state"]
    if state == "absent":
        return (["remove user"] if current["exists"] else []), {"name": name, "exists": False}
    actions = []
    desired = dict(current, exists=True)
    if not current["exists"]:
        if not params["secret"]:
            raise ObjectStorageError("secret is required to create user %s" % name)
        actions.append("create user")
        desired.update(status="enabled", policies=[])
    want_status = {"enabled": "enabled", "disabled": "disabled"}.get(state, desired["status"])
    if current["exists"] and params["secret"] and params["update_password"] == "always":
        matches = secret_matches(client, params)
        if matches is None and want_status == "disabled":
            warnings.append("user %s is disabled, so its secret cannot be checked; it was left as it is" % name)
        elif not matches:
            actions.append("set secret")
            # The server enables a user whose secret it sets.
            desired["status"] = "enabled"
    # MinIO changes the policies of enabled users only: enable first, disable last.
    status_action = None
    if desired["status"] != want_status:
        status_action = "enable user" if want_status == "enabled" else "disable user"
    if status_action == "enable user":
        actions.append(status_action)
    if params["policies"] is not None:
        want = sorted(set(params["policies"]))
        attach = [p for p in want if p not in desired["policies"]]
        detach = [p for p in desired["policies"] if p not in want]
        if (attach or detach) and desired["status"] == "disabled" and want_status == "disabled":
            raise ObjectStorageError("MinIO does not change the policies of a disabled user: set state: enabled "
                                     "for user %s, or leave its policies as they are" % name)
        if attach:
            actions.append("attach policies " + ",".join(attach))
        if detach:
            actions.append("detach policies " + ",".join(detach))
        desired["policies"] = want
    if status_action == "disable user":
        actions.append(status_action)
    desired["status"] = want_status
    return actions, desired


def apply(client, params, current, actions):
    name = params["name"]
    for action in actions:
        if action == "remove user":
            client.call("remove user %s" % name, client.admin.user_remove, name)
        elif action in ("create user", "set secret"):
            client.call("%s %s" % (action, name), client.admin.user_add, name, params["secret"])
        elif action == "enable user":
            client.call("enable user %s" % name, client.admin.user_enable, name)
        elif action == "disable user":
            client.call("disable user %s" % name, client.admin.user_disable, name)
        elif action.startswith("attach policies "):
            policies = action.split(" ", 2)[2].split(",")
            client.call("attach %s to %s" % (policies, name), client.admin.attach_policy, policies, user=name)
        elif action.startswith("detach policies "):
            policies = action.split(" ", 2)[2].split(",")
            client.call("detach %s from %s" % (policies, name), client.admin.detach_policy, policies, user=name)


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(
            name=dict(type="str", required=True),
            secret=dict(type="str", no_log=True),
            state=dict(type="str", default="present", choices=["present", "absent", "enabled", "disabled"]),
            update_password=dict(type="str", default="always", choices=["always", "on_create"], no_log=False),
            policies=dict(type="list", elements="str"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if not 3 <= len(params["name"]) <= 20 or any(c in params["name"] for c in " ,=/"):
        module.fail_json(msg="name: user name %r must be 3 to 20 characters without spaces, commas, '=' or '/'"
                             % params["name"])
    if params["secret"] is not None and not 8 <= len(params["secret"]) <= 40:
        module.fail_json(msg="secret of user %s must be 8 to 40 characters long" % params["name"])

    client = connect(module)
    warnings = []
    try:
        current = read_user(client, params["name"])
        actions, desired = plan(client, params, current, warnings)
        if actions and not module.check_mode:
            apply(client, params, current, actions)
    except ObjectStorageError as exc:
        module.fail_json(msg=str(exc))
    for warning in warnings:
        module.warn(warning)
    module.exit_json(changed=bool(actions), actions=actions, user=desired,
                     diff=dict(before=current, after=desired))


if __name__ == "__main__":
    main()
