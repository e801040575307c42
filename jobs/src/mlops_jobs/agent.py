"""The runner agent: one per runner host (mlops-runner.service), claiming jobs that fit
what the host has free, running them through an executor, and reporting each job's
output, log and end to its MLflow run and to the queue.

  mlops-runner --config /etc/mlops-runner/config.json

The configuration (JSON, root-only: it holds secrets):
  name               this runner in the queue (default: the host name)
  database           libpq connection string of the queue's runner role
  work_dir           where job directories and the environment cache live
  executor           "process" (default), "podman" or "local" (mlops_jobs.executors)
  executor_options   keyword arguments of the executor, such as {"default_image": ...}
  gpu_ids, cpus, memory_mb   the inventory; detected when left out (mlops_jobs.inventory)
  min_free_disk_mb   claim nothing while work_dir has less free (default 2048)
  lease_seconds, poll_seconds, log_upload_seconds, stop_grace_seconds
  services           {name: {uri, username, password, cert_path, git_credentials}}: the
                     tracking services it runs jobs of, as this host reaches them, and
                     the [{url, username, token}] it fetches their private repositories
                     with (executors.fetch_environment)
"""

import argparse
import concurrent.futures
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import stat
import threading
import time

import mlflow.artifacts
import psycopg
from mlflow.entities import Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mlops_jobs import inventory, runs
from mlops_jobs.executors import EXECUTORS, ExecutorError, Gone, fetch_environment
from mlops_jobs.queue import Queue

LOG = logging.getLogger("mlops-runner")
DEFAULTS = {"executor": "process", "min_free_disk_mb": 2048, "lease_seconds": 60, "poll_seconds": 5,
            "log_upload_seconds": 30, "stop_grace_seconds": 8, "work_dir": "/var/lib/mlops-runner"}
# MLflow reads the tracking credentials from the environment on every request; the agent
# serves several tracking services, so calls for one service hold this lock while its
# credentials are in the environment.
_TRACKING_ENV_LOCK = threading.Lock()


@contextlib.contextmanager
def tracking(service):
    """An MlflowClient for service, with its credentials in the environment meanwhile."""
    with _TRACKING_ENV_LOCK, runs.mlflow_environment(
            {name: service.get(key) for key, name in runs.TRACKING_ENV.items()}):
        yield MlflowClient(tracking_uri=service["uri"])


class InputError(Exception):
    """An input of the job cannot be staged because of the job's request: the job fails."""


def input_name(uri, taken):
    """inputs/<last part of the URI>, unique within the job."""
    name = uri.rstrip("/").rsplit("/", 1)[-1].replace(":", "") or "input"
    while name in taken or name == "parent":
        name = "%s-%d" % (name, len(taken))
    taken.add(name)
    return name


def read_only(path):
    if not os.path.isdir(path):
        os.chmod(path, 0o444)
        return
    for root, dirs, files in os.walk(path):
        for name in files:
            os.chmod(os.path.join(root, name), 0o444)
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o555)
    os.chmod(path, 0o555)


def stage_inputs(row, service, inputs_dir):
    """Download the job's inputs and its parent run's artifacts, read-only, through the
    tracking service's artifact proxy: runners hold no object storage keys. An s3://
    input must be in the service's own bucket (the proxy serves that bucket's root)."""
    bucket = service.get("bucket") or "mlflow-" + row["service"]
    sources = []
    for uri in row["inputs"]:
        if uri.startswith("s3://"):
            name, _sep, key = uri[len("s3://"):].partition("/")
            if name != bucket:
                raise InputError("input %s is not in the tracking service's bucket %s" % (uri, bucket))
            sources.append((uri, dict(artifact_uri="mlflow-artifacts:/" + key)))
        else:
            sources.append((uri, dict(artifact_uri=uri)))
    taken = set()
    targets = [(uri, kwargs, os.path.join(inputs_dir, input_name(uri, taken))) for uri, kwargs in sources]
    if row["parent_run_id"]:
        targets.append(("the artifacts of parent run %s" % row["parent_run_id"],
                        dict(run_id=row["parent_run_id"], artifact_path=""), os.path.join(inputs_dir, "parent")))
    for what, kwargs, target in targets:
        staging = target + ".staging"
        os.makedirs(staging)
        try:
            mlflow.artifacts.download_artifacts(dst_path=staging, tracking_uri=service["uri"], **kwargs)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "PERMISSION_DENIED"):
                raise InputError("cannot stage %s: %s" % (what, exc.message))
            raise
        found = os.listdir(staging)
        if not found:
            raise InputError("cannot stage %s: nothing there" % what)
        # A runs:/ URI arrives as its last path part inside the staging directory, a
        # prefix or a whole run as its contents: either way the input ends up at target.
        if found == [os.path.basename(target)] and "run_id" not in kwargs and "runs:/" in what:
            os.rename(os.path.join(staging, found[0]), target)
            os.rmdir(staging)
        else:
            os.rename(staging, target)
        read_only(target)


class Job(object):
    """A job this agent holds, and what it knows of it."""

    def __init__(self, row, workdir):
        self.row = row
        self.id = row["id"]
        self.workdir = workdir
        self.log_path = os.path.join(workdir, "job.log")
        self.handle = None
        self.preparing = None
        self.started = None
        self.cancelled = False
        self.timed_out = False
        self.stop_sent = None
        self.last_upload = 0.0
        self.credential = None

    def save_handle(self, handle):
        self.handle = handle
        with open(os.path.join(self.workdir, "handle"), "w") as out:
            out.write(handle)

    def saved_handle(self):
        try:
            with open(os.path.join(self.workdir, "handle")) as saved:
                return saved.read().strip() or None
        except OSError:
            return None


def drop_links(top):
    """Remove what in a finished job's outputs is not a plain file or directory. The
    agent uploads as root: a link the job left there (to the runner's configuration,
    to another job's files) would otherwise upload what it points at."""
    for root, dirs, files in os.walk(top):
        for name in dirs + files:
            path = os.path.join(root, name)
            mode = os.lstat(path).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                LOG.warning("%s: not a plain file, left out of the outputs", path)
                os.unlink(path)


class Agent(object):
    def __init__(self, config, queue=None, executor=None):
        self.config = dict(DEFAULTS, **config)
        self.name = self.config.get("name") or socket.gethostname()
        self.services = self.config.get("services") or {}
        self.queue = queue or Queue(self.config["database"], lease_seconds=self.config["lease_seconds"])
        work_dir = self.config["work_dir"]
        self.jobs_dir = os.path.join(work_dir, "jobs")
        # Searchable, not listable: no job lists the others' directories (a process job
        # sees none of it, a podman job only its own, mounted).
        os.makedirs(self.jobs_dir, mode=0o711, exist_ok=True)
        os.chmod(self.jobs_dir, 0o711)
        self.executor = executor or EXECUTORS[self.config["executor"]](os.path.join(work_dir, "cache"),
                                                                       **self.config.get("executor_options", {}))
        self.jobs = {}
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="prepare")
        self.stopping = False
        self.last_reap = 0.0

    # start-up

    def register(self):
        found = inventory.host_inventory(self.config.get("gpu_ids"), self.config.get("cpus"),
                                         self.config.get("memory_mb"))
        self.queue.register(self.name, found["gpu_ids"], found["cpus"], found["memory_mb"], sorted(self.services))
        LOG.info("runner %s: %d GPUs %s, %d CPUs, %d MB, services %s", self.name, len(found["gpu_ids"]),
                 found["gpu_ids"], found["cpus"], found["memory_mb"], sorted(self.services))
        return found

    def reconcile(self):
        """Jobs the queue says this runner holds: watch on those still running, settle the rest."""
        for row in self.queue.held(self.name):
            job = Job(row, os.path.join(self.jobs_dir, str(row["id"])))
            handle = job.saved_handle() if os.path.isdir(job.workdir) else None
            if row["status"] == "RUNNING" and handle:
                try:
                    code = self.executor.poll(handle)
                except Gone:
                    code = "gone"
                if code is None:
                    job.handle, job.started = handle, time.monotonic()
                    self.jobs[job.id] = job
                    LOG.info("job %d: still running (%s), watching it again", job.id, handle)
                    continue
                if code != "gone":
                    job.handle = handle
                    self.jobs[job.id] = job
                    self.finish(job, code)
                    continue
            if row["status"] == "CLAIMED":
                self.queue.retry(job.id, self.name, "runner %s restarted while staging the job" % self.name, True)
                LOG.info("job %d: back to the queue (it had not started)", job.id)
            else:
                self.jobs[job.id] = job
                self.finish(job, None, lost=True)

    # the loop

    def free_disk_mb(self):
        return shutil.disk_usage(self.jobs_dir).free // (1024 * 1024)

    def claim(self):
        while not self.stopping:
            if self.free_disk_mb() < self.config["min_free_disk_mb"]:
                LOG.warning("claiming nothing: %d MB free in %s, below min_free_disk_mb", self.free_disk_mb(),
                            self.jobs_dir)
                return
            row = self.queue.claim(self.name)
            if row is None:
                return
            service = self.services.get(row["service"])
            workdir = os.path.join(self.jobs_dir, str(row["id"]))
            shutil.rmtree(workdir, ignore_errors=True)
            for sub in ("", "outputs", "inputs"):
                os.makedirs(os.path.join(workdir, sub), mode=0o755, exist_ok=True)
            job = Job(row, workdir)
            self.jobs[job.id] = job
            LOG.info("job %d claimed: %s@%s, %d GPUs %s", job.id, row["repository"], row["commit"][:12], row["gpus"],
                     row["gpu_ids"])
            if service is None:
                self.queue.retry(job.id, self.name, "runner %s has no credentials for tracking service %s"
                                 % (self.name, row["service"]), True)
                del self.jobs[job.id]
                continue
            job.preparing = self.pool.submit(self.prepare, job, service)

    def prepare(self, job, service):
        """In a worker thread: the job's run, checkout and environment."""
        run_id = job.row["run_id"]
        if not run_id:
            with tracking(service) as client:
                experiment = client.get_experiment_by_name(job.row["experiment"])
                experiment_id = (experiment.experiment_id if experiment
                                 else client.create_experiment(job.row["experiment"]))
                run = client.create_run(experiment_id, tags={runs.JOB_TAG: str(job.id), runs.RUNNER_TAG: self.name,
                                                             "mlflow.user": job.row["submitted_by"]},
                                        run_name="job-%d" % job.id)
                run_id = run.info.run_id
                client.log_batch(run_id, params=[Param("job." + key, str(job.row[key])) for key in (
                    "repository", "commit", "command", "gpus", "cpus", "memory_mb")])
        job.row["run_id"] = run_id
        with tracking(service):
            stage_inputs(job.row, service, os.path.join(job.workdir, "inputs"))
        prepared = self.executor.prepare(job.row, job.workdir,
                                         fetch_environment(service.get("git_credentials"), job.row["repository"]))
        # The command logs with a credential of its own, never the runner's: user
        # job-<id> and a secret the gateway accepts only while the queue says this
        # runner holds the job (start_prepared records it; any end clears it).
        job.credential = secrets.token_urlsafe(32)
        own = dict(service, username="job-%d" % job.id, password=job.credential)
        env = runs.job_environment(job.row, own, run_id, self.executor.paths(job.id, job.workdir),
                                   job.row["gpu_ids"])
        return run_id, prepared, env

    def start_prepared(self, job):
        try:
            run_id, prepared, env = job.preparing.result()
        except InputError as exc:
            job.preparing = None
            LOG.error("job %d: %s", job.id, exc)
            self.finish(job, None, failure=str(exc))
            return
        except (ExecutorError, OSError) as exc:
            LOG.error("job %d: staging failed: %s", job.id, exc)
            self.queue.retry(job.id, self.name, "staging failed on %s: %s" % (self.name, str(exc)[-500:]), True)
            del self.jobs[job.id]
            return
        except Exception as exc:  # pylint: disable=broad-exception-caught
            # The tracking service refused or was unreachable: a platform failure as well.
            LOG.error("job %d: could not create its run: %s", job.id, exc)
            self.queue.retry(job.id, self.name, "could not create the job's run: %s" % str(exc)[-500:], True)
            del self.jobs[job.id]
            return
        job.preparing = None
        job.row["run_id"] = run_id
        if not self.queue.set_credential(job.id, self.name, job.credential):
            LOG.info("job %d: no longer held by this runner (reaped while staged), not started", job.id)
            del self.jobs[job.id]
            shutil.rmtree(job.workdir, ignore_errors=True)
            self.executor.discard(job.id)
            return
        try:
            handle = self.executor.start(job.row, job.workdir, env, job.log_path, prepared)
        except (ExecutorError, OSError) as exc:
            # systemd or podman refused to start it (a host without podman's subordinate
            # ids, say): the platform's failure, not the job's; the agent goes on.
            LOG.error("job %d: could not start: %s", job.id, exc)
            self.queue.retry(job.id, self.name, "could not start on %s: %s" % (self.name, str(exc)[-500:]), True)
            del self.jobs[job.id]
            shutil.rmtree(job.workdir, ignore_errors=True)
            self.executor.discard(job.id)
            return
        job.save_handle(handle)
        job.started = time.monotonic()
        if not self.queue.start(job.id, self.name, run_id):
            # Cancelled (or reaped) while it was staged.
            job.cancelled = True
            self.executor.stop(handle)
        LOG.info("job %d running as %s, run %s", job.id, handle, run_id)

    def watch(self, cancel_ids):
        now = time.monotonic()
        for job in list(self.jobs.values()):
            if job.preparing is not None:
                if job.id in cancel_ids:
                    job.cancelled = True
                if job.preparing.done():
                    self.start_prepared(job)
                continue
            if job.handle is None:
                continue
            timeout = job.row["timeout_s"]
            if job.stop_sent is None and (job.id in cancel_ids or job.cancelled):
                job.cancelled = True
                job.stop_sent = now
                self.executor.stop(job.handle)
                LOG.info("job %d: cancelled, stopping it", job.id)
            elif job.stop_sent is None and timeout and now - job.started > timeout:
                job.timed_out = True
                job.stop_sent = now
                self.executor.stop(job.handle)
                LOG.info("job %d: timeout of %d s reached, stopping it", job.id, timeout)
            elif job.stop_sent is not None and now - job.stop_sent > self.config["stop_grace_seconds"]:
                self.executor.kill(job.handle)
            try:
                code = self.executor.poll(job.handle)
            except Gone:
                self.finish(job, None, lost=True)
                continue
            if code is not None:
                self.finish(job, code)
            elif now - job.last_upload > self.config["log_upload_seconds"]:
                self.upload(job, outputs=False)

    def upload(self, job, outputs):
        """The log so far (and at the end the outputs) as artifacts of the job's run."""
        service = self.services.get(job.row["service"])
        if not job.row.get("run_id") or service is None:
            return False
        job.last_upload = time.monotonic()
        try:
            with tracking(service) as client:
                if os.path.exists(job.log_path):
                    client.log_artifact(job.row["run_id"], job.log_path, "logs")
                outputs_dir = self.executor.paths(job.id, job.workdir)["collect"]
                if outputs and os.path.isdir(outputs_dir) and not os.path.islink(outputs_dir):
                    drop_links(outputs_dir)
                    if os.listdir(outputs_dir):
                        client.log_artifacts(job.row["run_id"], outputs_dir, "outputs")
        except Exception as exc:  # pylint: disable=broad-exception-caught
            LOG.warning("job %d: upload to run %s failed: %s", job.id, job.row["run_id"], exc)
            return False
        return True

    def finish(self, job, exit_code, lost=False, failure=None):
        """Report a job's end; failure: why it failed before its command could start."""
        if failure:
            status, reason = "FAILED", failure
        else:
            status, reason = runs.outcome(exit_code, job.cancelled, job.timed_out, lost)
        uploaded = self.upload(job, outputs=True)
        settled = status
        if status in ("FAILED", "LOST") and job.row["attempt"] <= job.row["retries"]:
            settled = self.queue.retry(job.id, self.name, reason, infrastructure=False)
        elif not self.queue.finish(job.id, self.name, status, exit_code, reason):
            settled = None
        if job.row.get("run_id") and settled != "QUEUED":
            run_status, tags = runs.run_end(status, exit_code, reason, self.name)
            try:
                with tracking(self.services[job.row["service"]]) as client:
                    client.log_batch(job.row["run_id"], tags=[RunTag(key, value) for key, value in tags.items()])
                    client.set_terminated(job.row["run_id"], run_status)
            except Exception as exc:  # pylint: disable=broad-exception-caught
                LOG.warning("job %d: could not end run %s: %s", job.id, job.row["run_id"], exc)
        if job.handle:
            self.executor.cleanup(job.handle)
        # The log and outputs are in the run now; a directory whose upload failed stays
        # for the operator (and goes when the job id's next attempt is claimed here).
        if uploaded:
            shutil.rmtree(job.workdir, ignore_errors=True)
            self.executor.discard(job.id)
        LOG.info("job %d: %s (%s)%s", job.id, status, reason, "" if settled else ", already settled by the reaper")
        del self.jobs[job.id]

    def step(self):
        now = time.monotonic()
        if now - self.last_reap > self.config["lease_seconds"] / 3.0:
            self.last_reap = now
            for job_id, status in self.queue.reap():
                LOG.info("reaper: job %d -> %s", job_id, status)
        cancel_ids = set(self.queue.renew(self.name))
        self.watch(cancel_ids)
        if not self.stopping:
            self.claim()

    def pause(self):
        """How long to wait for a notification (a submission, a cancel) before the next step:
        briefly while a job is being staged (it starts on the step after), the pace of
        watching running jobs, else the polling fallback."""
        if any(job.preparing is not None for job in self.jobs.values()):
            return 0.05
        return 0.25 if self.jobs else self.config["poll_seconds"]

    def start(self):
        self.register()
        self.reconcile()
        self.queue.listen()

    def close(self):
        self.pool.shutdown()
        self.queue.close()

    def serve(self):
        signal.signal(signal.SIGTERM, self.request_stop)
        while not (self.stopping and not self.jobs):
            # Alive: one ping per turn of the loop. A loop stuck longer than the unit's
            # WatchdogSec= (runner_watchdog_seconds) is killed by systemd and restarted.
            notify_systemd(b"WATCHDOG=1")
            self.step()
            self.queue.wait(self.pause())
        self.pool.shutdown()

    def request_stop(self, *_args):
        """SIGTERM: claim nothing more, finish what runs (drain), then exit."""
        LOG.info("stopping: claiming nothing more, waiting for %d jobs", len(self.jobs))
        self.stopping = True


def started_agent(config, sleep=time.sleep):
    """An Agent of config, registered and listening, once the queue lets it start. While
    its database cannot be reached or is not ready (the platform host restarting, being
    restored or replaced), it tries again in this process after a growing pause (1 s,
    doubled each time, at most 30 s and a third of the unit's watchdog), pinging systemd
    before each try. Exiting for systemd to restart it would import MLflow again on every
    try: seconds of CPU each time, on every runner at once."""
    watchdog = int(os.environ.get("WATCHDOG_USEC") or 0) / 1e6
    longest = min(30.0, watchdog / 3) if watchdog else 30.0
    pause = min(1.0, longest)
    while True:
        notify_systemd(b"WATCHDOG=1")
        agent = None
        try:
            agent = Agent(config)
            agent.start()
            return agent
        except psycopg.Error as exc:
            if agent is not None:
                agent.close()
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            LOG.warning("the queue cannot be used yet (%s): trying again in %.0f s", reason, pause)
            sleep(pause)
            pause = min(pause * 2, longest)


def notify_systemd(message):
    """sd_notify(3): send message to systemd's notification socket, when the agent runs
    under a unit that has one (NotifyAccess=); nothing otherwise."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(path)
            sock.sendall(message)
    except OSError as exc:
        LOG.warning("could not notify systemd (%s): %s", message.decode(), exc)


def check(config):
    """What --check prints: whether the queue's database and every tracking service
    accept this runner's credentials. ([problem, ...], {part: "ok" or the error})."""
    found, problems = {}, []
    try:
        with Queue(config["database"]) as queue:
            queue.held(config.get("name") or socket.gethostname())
        found["database"] = "ok"
    except Exception as exc:  # pylint: disable=broad-exception-caught
        found["database"] = str(exc).strip()
        problems.append("the job queue's database: %s" % found["database"])
    for name, service in sorted((config.get("services") or {}).items()):
        try:
            # One try, briefly: MLflow's default retries take minutes to give up.
            with runs.mlflow_environment({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}), \
                    tracking(service) as client:
                client.search_experiments(max_results=1)
            found[name] = "ok"
        except Exception as exc:  # pylint: disable=broad-exception-caught
            found[name] = str(exc).strip().splitlines()[0][:500] if str(exc).strip() else type(exc).__name__
            problems.append("tracking service %s at %s: %s" % (name, service.get("uri"), found[name]))
    return problems, found


def main(argv=None):
    options = argparse.ArgumentParser(prog="mlops-runner", description="mlops.platform runner agent")
    options.add_argument("--config", default="/etc/mlops-runner/config.json")
    options.add_argument("--drain", action="store_true", help="set this runner to claim nothing more, and exit")
    options.add_argument("--undrain", action="store_true", help="let this runner claim jobs again, and exit")
    options.add_argument("--check", action="store_true",
                         help="check the credentials for the queue and every tracking service, print JSON, and exit")
    args = options.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with open(args.config) as handle:
        config = json.load(handle)
    if args.check:
        problems, found = check(config)
        print(json.dumps({"ok": not problems, "checked": found, "problems": problems}))
        return 1 if problems else 0
    if args.drain or args.undrain:
        queue = Queue(config["database"])
        queue.set_draining(config.get("name") or socket.gethostname(), args.drain)
        return 0
    started_agent(config).serve()
    return 0
