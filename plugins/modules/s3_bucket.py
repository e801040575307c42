#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mlops.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: s3_bucket
short_description: An S3 bucket with versioning, noncurrent-version expiry and a MinIO quota
version_added: 0.1.0
author: mlops.platform maintainers (@mlops-platform)
description:
  - Creates or removes a bucket on an S3 endpoint and sets its versioning, a lifecycle rule that expires noncurrent
    versions, and (on MinIO) a hard quota.
  - Bucket, versioning and lifecycle use plain S3 calls and work against any S3 endpoint (AWS S3, Ceph RGW, MinIO);
    only O(quota) needs the MinIO admin API.
  - The bucket name is checked against the S3 naming rules before any call.
  - The lifecycle rule this module manages has the ID C(mlops-noncurrent-expiration); other rules are kept as they are.
extends_documentation_fragment:
  - mlops.platform.s3_endpoint
attributes:
  check_mode:
    support: full
    description: Reads the bucket and reports what it would change; changes nothing.
  diff_mode:
    support: full
    description: Shows the bucket's settings before and after.
options:
  name:
    description: Bucket name.
    type: str
    required: true
  state:
    description: Whether the bucket should exist.
    type: str
    choices: [present, absent]
    default: present
  create:
    description:
      - With O(state=present), make the bucket when it is missing. V(false) only checks that it exists and that the
        keys may list it, and fails naming the bucket and the endpoint when it does not (a store whose buckets someone
        else makes).
    type: bool
    default: true
  force:
    description:
      - With O(state=absent), delete every object and object version first. Without it, a bucket that is not empty
        is refused.
    type: bool
    default: false
  versioning:
    description:
      - V(true) enables versioning, V(false) suspends it (S3 cannot turn versioning off once it was on).
      - Not given, versioning is left as it is.
    type: bool
  noncurrent_version_days:
    description:
      - Expire noncurrent object versions this many days after they became noncurrent; V(0) removes the rule.
      - Not given, the rule is left as it is.
    type: int
  quota:
    description:
      - Hard quota of the bucket on MinIO, such as V(500G) or V(2T) (powers of 1024); V(0) removes the quota.
      - Not given, the quota is left as it is. Needs an administrator's keys and a MinIO endpoint.
    type: str
"""

EXAMPLES = r"""
- name: Artifact bucket of a tracking service
  mlops.platform.s3_bucket:
    endpoint_url: https://minio.example.com:9000
    access_key: "{{ minio_root_user }}"
    secret_key: "{{ minio_root_password }}"
    name: mlflow-team-a
    versioning: true
    noncurrent_version_days: 30
    quota: 500G

- name: Remove a bucket with everything in it
  mlops.platform.s3_bucket:
    endpoint_url: https://minio.example.com:9000
    access_key: "{{ minio_root_user }}"
    secret_key: "{{ minio_root_password }}"
    name: mlflow-old
    state: absent
    force: true
"""

RETURN = r"""
actions:
  description: What the module did, or would do in check mode, in order.
  returned: always
  type: list
  elements: str
  sample: ["create bucket", "enable versioning", "expire noncurrent versions after 30 days"]
bucket:
  description: The bucket's settings after the run (what they would be, in check mode).
  returned: always
  type: dict
  sample: {"name": "mlflow-team-a", "exists": true, "versioning": "Enabled", "noncurrent_version_days": 30,
           "quota": 536870912000}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.formatters import human_to_bytes

from ansible_collections.mlops.platform.plugins.module_utils.object_storage import (
    HAS_MINIO,
    ObjectStorageError,
    argument_spec,
    bucket_name_problem,
    connect,
)

if HAS_MINIO:
    from minio.commonconfig import ENABLED, Filter
    from minio.deleteobjects import DeleteObject
    from minio.lifecycleconfig import LifecycleConfig, NoncurrentVersionExpiration, Rule
    from minio.versioningconfig import SUSPENDED, VersioningConfig

RULE_ID = "mlops-noncurrent-expiration"


def our_rule_days(lifecycle):
    for rule in (lifecycle.rules if lifecycle else []):
        if rule.rule_id == RULE_ID and rule.noncurrent_version_expiration:
            return rule.noncurrent_version_expiration.noncurrent_days
    return 0


def read_bucket(client, params):
    name = params["name"]
    state = {"name": name, "exists": client.call("check bucket %s" % name, client.s3.bucket_exists, name)}
    if not state["exists"]:
        return state, None
    lifecycle = None
    if params["versioning"] is not None:
        state["versioning"] = client.call("read versioning of %s" % name, client.s3.get_bucket_versioning, name).status
    if params["noncurrent_version_days"] is not None:
        lifecycle = client.call("read lifecycle of %s" % name, client.s3.get_bucket_lifecycle, name)
        state["noncurrent_version_days"] = our_rule_days(lifecycle)
    if params["quota"] is not None:
        quota = client.admin_json("read quota of %s (MinIO only)" % name, client.admin.bucket_quota_get, name)
        state["quota"] = (quota or {}).get("quota", 0)
    return state, lifecycle


def plan(current, params, quota_bytes):
    """Return (actions, desired state) for the bucket."""
    actions = []
    if params["state"] == "absent":
        if current["exists"]:
            actions.append("remove bucket")
        return actions, {"name": params["name"], "exists": False}
    desired = dict(current, exists=True)
    if not current["exists"]:
        actions.append("create bucket")
    if params["versioning"] is not None:
        want = "Enabled" if params["versioning"] else ("Suspended" if current.get("versioning") else None)
        if current.get("versioning") != want:
            actions.append("enable versioning" if params["versioning"] else "suspend versioning")
        desired["versioning"] = want
    days = params["noncurrent_version_days"]
    if days is not None:
        if current.get("noncurrent_version_days", 0) != days:
            actions.append("expire noncurrent versions after %d days" % days if days else "remove noncurrent expiry")
        desired["noncurrent_version_days"] = days
    if quota_bytes is not None:
        if current.get("quota", 0) != quota_bytes:
            actions.append("set quota to %d bytes" % quota_bytes if quota_bytes else "remove quota")
        desired["quota"] = quota_bytes
    return actions, desired


def object_versions(client, name):
    return client.s3.list_objects(name, recursive=True, include_version=True)


def empty_bucket(client, name):
    targets = [DeleteObject(o.object_name, o.version_id) for o in object_versions(client, name)]
    errors = list(client.s3.remove_objects(name, targets)) if targets else []
    if errors:
        raise ObjectStorageError("could not delete %d objects of %s, first: %s" % (len(errors), name, errors[0]))


def apply(client, params, current, lifecycle, actions, quota_bytes):
    name = params["name"]
    if params["state"] == "absent":
        if params["force"]:
            client.call("empty bucket %s" % name, empty_bucket, client, name)
        client.call("remove bucket %s" % name, client.s3.remove_bucket, name)
        return
    if "create bucket" in actions:
        client.call("create bucket %s" % name, client.s3.make_bucket, name)
    if any(a.endswith("versioning") for a in actions):
        config = VersioningConfig(ENABLED if params["versioning"] else SUSPENDED)
        client.call("set versioning of %s" % name, client.s3.set_bucket_versioning, name, config)
    if any("noncurrent" in a for a in actions):
        rules = [r for r in (lifecycle.rules if lifecycle else []) if r.rule_id != RULE_ID]
        days = params["noncurrent_version_days"]
        if days:
            rules.append(Rule(ENABLED, rule_filter=Filter(prefix=""), rule_id=RULE_ID,
                              noncurrent_version_expiration=NoncurrentVersionExpiration(days)))
        if rules:
            client.call("set lifecycle of %s" % name, client.s3.set_bucket_lifecycle, name, LifecycleConfig(rules))
        else:
            client.call("remove lifecycle of %s" % name, client.s3.delete_bucket_lifecycle, name)
    if any("quota" in a for a in actions):
        if quota_bytes:
            client.call("set quota of %s (MinIO only)" % name, client.admin.bucket_quota_set, name, quota_bytes)
        else:
            client.call("remove quota of %s (MinIO only)" % name, client.admin.bucket_quota_clear, name)


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(
            name=dict(type="str", required=True),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            create=dict(type="bool", default=True),
            force=dict(type="bool", default=False),
            versioning=dict(type="bool"),
            noncurrent_version_days=dict(type="int"),
            quota=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    problem = bucket_name_problem(params["name"])
    if problem:
        module.fail_json(msg="name: " + problem)
    if params["noncurrent_version_days"] is not None and params["noncurrent_version_days"] < 0:
        module.fail_json(msg="noncurrent_version_days must be 0 or more, got %d" % params["noncurrent_version_days"])
    quota_bytes = None
    if params["quota"] is not None:
        try:
            quota_bytes = human_to_bytes(params["quota"]) if params["quota"] not in ("0", "") else 0
        except ValueError as exc:
            module.fail_json(msg="quota must be a size such as 500G or 2T, or 0, got %r (%s)" % (params["quota"], exc))

    client = connect(module)
    try:
        current, lifecycle = read_bucket(client, params)
        if params["state"] == "absent" and current["exists"] and not params["force"]:
            first = next(iter(client.call("list %s" % params["name"], object_versions, client, params["name"])), None)
            if first is not None:
                module.fail_json(msg="bucket %s is not empty (it holds %s, for one); set force: true to delete it "
                                     "with every object and version in it" % (params["name"], first.object_name))
        if params["state"] == "present" and not current["exists"] and not params["create"]:
            module.fail_json(msg="bucket %s does not exist on %s (NoSuchBucket), and create is false: make the bucket "
                                 "there, or let this key make it" % (params["name"], params["endpoint_url"]))
        if params["state"] == "present" and current["exists"] and not params["create"]:
            # Listing proves the keys may read it (a HEAD alone says little).
            client.call("list bucket %s" % params["name"], lambda: next(iter(
                client.s3.list_objects(params["name"])), None))
        actions, desired = plan(current, params, quota_bytes)
        if actions and not module.check_mode:
            apply(client, params, current, lifecycle, actions, quota_bytes)
    except ObjectStorageError as exc:
        module.fail_json(msg=str(exc))

    module.exit_json(changed=bool(actions), actions=actions, bucket=desired,
                     diff=dict(before=current, after=desired))


if __name__ == "__main__":
    main()
