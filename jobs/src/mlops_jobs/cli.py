"""mlops-job: submit and manage training jobs of a tracking service.

Needs only what the MLflow client needs: MLFLOW_TRACKING_URI (the service's gateway
address), MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, and for a private CA
MLFLOW_TRACKING_SERVER_CERT_PATH (or MLFLOW_TRACKING_INSECURE_TLS=true).

  mlops-job submit --repo https://git.example/team/model.git --branch main --gpus 1 \\
      --memory 16G --timeout 2h --env EPOCHS=10 -- python train.py
  mlops-job list [--status RUNNING]
  mlops-job show ID
  mlops-job cancel ID
  mlops-job copy ID [--gpus 2 ...]
  mlops-job logs ID [--follow]

The words after -- are the command, each kept as typed; a single word is a shell line
as written: -- 'python prep.py && python train.py'.

MLOPS_JOBS_URL overrides where the jobs API is (default: the tracking URI's
/api/mlops/jobs); logs are read from the job's MLflow run (logs/job.log), which the
runner uploads while the job runs and when it ends.
"""

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time

import requests

from mlops_jobs.api import PREFIX
from mlops_jobs.queue import repository_problem
from mlops_jobs import runs
from mlops_jobs.runs import RUN_STATUS

SIZE_UNITS = {"": 1, "M": 1, "G": 1024, "T": 1024 * 1024}
TIME_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
COMMIT_PATTERN = re.compile(r"^[0-9a-f]{40}$")


class UsageError(Exception):
    pass


def memory_mb(text):
    """8G, 512M or 2048 (MB) -> MB."""
    match = re.match(r"^([1-9][0-9]*)([MGT]?)i?B?$", text.strip(), re.I)
    if not match:
        raise UsageError("--memory takes a size such as 512M, 16G or 2048 (MB), not %r" % text)
    return int(match.group(1)) * SIZE_UNITS[match.group(2).upper()]


def seconds(text):
    """90, 90s, 30m, 2h or 1d -> seconds."""
    match = re.match(r"^([1-9][0-9]*)([smhd]?)$", text.strip())
    if not match:
        raise UsageError("--timeout takes a duration such as 90s, 30m, 2h or 1d, not %r" % text)
    return int(match.group(1)) * TIME_UNITS[match.group(2)]


def environment(pairs):
    env = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            raise UsageError("--env takes NAME=VALUE, not %r" % pair)
        env[name] = value
    return env


def resolve_commit(repository, branch):
    """The commit a branch of repository points at now (git ls-remote)."""
    done = subprocess.run(["git", "ls-remote", "--exit-code", repository, "refs/heads/" + branch],
                          capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise UsageError("cannot resolve branch %s of %s: %s" % (branch, repository,
                                                                 done.stderr.strip() or "no such branch"))
    return done.stdout.split()[0]


def request_fields(args, submitting):
    """The job request (or the overrides of a copy) from the command line."""
    fields = {}
    if submitting:
        if not args.command:
            raise UsageError("give the command to run after --, as in: mlops-job submit ... -- python train.py")
        if not args.repo:
            raise UsageError("--repo is required: the git repository the runner clones")
        if bool(args.commit) == bool(args.branch):
            raise UsageError("give exactly one of --commit and --branch")
    if args.commit and not COMMIT_PATTERN.match(args.commit):
        raise UsageError("--commit takes a full 40-character commit id; use --branch to name a branch")
    if args.repo:
        problem = repository_problem(args.repo)
        if problem:
            raise UsageError("--repo: " + problem)
        fields["repository"] = args.repo
    if args.branch:
        fields["commit"] = resolve_commit(args.repo or getattr(args, "source_repository", None), args.branch)
    elif args.commit:
        fields["commit"] = args.commit
    if args.command:
        fields["command"] = shell_command(args.command)
    for name in ("gpus", "cpus", "retries", "image", "experiment"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    if args.parent_run:
        fields["parent_run_id"] = args.parent_run
    if args.memory:
        fields["memory_mb"] = memory_mb(args.memory)
    if args.timeout:
        fields["timeout_s"] = seconds(args.timeout)
    if args.input:
        fields["inputs"] = args.input
    if args.env:
        fields["env"] = environment(args.env)
    return fields


def shell_command(words):
    """The job's command line (the runner hands it to /bin/sh -c). One word is a shell
    line as written (pipes, &&, variables: quote it once); several are quoted word by
    word, so that `-- python train.py --name "two words"` arrives as typed."""
    return words[0] if len(words) == 1 else shlex.join(words)


class Client(object):
    def __init__(self, environ):
        uri = environ.get("MLFLOW_TRACKING_URI", "")
        if not uri.startswith(("http://", "https://")):
            raise UsageError("MLFLOW_TRACKING_URI must be the http(s):// address of the tracking service")
        self.base = environ.get("MLOPS_JOBS_URL") or uri.rstrip("/") + PREFIX
        self.environ = environ
        self.session = requests.Session()
        user, password = environ.get("MLFLOW_TRACKING_USERNAME"), environ.get("MLFLOW_TRACKING_PASSWORD")
        if user and password:
            self.session.auth = (user, password)
        # Given with every request: a session-wide verify loses to REQUESTS_CA_BUNDLE
        # from the environment, which many hosts set to the system's bundle.
        self.verify = True
        if environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
            self.verify = False
        elif environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
            self.verify = environ["MLFLOW_TRACKING_SERVER_CERT_PATH"]

    def call(self, method, path="", **kwargs):
        answer = self.session.request(method, self.base + path, timeout=60, verify=self.verify, **kwargs)
        try:
            data = answer.json()
        except ValueError:
            data = {"error": answer.text.strip()[:500]}
        if answer.status_code >= 400:
            raise UsageError("%s %s: HTTP %d: %s" % (method, self.base + path, answer.status_code,
                                                     data.get("error") or data))
        return data


def log_text(client, run_id):
    """The job's log as its run holds it now, or None before the first upload."""
    import mlflow.artifacts  # pylint: disable=import-outside-toplevel
    from mlflow.exceptions import MlflowException  # pylint: disable=import-outside-toplevel

    with runs.mlflow_environment({key: value for key, value in client.environ.items() if key.startswith("MLFLOW_")}):
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="logs/job.log", dst_path=tmp)
            except MlflowException:
                return None
            with open(path, encoding="utf-8", errors="replace") as log:
                return log.read()


def show_log(client, job_id, out, follow, interval):
    """Print the job's log; with follow, what is added until the job ends. The job."""
    printed = 0
    while True:
        job = client.call("GET", "/%d" % job_id)
        final = job["status"] in RUN_STATUS
        text = log_text(client, job["run_id"]) if job["run_id"] else None
        if text:
            out.write(text[printed:])
            out.flush()
            printed = len(text)
        if final or not follow:
            return job
        time.sleep(interval)


def parser():
    top = argparse.ArgumentParser(prog="mlops-job", description=__doc__.split("\n\n", maxsplit=1)[0])
    commands = top.add_subparsers(dest="action", required=True)

    def request_options(sub):
        sub.add_argument("--repo", help="git repository URL the runner clones")
        sub.add_argument("--commit", help="full commit id")
        sub.add_argument("--branch", help="branch, resolved to its commit now")
        sub.add_argument("--gpus", type=int)
        sub.add_argument("--cpus", type=int)
        sub.add_argument("--memory", help="such as 16G")
        sub.add_argument("--timeout", help="such as 2h")
        sub.add_argument("--input", action="append", help="s3:// prefix or runs:/ URI, staged read-only")
        sub.add_argument("--parent-run", help="run whose artifacts are staged read-only")
        sub.add_argument("--env", action="append", help="NAME=VALUE for the job")
        sub.add_argument("--image", help="container image (podman executor)")
        sub.add_argument("--retries", type=int, help="attempts after a failure (default 0)")
        sub.add_argument("--experiment", help="MLflow experiment of the job's run (default jobs)")

    request_options(commands.add_parser("submit", help="queue a job: options, then -- and the command"))
    listing = commands.add_parser("list", help="jobs of the service, newest first")
    listing.add_argument("--status")
    listing.add_argument("--limit", type=int, default=50)
    for name in ("show", "cancel"):
        commands.add_parser(name).add_argument("job_id", type=int)
    logs = commands.add_parser("logs", help="the job's log so far; --follow: until it ends")
    logs.add_argument("job_id", type=int)
    logs.add_argument("--follow", "-f", action="store_true")
    logs.add_argument("--interval", type=float, default=5.0, help="seconds between looks (default 5)")
    copy = commands.add_parser("copy", help="queue a job with the request of another, changed by the options")
    copy.add_argument("job_id", type=int)
    request_options(copy)
    return top


def main(argv=None, environ=None, out=sys.stdout):
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after the first -- is the job's command, options and all.
    command = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser().parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    args.command = command
    try:
        client = Client(os.environ if environ is None else environ)
        if args.action == "submit":
            result = client.call("POST", json=request_fields(args, submitting=True))
        elif args.action == "list":
            result = client.call("GET", params={"status": args.status, "limit": args.limit})
        elif args.action == "show":
            result = client.call("GET", "/%d" % args.job_id)
        elif args.action == "cancel":
            result = client.call("POST", "/%d/cancel" % args.job_id)
        elif args.action == "logs":
            job = show_log(client, args.job_id, out, args.follow, args.interval)
            print("mlops-job: job %d %s" % (job["id"], job["status"]), file=sys.stderr)
            return 0
        else:
            source = client.call("GET", "/%d" % args.job_id)
            args.source_repository = source["repository"]
            result = client.call("POST", "/%d/copy" % args.job_id, json=request_fields(args, submitting=False))
    except (UsageError, requests.RequestException) as exc:
        print("mlops-job: %s" % exc, file=sys.stderr)
        return 2
    json.dump(result, out, indent=2, sort_keys=True)
    out.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
