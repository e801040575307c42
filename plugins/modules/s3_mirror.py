#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mlops.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: s3_mirror
short_description: Copy the objects of a bucket into a directory of the host, or back
version_added: 0.1.0
author: mlops.platform maintainers (@mlops-platform)
description:
  - With O(direction=to_path), copies every current object of O(bucket) into O(path) on the host, one file per
    object key (a key C(a/b/c) becomes C(path/a/b/c)). A file that already has the object's size and modification
    time is left alone, so a nightly run copies only what is new or changed.
  - With O(direction=to_bucket), uploads every file under O(path) to O(bucket) under its relative path as key. An
    object that already has the file's size and checksum (single-part uploads) is left alone.
  - Nothing is ever deleted, on either side; a backup made from a bucket keeps objects that were deleted from the
    bucket since.
  - Only current object versions are copied; noncurrent versions of a versioned bucket are not.
  - Keys that cannot be a relative file path (an empty part, C(.) or C(..)) fail the module before anything is
    copied.
extends_documentation_fragment:
  - mlops.platform.s3_endpoint
attributes:
  check_mode:
    support: full
    description: Lists what it would copy; copies nothing.
  diff_mode:
    support: none
    description: The result counts what was copied; there is no diff.
options:
  bucket:
    description: The bucket.
    type: str
    required: true
  path:
    description:
      - Directory on the host. With O(direction=to_path) it is created (0700) when missing; files are written 0600.
    type: path
    required: true
  direction:
    description: V(to_path) copies the bucket into O(path), V(to_bucket) copies O(path) into the bucket.
    type: str
    choices: [to_path, to_bucket]
    default: to_path
"""

EXAMPLES = r"""
- name: Mirror a tracking service's artifacts to the backup volume
  mlops.platform.s3_mirror:
    endpoint_url: http://127.0.0.1:9000
    access_key: "{{ minio_root_user }}"
    secret_key: "{{ minio_root_password }}"
    bucket: mlflow-team-a
    path: /var/backups/mlops/team-a/bucket

- name: Put them back into the (new) bucket
  mlops.platform.s3_mirror:
    endpoint_url: http://127.0.0.1:9000
    access_key: "{{ minio_root_user }}"
    secret_key: "{{ minio_root_password }}"
    bucket: mlflow-team-a
    path: /var/backups/mlops/team-a/bucket
    direction: to_bucket
"""

RETURN = r"""
objects:
  description: How many objects (to_path) or files (to_bucket) the source holds.
  returned: always
  type: int
  sample: 1204
copied:
  description: How many were copied (would be, in check mode).
  returned: always
  type: int
  sample: 12
bytes_copied:
  description: Their size in bytes.
  returned: always
  type: int
  sample: 73400320
sample_keys:
  description: Up to 20 of the keys copied, for the log.
  returned: always
  type: list
  elements: str
"""

import hashlib
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mlops.platform.plugins.module_utils.object_storage import (
    ObjectStorageError,
    argument_spec,
    bucket_name_problem,
    connect,
)

SAMPLE_SIZE = 20


def key_parts(key):
    """The path parts of an object key; None when the key cannot be a relative path."""
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts) or "\0" in key:
        return None
    return parts


def file_md5(path):
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def local_files(root):
    """(key, path) of every regular file under root, in key order; temporary files are skipped."""
    found = []
    for directory, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for filename in filenames:
            if filename.endswith(".part.minio"):
                continue
            path = os.path.join(directory, filename)
            if os.path.isfile(path) and not os.path.islink(path):
                found.append((os.path.relpath(path, root).replace(os.sep, "/"), path))
    return sorted(found)


def to_path(module, client, bucket, root):
    objects = [obj for obj in client.call("list bucket %s" % bucket, lambda: list(
        client.s3.list_objects(bucket, recursive=True))) if not obj.is_dir]
    bad = [obj.object_name for obj in objects if key_parts(obj.object_name) is None]
    if bad:
        module.fail_json(msg="bucket %s has keys that cannot be file paths (empty part, '.' or '..'): %s"
                         % (bucket, ", ".join(repr(k) for k in bad[:5])))
    todo = []
    for obj in objects:
        path = os.path.join(root, *key_parts(obj.object_name))
        mtime = int(obj.last_modified.timestamp())
        try:
            stat = os.stat(path)
        except OSError:
            stat = None
        if stat is None or stat.st_size != obj.size or int(stat.st_mtime) != mtime:
            todo.append((obj, path, mtime))
    if not module.check_mode:
        if not os.path.isdir(root):
            os.makedirs(root, 0o700)
        for obj, path, mtime in todo:
            parent = os.path.dirname(path)
            if not os.path.isdir(parent):
                os.makedirs(parent, 0o700)
            # fget_object writes beside the target and renames: a failed copy leaves the old file.
            client.call("download s3://%s/%s" % (bucket, obj.object_name), client.s3.fget_object,
                        bucket, obj.object_name, path)
            os.chmod(path, 0o600)
            os.utime(path, (mtime, mtime))
    return len(objects), [(obj.object_name, obj.size) for obj, _path, _mtime in todo]


def to_bucket(module, client, bucket, root):
    if not os.path.isdir(root):
        module.fail_json(msg="path %s is not a directory: nothing to copy into bucket %s" % (root, bucket))
    files = local_files(root)
    present = dict((obj.object_name, obj) for obj in client.call("list bucket %s" % bucket, lambda: list(
        client.s3.list_objects(bucket, recursive=True))) if not obj.is_dir)
    todo = []
    for key, path in files:
        size = os.path.getsize(path)
        obj = present.get(key)
        etag = (obj.etag or "").strip('"') if obj else ""
        # A multipart upload's ETag is not the content's MD5 ("<md5>-<parts>"): size decides there.
        same = obj is not None and obj.size == size and ("-" in etag or etag == file_md5(path))
        if not same:
            todo.append((key, path, size))
    if not module.check_mode:
        for key, path, _size in todo:
            client.call("upload %s to s3://%s/%s" % (path, bucket, key), client.s3.fput_object, bucket, key, path)
    return len(files), [(key, size) for key, _path, size in todo]


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(
            bucket=dict(type="str", required=True),
            path=dict(type="path", required=True),
            direction=dict(type="str", choices=["to_path", "to_bucket"], default="to_path"),
        ),
        supports_check_mode=True,
    )
    bucket, root = module.params["bucket"], module.params["path"]
    problem = bucket_name_problem(bucket)
    if problem:
        module.fail_json(msg=problem)
    client = connect(module)
    try:
        if not client.call("look up bucket %s" % bucket, client.s3.bucket_exists, bucket):
            module.fail_json(msg="bucket %s does not exist on %s" % (bucket, client.url))
        copy = to_path if module.params["direction"] == "to_path" else to_bucket
        total, copied = copy(module, client, bucket, root)
    except ObjectStorageError as exc:
        module.fail_json(msg=str(exc))
    except (IOError, OSError) as exc:
        module.fail_json(msg="%s: %s" % (root, exc))
    module.exit_json(
        changed=bool(copied), objects=total, copied=len(copied), bytes_copied=sum(size for _key, size in copied),
        sample_keys=[key for key, _size in copied[:SAMPLE_SIZE]],
    )


if __name__ == "__main__":
    main()
