"""The job queue in PostgreSQL: the one place the submission API and the runner agents meet.

A job goes QUEUED -> CLAIMED (a runner took it and stages it) -> RUNNING (its command
started) -> SUCCEEDED | FAILED | CANCELLED | TIMED_OUT | LOST. A runner claims the oldest
queued job that fits what it has free (GPUs by id, CPUs, memory), skipping rows other
runners hold locked, and keeps a lease on every job it holds; when a lease runs out the
reaper (run by every agent) settles the job: a claimed job goes back to the queue (the
platform failed, not the job), a running one is LOST. A job is only ever reported
SUCCEEDED by the runner that ran it, while it still held it.
"""

import hashlib
import hmac
import importlib.resources
import json
from urllib.parse import urlsplit

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

HELD = ("CLAIMED", "RUNNING")
FINAL = ("SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT", "LOST")
WAKE_CHANNEL = "mlops_jobs"
CANCEL_CHANNEL = "mlops_jobs_cancel"
# Failures of the platform before a job's command starts, after which it is failed.
MAX_INFRA_FAILURES = 3
SPEC_FIELDS = ("repository", "commit", "command", "gpus", "cpus", "memory_mb", "timeout_s", "inputs",
               "parent_run_id", "env", "image", "retries", "experiment")
JSON_FIELDS = ("inputs", "env")


def credential_digest(secret):
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class QueueError(Exception):
    """A request the queue refuses, with a message for the user."""


def schema_sql():
    return importlib.resources.files("mlops_jobs").joinpath("schema.sql").read_text()


def migrate(conn, api_role=None, runner_role=None):
    """Create or update the schema (as the database owner) and grant each role what it needs.

    The API role submits, reads and cancels jobs (it can set no state: cancelling a queued
    job is the schema's trigger); the runner role claims, runs and settles them and
    registers runners. Neither can delete a row or change the schema.
    """
    with conn.transaction():
        conn.execute(schema_sql())
        grants = []
        if api_role:
            grants += [
                "GRANT SELECT ON jobs, runners TO {api}",
                "GRANT INSERT (service, submitted_by, copied_from, %s) ON jobs TO {api}" % ", ".join(SPEC_FIELDS),
                "GRANT UPDATE (cancel_requested) ON jobs TO {api}",
                "GRANT USAGE ON SEQUENCE jobs_id_seq TO {api}",
            ]
        if runner_role:
            grants += [
                "GRANT SELECT ON jobs TO {runner}",
                "GRANT UPDATE (status, runner, gpu_ids, lease_until, run_id, exit_code, reason, attempt, "
                "infra_failures, claimed_at, started_at, finished_at, credential_sha256) ON jobs TO {runner}",
                "GRANT SELECT, INSERT, UPDATE ON runners TO {runner}",
            ]
        roles = {key: sql.Identifier(name) for key, name in (("api", api_role), ("runner", runner_role)) if name}
        for grant in grants:
            conn.execute(sql.SQL(grant).format(**roles))


def repository_problem(repository):
    """Why a repository URL may not be queued, or None. A URL carrying a secret (an
    http(s) URL with any user part, which may be a token, or any URL with a password)
    would be shown to every user of the service by `mlops-job show`; the message never
    repeats the URL."""
    parts = urlsplit(repository.strip())
    secret = parts.password is not None or (parts.scheme in ("http", "https") and parts.username is not None)
    if secret:
        return ("a URL with credentials in it is refused (it would be stored in the queue and "
                "shown to every user of the service); give the URL without them: the runners fetch private "
                "repositories with the service's git_credentials, which the operator sets")
    return None


def validate_spec(spec):
    """The job request as the queue stores it; raises QueueError naming the field."""
    unknown = sorted(set(spec) - set(SPEC_FIELDS))
    if unknown:
        raise QueueError("unknown job fields: %s" % ", ".join(unknown))
    job = {"gpus": 0, "cpus": 1, "memory_mb": 1024, "timeout_s": None, "inputs": [], "parent_run_id": None,
           "env": {}, "image": None, "retries": 0, "experiment": "jobs"}
    job.update({k: v for k, v in spec.items() if v is not None})
    for field in ("repository", "commit", "command", "experiment"):
        if not isinstance(job.get(field), str) or not job[field].strip():
            raise QueueError("%s is required and must be a non-empty string" % field)
    problem = repository_problem(job["repository"])
    if problem:
        raise QueueError("repository: " + problem)
    for field, low in (("gpus", 0), ("cpus", 1), ("memory_mb", 1), ("retries", 0)):
        if isinstance(job[field], bool) or not isinstance(job[field], int) or job[field] < low:
            raise QueueError("%s must be an integer of at least %d, got %r" % (field, low, job[field]))
    if job["timeout_s"] is not None and (not isinstance(job["timeout_s"], int) or job["timeout_s"] < 1):
        raise QueueError("timeout_s must be a positive integer of seconds, got %r" % (job["timeout_s"],))
    if not isinstance(job["inputs"], list) or not all(isinstance(i, str) for i in job["inputs"]):
        raise QueueError("inputs must be a list of s3:// or runs:/ URIs")
    for uri in job["inputs"]:
        if not uri.startswith(("s3://", "runs:/")):
            raise QueueError("inputs: %r is neither an s3:// prefix nor a runs:/ URI" % uri)
    if not isinstance(job["env"], dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in job["env"].items()):
        raise QueueError("env must map names to string values")
    reserved = sorted(k for k in job["env"] if k.startswith("MLFLOW_") or k in (
        "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"))
    if reserved:
        raise QueueError("env: %s are set by the runner" % ", ".join(reserved))
    return job


class Queue(object):
    """One connection to the queue database; conninfo as psycopg takes it."""

    def __init__(self, conninfo, lease_seconds=60):
        self.conn = psycopg.connect(conninfo, autocommit=True, row_factory=dict_row)
        self.lease_seconds = lease_seconds

    def close(self):
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *_exc):
        self.close()

    def _one(self, query, params=()):
        return self.conn.execute(query, params).fetchone()

    # the submission side

    def submit(self, service, submitted_by, spec, copied_from=None):
        job = validate_spec(spec)
        with self.conn.transaction():
            row = self._one(
                "INSERT INTO jobs (service, submitted_by, copied_from, %s) VALUES (%%s, %%s, %%s, %s) RETURNING *"
                % (", ".join(SPEC_FIELDS), ", ".join(["%s"] * len(SPEC_FIELDS))),
                [service, submitted_by, copied_from]
                + [json.dumps(job[f]) if f in JSON_FIELDS else job[f] for f in SPEC_FIELDS])
            self.conn.execute("SELECT pg_notify(%s, %s)", (WAKE_CHANNEL, str(row["id"])))
        return row

    def get(self, job_id, service):
        row = self._one("SELECT * FROM jobs WHERE id = %s AND service = %s", (job_id, service))
        if row is None:
            raise QueueError("no job %s in tracking service %s" % (job_id, service))
        return row

    def jobs(self, service, limit=50, status=None):
        return self.conn.execute(
            "SELECT * FROM jobs WHERE service = %s AND (%s::text IS NULL OR status = %s) ORDER BY id DESC LIMIT %s",
            (service, status, status, limit)).fetchall()

    def cancel(self, job_id, service):
        """A queued job is cancelled at once (by a trigger); a held one is asked to stop and
        its runner settles it; a finished one stays as it is."""
        with self.conn.transaction():
            row = self._one("UPDATE jobs SET cancel_requested = true WHERE id = %s AND service = %s "
                            "AND status IN ('QUEUED', 'CLAIMED', 'RUNNING') RETURNING *", (job_id, service))
            if row is None:
                return self.get(job_id, service)
            if row["status"] in HELD:
                self.conn.execute("SELECT pg_notify(%s, %s)", (CANCEL_CHANNEL, str(job_id)))
            return row

    def copy(self, job_id, service, submitted_by, overrides=None):
        """A new job with the request of job_id, changed by overrides."""
        source = self.get(job_id, service)
        spec = {field: source[field] for field in SPEC_FIELDS}
        spec.update(overrides or {})
        return self.submit(service, submitted_by, spec, copied_from=job_id)

    # the runner side

    def register(self, name, gpu_ids, cpus, memory_mb, services=(), draining=None):
        return self._one(
            "INSERT INTO runners (name, gpu_ids, cpus, memory_mb, services, draining) "
            "VALUES (%s, %s, %s, %s, %s, coalesce(%s, false)) "
            "ON CONFLICT (name) DO UPDATE SET gpu_ids = excluded.gpu_ids, cpus = excluded.cpus, "
            "memory_mb = excluded.memory_mb, services = excluded.services, "
            "draining = coalesce(%s, runners.draining), started_at = now(), heartbeat_at = now() RETURNING *",
            (name, list(gpu_ids), cpus, memory_mb, list(services), draining, draining))

    def set_draining(self, name, draining=True):
        return self._one("UPDATE runners SET draining = %s WHERE name = %s RETURNING *", (draining, name))

    def held(self, runner):
        return self.conn.execute("SELECT * FROM jobs WHERE runner = %s AND status IN ('CLAIMED', 'RUNNING') "
                                 "ORDER BY id", (runner,)).fetchall()

    def free(self, runner):
        """(runner row, free GPU ids, free CPUs, free memory MB)."""
        me = self._one("SELECT * FROM runners WHERE name = %s", (runner,))
        if me is None:
            raise QueueError("runner %s is not registered" % runner)
        held = self.held(runner)
        used = {gpu for job in held for gpu in job["gpu_ids"]}
        return (me, [g for g in me["gpu_ids"] if g not in used], me["cpus"] - sum(j["cpus"] for j in held),
                me["memory_mb"] - sum(j["memory_mb"] for j in held))

    def claim(self, runner):
        """The oldest queued job that fits what runner has free, now CLAIMED by it; or None."""
        with self.conn.transaction():
            # One claim at a time per runner: its free resources cannot change underneath.
            self.conn.execute("SELECT 1 FROM runners WHERE name = %s FOR UPDATE", (runner,))
            me, gpus, cpus, memory_mb = self.free(runner)
            if me["draining"]:
                return None
            job = self._one(
                "SELECT id, gpus FROM jobs WHERE status = 'QUEUED' AND gpus <= %s AND cpus <= %s AND memory_mb <= %s "
                "AND (cardinality(%s::text[]) = 0 OR service = ANY(%s::text[])) "
                "ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
                (len(gpus), cpus, memory_mb, me["services"], me["services"]))
            if job is None:
                return None
            return self._one(
                "UPDATE jobs SET status = 'CLAIMED', runner = %s, gpu_ids = %s, claimed_at = now(), "
                "lease_until = now() + make_interval(secs => %s) WHERE id = %s RETURNING *",
                (runner, gpus[:job["gpus"]], self.lease_seconds, job["id"]))

    def set_credential(self, job_id, runner, secret):
        """Record the credential of a job runner holds and is about to start (its digest
        only); False when the job is no longer this runner's."""
        row = self._one("UPDATE jobs SET credential_sha256 = %s WHERE id = %s AND runner = %s "
                        "AND status = 'CLAIMED' RETURNING id", (credential_digest(secret), job_id, runner))
        return row is not None

    def credential_valid(self, service, job_id, secret):
        """Whether secret is the credential of job job_id of service, held by a runner now."""
        row = self._one("SELECT credential_sha256 FROM jobs WHERE id = %s AND service = %s "
                        "AND status IN ('CLAIMED', 'RUNNING') AND credential_sha256 IS NOT NULL",
                        (job_id, service))
        return row is not None and hmac.compare_digest(row["credential_sha256"], credential_digest(secret))

    def start(self, job_id, runner, run_id):
        """CLAIMED -> RUNNING; False when the job is no longer this runner's to start."""
        row = self._one("UPDATE jobs SET status = 'RUNNING', run_id = %s, started_at = now(), "
                        "lease_until = now() + make_interval(secs => %s) "
                        "WHERE id = %s AND runner = %s AND status = 'CLAIMED' AND NOT cancel_requested RETURNING id",
                        (run_id, self.lease_seconds, job_id, runner))
        return row is not None

    def renew(self, runner):
        """Extend the leases of runner's jobs and its heartbeat; the ids of those asked to cancel."""
        with self.conn.transaction():
            self.conn.execute("UPDATE runners SET heartbeat_at = now() WHERE name = %s", (runner,))
            rows = self.conn.execute(
                "UPDATE jobs SET lease_until = now() + make_interval(secs => %s) "
                "WHERE runner = %s AND status IN ('CLAIMED', 'RUNNING') RETURNING id, cancel_requested",
                (self.lease_seconds, runner)).fetchall()
        return sorted(r["id"] for r in rows if r["cancel_requested"])

    def finish(self, job_id, runner, status, exit_code=None, reason=None):
        """Settle a job runner holds; False when it no longer does (reaped meanwhile)."""
        if status not in FINAL:
            raise QueueError("%s is not a final state" % status)
        row = self._one("UPDATE jobs SET status = %s, exit_code = %s, reason = %s, finished_at = now(), "
                        "lease_until = NULL, credential_sha256 = NULL WHERE id = %s AND runner = %s AND status IN ('CLAIMED', 'RUNNING') "
                        "RETURNING id", (status, exit_code, reason, job_id, runner))
        return row is not None

    def retry(self, job_id, runner, reason, infrastructure):
        """Back to the queue: after a platform failure before the command started
        (infrastructure, up to MAX_INFRA_FAILURES) or as the job's next attempt (its retries).
        Returns the new status, or None when runner no longer holds the job."""
        with self.conn.transaction():
            row = self._one("SELECT * FROM jobs WHERE id = %s AND runner = %s AND status IN ('CLAIMED', 'RUNNING') "
                            "FOR UPDATE", (job_id, runner))
            if row is None:
                return None
            return self._settle_or_requeue(row, reason, infrastructure, "FAILED")

    def _settle_or_requeue(self, row, reason, infrastructure, final_status):
        if infrastructure and row["infra_failures"] + 1 < MAX_INFRA_FAILURES and not row["cancel_requested"]:
            changes = "infra_failures = infra_failures + 1"
        elif not infrastructure and row["attempt"] <= row["retries"] and not row["cancel_requested"]:
            changes = "attempt = attempt + 1"
        else:
            self.conn.execute("UPDATE jobs SET status = %s, reason = %s, finished_at = now(), lease_until = NULL, "
                              "credential_sha256 = NULL WHERE id = %s", (final_status, reason, row["id"]))
            return final_status
        self.conn.execute(
            "UPDATE jobs SET status = 'QUEUED', runner = NULL, gpu_ids = '{}', lease_until = NULL, run_id = NULL, "
            "claimed_at = NULL, started_at = NULL, credential_sha256 = NULL, reason = %s, " + changes
            + " WHERE id = %s", (reason, row["id"]))
        self.conn.execute("SELECT pg_notify(%s, %s)", (WAKE_CHANNEL, str(row["id"])))
        return "QUEUED"

    def reap(self):
        """Settle the jobs whose lease ran out: [(id, new status)]."""
        settled = []
        with self.conn.transaction():
            rows = self.conn.execute(
                "SELECT * FROM jobs WHERE status IN ('CLAIMED', 'RUNNING') AND lease_until < now() "
                "ORDER BY id FOR UPDATE SKIP LOCKED").fetchall()
            for row in rows:
                if row["status"] == "CLAIMED":
                    status = self._settle_or_requeue(row, "runner %s stopped renewing its lease before the job "
                                                     "started" % row["runner"], True, "LOST")
                else:
                    status = self._settle_or_requeue(row, "runner %s stopped renewing its lease while the job ran"
                                                     % row["runner"], False, "LOST")
                settled.append((row["id"], status))
        return settled

    # wake-ups

    def listen(self, *channels):
        for channel in channels or (WAKE_CHANNEL, CANCEL_CHANNEL):
            self.conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))

    def wait(self, timeout):
        """The (channel, payload) notifications that arrive within timeout seconds: at least
        one, or none when the time runs out (the caller then polls: the fallback)."""
        return [(n.channel, n.payload) for n in self.conn.notifies(timeout=timeout, stop_after=1)]
