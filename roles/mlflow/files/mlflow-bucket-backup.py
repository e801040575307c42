# Managed by mlops.platform.mlflow; local edits are overwritten.
"""Back up one tracking service's bucket into a directory of this host, and prove the copy.

Run by mlflow-bucket-backup@<service>.service with the service's own virtual environment
and environment file: its bucket (MLFLOW_ARTIFACTS_DESTINATION), its own S3 keys, the
store's endpoint and CA; nothing secret is on the command line. In --dir:

1. bucket/ gets every current object of the bucket, one file per key: a file that is
   missing, or whose size or modification time differs from its object's, is downloaded
   beside itself and renamed when whole. This is the rule of playbooks/backup.yml's mirror
   (mlops.platform.s3_mirror), which writes the same directory, so each carries on from
   the other and playbooks/restore.yml restores from either;
2. with --verify every file is read again and compared with its object: its MD5 must be
   the object's ETag (for a multipart upload, the MD5 of its parts' MD5s, at the part
   size the ETag's part count allows among the usual ones). A file that differs is named
   in the errors and downloaded again; one whose ETag cannot be reproduced (another part
   size, an encrypting store) is checked by size only and counted as such;
3. files of objects deleted from the bucket stay: a backup keeps what users deleted.
   With --keep-days, those deleted longer ago than that leave the backup.

Every run ends by replacing bucket-status.json beside bucket/: its result (ok or failed,
with the errors), when it finished, when the last good run finished, the counts, and the
keys gone from the bucket with when they went. The mlflow role reads it on every run: a
failed or stale backup is drift, which the next run (the reconcile) mends by backing up
at once. The exit status is 1 when anything failed."""

import argparse
import datetime
import hashlib
import json
import os
import re
import sys
import tempfile
from urllib.parse import urlparse

STATUS = "bucket-status.json"
MIRROR = "bucket"
MIB = 1024 * 1024
# Part sizes of the usual S3 clients (boto3 8 MiB, MLflow's multipart 10 MiB, the AWS
# minimum 5 MiB, mc 16 MiB and more), tried first when an ETag names a multipart upload.
USUAL_PART_SIZES = tuple(size * MIB for size in (8, 10, 5, 16, 64, 100, 128))
# The temporary name of a file being downloaded: s3_mirror skips such files when it
# copies the directory back into a bucket (minio-py names its own partial files so).
PARTIAL = ".part.minio"
SINGLE_ETAG = re.compile(r"^[0-9a-f]{32}$")
MULTIPART_ETAG = re.compile(r"^([0-9a-f]{32})-([0-9]+)$")
SHOWN = 20


def key_parts(key):
    """The path parts of an object key; None when the key cannot be a relative path. The
    rule of mlops.platform.s3_mirror, which writes the same mirror (this program runs
    without the collection, on the host): the two must agree."""
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts) or "\0" in key:
        return None
    return parts


def part_sizes(size, parts):
    """Part sizes that split `size` bytes into exactly `parts` parts: the usual ones first,
    then whole MiB multiples that do, at most six in all."""
    def fits(part):
        return part > 0 and -(-size // part) == parts
    found = [part for part in USUAL_PART_SIZES if fits(part)]
    if parts > 1:
        smallest = -(-size // parts)
        part = -(-smallest // MIB) * MIB
        while fits(part) and len(found) < 6:
            if part not in found:
                found.append(part)
            part += MIB
    return found[:6]


def digest_of(path, part_size=None):
    """The MD5 of a file (hex), or with part_size the ETag of its multipart upload."""
    whole, digests = hashlib.md5(), []
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(part_size or MIB)
            if not chunk:
                break
            if part_size:
                digests.append(hashlib.md5(chunk).digest())
            else:
                whole.update(chunk)
    if part_size:
        return "%s-%d" % (hashlib.md5(b"".join(digests)).hexdigest(), len(digests))
    return whole.hexdigest()


def same_content(path, etag, size):
    """True when the file is the object's content, False when it is not, None when the
    ETag cannot tell (not an MD5 the store computed in a way this program can repeat)."""
    etag = (etag or "").strip('"')
    if SINGLE_ETAG.match(etag):
        return digest_of(path) == etag
    multipart = MULTIPART_ETAG.match(etag)
    if multipart:
        for part_size in part_sizes(size, int(multipart.group(2))):
            if digest_of(path, part_size) == etag:
                return True
    return None


def retire(gone_before, listed, local, now, keep_days):
    """The keys of files whose object left the bucket, with since when (kept from the last
    run, else now), and those of them to delete: gone for more than keep_days (0: none)."""
    gone = {key: gone_before.get(key, now.isoformat()) for key in local if key not in listed}
    limit = now - datetime.timedelta(days=keep_days)
    delete = sorted(key for key, since in gone.items()
                    if keep_days and datetime.datetime.fromisoformat(since) < limit)
    for key in delete:
        del gone[key]
    return gone, delete


def local_files(root):
    """The key of every file under root, partial downloads left out."""
    found = set()
    for directory, _dirnames, filenames in os.walk(root):
        for filename in filenames:
            path = os.path.join(directory, filename)
            if not filename.endswith(PARTIAL) and os.path.isfile(path) and not os.path.islink(path):
                found.add(os.path.relpath(path, root).replace(os.sep, "/"))
    return found


def s3_client(environ):
    import boto3
    from botocore.config import Config
    # The keys, AWS_CA_BUNDLE and AWS_DEFAULTS_MODE come from the environment as boto3 reads it.
    verify = False if environ.get("MLFLOW_S3_IGNORE_TLS", "").lower() == "true" else None
    style = environ.get("MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE", "path")
    return boto3.client("s3", endpoint_url=environ.get("MLFLOW_S3_ENDPOINT_URL") or None, verify=verify,
                        config=Config(s3={"addressing_style": style}))


def download(s3, bucket, key, path, mtime):
    """The object into path, through a temporary file beside it: a failed copy leaves the
    old file. Files are 0600 (the program runs with umask 077)."""
    parent = os.path.dirname(path)
    os.makedirs(parent, mode=0o700, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=parent, prefix="." + os.path.basename(path) + ".", suffix=PARTIAL)
    try:
        with os.fdopen(handle, "wb") as stream:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"]
            for chunk in body.iter_chunks(MIB):
                stream.write(chunk)
        os.utime(temporary, (mtime, mtime))
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def remove(root, key):
    """A gone object's file, and the directories it leaves empty below root."""
    path = os.path.join(root, *key.split("/"))
    os.unlink(path)
    directory = os.path.dirname(path)
    while directory != root and not os.listdir(directory):
        os.rmdir(directory)
        directory = os.path.dirname(directory)


def back_up(s3, bucket, root, args, status, now):
    objects = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            objects[item["Key"]] = item
    bad = sorted(key for key in objects if key_parts(key) is None)
    if bad:
        status["errors"].append("keys that cannot be file paths (an empty part, '.' or '..') are not backed up: "
                                + ", ".join(repr(key) for key in bad[:SHOWN]))
    status["objects"] = len(objects)
    status["bytes"] = sum(item["Size"] for item in objects.values())
    usable = sorted(((key, item) for key, item in objects.items() if key_parts(key) is not None),
                    key=lambda pair: pair[0])
    copied = []
    for key, item in usable:
        path = os.path.join(root, *key_parts(key))
        mtime = int(item["LastModified"].timestamp())
        try:
            stat = os.stat(path)
        except OSError:
            stat = None
        if stat is None or stat.st_size != item["Size"] or int(stat.st_mtime) != mtime:
            try:
                download(s3, bucket, key, path, mtime)
                copied.append(key)
            except Exception as error:  # pylint: disable=broad-except
                status["errors"].append("%s: not copied: %s" % (key, error))
    status["copied"] = len(copied)
    status["bytes_copied"] = sum(objects[key]["Size"] for key in copied)

    status["verified"], status["size_only"], differed = 0, 0, []
    if args.verify:
        for key, item in usable:
            path = os.path.join(root, *key_parts(key))
            if not os.path.isfile(path) or os.path.getsize(path) != item["Size"]:
                continue  # not copied: its error is recorded above
            same = same_content(path, item.get("ETag"), item["Size"])
            if same is None:
                status["size_only"] += 1
            elif same:
                status["verified"] += 1
            else:
                differed.append(key)
        for key in differed:
            item = objects[key]
            try:
                download(s3, bucket, key, os.path.join(root, *key_parts(key)), int(item["LastModified"].timestamp()))
            except Exception as error:  # pylint: disable=broad-except
                status["errors"].append("%s: not copied again: %s" % (key, error))
        if differed:
            status["errors"].append(
                "%d files of the backup differed from their objects (changed on the backup storage, or the object "
                "replaced while it was copied) and were copied again: %s"
                % (len(differed), ", ".join(differed[:SHOWN])))

    status["gone"], deleted = retire(status["gone"], objects, local_files(root), now, args.keep_days)
    for key in deleted:
        remove(root, key)
    status["deleted"] = len(deleted)


def read_status(directory):
    try:
        with open(os.path.join(directory, STATUS)) as stream:
            status = json.load(stream)
        return status if isinstance(status, dict) else {}
    except (OSError, ValueError):
        return {}


def write_status(directory, status):
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".status.")
    with os.fdopen(handle, "w") as stream:
        json.dump(status, stream, indent=2, sort_keys=True)
        stream.write("\n")
    os.replace(temporary, os.path.join(directory, STATUS))


def main(argv=None, environ=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--keep-days", type=int, default=0)
    parser.add_argument("--verify", action="store_true")
    args = parser.parse_args(argv)
    environ = os.environ if environ is None else environ
    os.umask(0o077)
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    before = read_status(args.dir)
    bucket = urlparse(environ.get("MLFLOW_ARTIFACTS_DESTINATION", "")).netloc
    status = {"started": now.isoformat(), "bucket": bucket, "errors": [], "gone": before.get("gone") or {}}
    root = os.path.join(args.dir, MIRROR)
    try:
        if not bucket:
            raise RuntimeError("MLFLOW_ARTIFACTS_DESTINATION names no s3:// bucket")
        os.makedirs(root, mode=0o700, exist_ok=True)
        back_up(s3_client(environ), bucket, root, args, status, now)
    except Exception as error:  # pylint: disable=broad-except
        status["errors"].append("bucket %s at %s: %s" % (bucket, environ.get("MLFLOW_S3_ENDPOINT_URL"), error))
    finished = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()
    status["finished"] = finished
    status["result"] = "failed" if status["errors"] else "ok"
    status["last_success"] = before.get("last_success") if status["errors"] else finished
    write_status(args.dir, status)
    if not status["errors"]:
        print("backed up bucket %s: %d objects, %d copied, %d compared with their ETag, %d by size only"
              % (bucket, status["objects"], status["copied"], status["verified"], status["size_only"]))
    for line in status["errors"]:
        print("bucket backup failed: " + line, file=sys.stderr)
    return 1 if status["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
