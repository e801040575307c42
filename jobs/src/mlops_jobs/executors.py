"""Executors: how a runner starts, watches and stops a job's command.

The interface is kept narrow on purpose, so that a Slurm or Kubernetes executor fits
behind it: prepare the job's environment, start its command with an environment and a
log file, ask whether it still runs (and its exit code once it does not), stop it.
A handle is a string the agent keeps in the job's work directory, so that an agent
that restarts finds its jobs again (or learns they are gone).

`process` (the default) runs the command from the job's checkout in a virtual
environment made from the repository's requirements.txt (cached by its hash), as a
transient systemd unit with the job's CPU and memory limits and BindsTo= the agent's
unit: when the agent dies, its jobs die with it and are reported LOST, never left
running unwatched. Each job is a sandbox of its own (see ProcessExecutor): a user no
other job has, its own /proc, /tmp and /dev/shm, and no view of the runner's files but
its inputs (read-only), its environment and its own directory.

`podman` runs the command in a container of the job's image, in a user namespace of its
own (see PodmanExecutor).

`local` runs the command as a child process of the agent, from the same checkout and
cached environment, without resource limits: for development machines without systemd.
Its jobs die with the agent as well (the kernel kills them when it exits).
"""

import base64
import ctypes
import hashlib
import os
import shlex
import shutil
import signal
import subprocess

_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


class ExecutorError(Exception):
    """Starting or preparing a job failed for a reason of the platform, not of the job."""


class Gone(Exception):
    """The executor knows nothing of this handle any more."""


def run(argv, timeout=600, env=None, cwd=None):
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd, check=False)
    if done.returncode != 0:
        raise ExecutorError("%s failed (exit %d): %s" % (" ".join(shlex.quote(a) for a in argv[:3]),
                                                         done.returncode, (done.stderr or done.stdout)[-2000:]))
    return done.stdout


def fetch_environment(credentials, repository):
    """git's environment for fetching repository with the service's git credentials.

    credentials: [{url, username, token}] (the runner's configuration). The one whose url
    is the longest prefix of repository becomes an http.<url>.extraHeader given through
    GIT_CONFIG_* variables: it lives only in the fetching git's environment, never in an
    argv, the checkout's .git/config, the queue or the job's environment. git never
    prompts: a repository that needs a credential the service lacks fails at once."""
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
    chosen = None
    for credential in credentials or []:
        url = credential["url"].rstrip("/")
        if (repository == url or repository.startswith(url + "/")) and (
                chosen is None or len(url) > len(chosen["url"].rstrip("/"))):
            chosen = credential
    if chosen:
        secret = base64.b64encode(("%s:%s" % (chosen.get("username") or "git", chosen["token"])).encode()).decode()
        env.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="http.%s.extraHeader" % chosen["url"],
                   GIT_CONFIG_VALUE_0="Authorization: Basic " + secret)
    return env


def checkout(repository, commit, destination, git_env=None, timeout=900):
    """The repository at commit in destination: a shallow fetch of that one commit
    (git_env: fetch_environment's, for a private repository)."""
    os.makedirs(destination, exist_ok=True)
    run(["git", "init", "-q", destination])
    run(["git", "-C", destination, "fetch", "-q", "--depth", "1", repository, commit], timeout=timeout,
        env=git_env)
    run(["git", "-C", destination, "checkout", "-q", "--detach", "FETCH_HEAD"])
    head = run(["git", "-C", destination, "rev-parse", "HEAD"]).strip()
    if head != commit:
        raise ExecutorError("checked out %s, not the requested commit %s" % (head, commit))


def write_env_file(path, env):
    """KEY="value" lines as systemd reads them; 0600: it holds the tracking password."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        for key, value in sorted(env.items()):
            if "\n" in value:
                raise ExecutorError("the value of %s has a line break" % key)
            handle.write('%s="%s"\n' % (key, value.replace("\\", "\\\\").replace('"', '\\"')))


class CheckoutExecutor(object):
    """What process and local share: the job's checkout and its cached environment."""

    def __init__(self, cache_dir, python="python3", pip_environment=None):
        self.cache_dir = cache_dir
        self.python = python
        # Settings for pip when it installs a job's requirements, such as
        # {"PIP_INDEX_URL": ...} or {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": dir}.
        self.pip_environment = dict(pip_environment or {})

    def environment_dir(self, source):
        """A virtual environment with the checkout's requirements.txt, made once per content."""
        requirements = os.path.join(source, "requirements.txt")
        content = open(requirements, "rb").read() if os.path.exists(requirements) else b""
        venv = os.path.join(self.cache_dir, "venvs", hashlib.sha256(content).hexdigest()[:16])
        if os.path.exists(os.path.join(venv, ".complete")):
            return venv
        partial = venv + ".partial"
        shutil.rmtree(partial, ignore_errors=True)
        # System site packages: a host's PyTorch/CUDA stack is reused, not downloaded per job.
        run([self.python, "-m", "venv", "--system-site-packages", partial])
        if content:
            run([os.path.join(partial, "bin", "pip"), "install", "-q", "-r", requirements], timeout=3600,
                env=dict(os.environ, **self.pip_environment))
        shutil.rmtree(venv, ignore_errors=True)
        os.rename(partial, venv)
        open(os.path.join(venv, ".complete"), "w").close()
        return venv

    def prepare(self, job, workdir, git_env=None):
        source = os.path.join(workdir, "src")
        checkout(job["repository"], job["commit"], source, git_env)
        return {"venv": self.environment_dir(source), "source": source}

    @staticmethod
    def paths(job_id, workdir):  # pylint: disable=unused-argument
        """Where the job finds its inputs and writes its outputs (as the job sees them),
        and where the agent collects the outputs afterwards."""
        return {"inputs": os.path.join(workdir, "inputs"), "outputs": os.path.join(workdir, "outputs"),
                "collect": os.path.join(workdir, "outputs")}

    def discard(self, job_id):
        """Remove what the executor kept of a job outside its work directory."""

    @staticmethod
    def command_environment(env, prepared):
        return dict(env, PATH="%s/bin:/usr/local/bin:/usr/bin:/bin" % prepared["venv"], VIRTUAL_ENV=prepared["venv"])


class ProcessExecutor(CheckoutExecutor):
    """A job as a transient unit that systemd sandboxes:

    - DynamicUser: a user of its own, allocated by systemd for the unit's lifetime, that
      no other job has while it runs; ProtectProc=invisible shows it its own processes only,
      so no job reads another's environment (its tracking credential) or command line.
    - Its directory, StateDirectory=mlops-jobs/<id> (/var/lib/private/mlops-jobs/<id>,
      reached as /var/lib/mlops-jobs/<id>): the checkout, outputs/ and home/, prepared
      by the agent and handed to the job's user by systemd when it starts. /var/lib/private
      is root's only, so no other job lists or enters it.
    - The runner's work directory is an empty read-only tmpfs to the job but for its
      inputs and its virtual environment, bound read-only: other jobs' logs, inputs and
      the cache stay out of sight. The rest of the system is read-only
      (ProtectSystem=strict), /home is hidden, /tmp and /dev/shm are its own.
    - No capabilities, no privilege escalation, no new namespaces, kernel settings,
      modules, logs and clock out of reach.
    """

    name = "process"
    state_root = "/var/lib"
    area_name = "mlops-jobs"

    def __init__(self, cache_dir, python="python3", agent_unit="mlops-runner.service", pip_environment=None):
        super().__init__(cache_dir, python, pip_environment)
        self.agent_unit = agent_unit
        # The runner's work directory, hidden from jobs: the parent of the cache.
        self.work_dir = os.path.dirname(os.path.abspath(cache_dir))

    def area(self, job_id, private=True):
        """The job's own directory: as the agent writes it (private) or as the job sees it."""
        parts = [self.state_root] + (["private"] if private else []) + [self.area_name, str(job_id)]
        return os.path.join(*parts)

    def paths(self, job_id, workdir):
        return {"inputs": os.path.join(workdir, "inputs"),
                "outputs": os.path.join(self.area(job_id, private=False), "outputs"),
                "home": os.path.join(self.area(job_id, private=False), "home"),
                "collect": os.path.join(self.area(job_id), "outputs")}

    def discard(self, job_id):
        shutil.rmtree(self.area(job_id), ignore_errors=True)
        link = self.area(job_id, private=False)
        if os.path.islink(link):
            os.unlink(link)

    def prepare(self, job, workdir, git_env=None):
        self.discard(job["id"])
        area = self.area(job["id"])
        # systemd keeps /var/lib/private at 0700 for DynamicUser units; made here first
        # when no such unit ran yet.
        os.makedirs(os.path.join(self.state_root, "private"), mode=0o700, exist_ok=True)
        for sub in ("outputs", "home"):
            os.makedirs(os.path.join(area, sub), mode=0o700)
        source = os.path.join(area, "src")
        checkout(job["repository"], job["commit"], source, git_env)
        return {"venv": self.environment_dir(source), "source": os.path.join(self.area(job["id"], False), "src")}

    def start(self, job, workdir, env, log_path, prepared):
        unit = "mlops-job-%d" % job["id"]
        env = self.command_environment(env, prepared)
        env_file = os.path.join(workdir, "job.env")
        write_env_file(env_file, env)
        sandbox = [
            "DynamicUser=yes", "StateDirectory=%s/%d" % (self.area_name, job["id"]), "StateDirectoryMode=0700",
            "ProtectProc=invisible", "PrivateTmp=yes", "TemporaryFileSystem=/dev/shm:mode=1777",
            "TemporaryFileSystem=%s:ro" % self.work_dir,
            "BindReadOnlyPaths=%s %s" % (prepared["venv"], os.path.join(workdir, "inputs")),
            "ProtectSystem=strict", "ProtectHome=yes", "NoNewPrivileges=yes", "CapabilityBoundingSet=",
            "RestrictSUIDSGID=yes", "RestrictNamespaces=yes", "RestrictRealtime=yes", "LockPersonality=yes",
            "ProtectKernelTunables=yes", "ProtectKernelModules=yes", "ProtectKernelLogs=yes",
            "ProtectControlGroups=yes", "ProtectClock=yes", "ProtectHostname=yes",
        ]
        argv = ["systemd-run", "--quiet", "--unit", unit, "--property", "RemainAfterExit=yes",
                "--property", "EnvironmentFile=%s" % env_file,
                "--property", "WorkingDirectory=%s" % prepared["source"],
                "--property", "MemoryMax=%dM" % job["memory_mb"], "--property", "MemorySwapMax=0",
                "--property", "CPUQuota=%d%%" % (100 * job["cpus"]),
                "--property", "StandardOutput=append:%s" % log_path,
                "--property", "StandardError=append:%s" % log_path,
                "--property", "KillMode=control-group", "--property", "TimeoutStopSec=10"]
        for setting in sandbox:
            argv += ["--property", setting]
        if self.agent_unit:
            argv += ["--property", "BindsTo=%s" % self.agent_unit, "--property", "After=%s" % self.agent_unit]
        run(argv + ["--", "/bin/sh", "-c", job["command"]])
        return unit

    def _show(self, unit):
        out = run(["systemctl", "show", unit, "--property", "LoadState,ActiveState,SubState,ExecMainCode,"
                   "ExecMainStatus"])
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def poll(self, handle):
        """None while the command runs; its exit code after (a negative signal number when killed)."""
        state = self._show(handle)
        if state.get("LoadState") != "loaded" or state.get("ActiveState") in ("inactive", ""):
            raise Gone(handle)
        code, status = state.get("ExecMainCode", "0"), int(state.get("ExecMainStatus", "0") or 0)
        if code == "0" and state.get("ActiveState") in ("active", "activating", "deactivating"):
            return None
        # A job killed while the host shuts down (systemd stops the jobs' units before the
        # agent's, which they are ordered after) did not fail: the platform lost it.
        if code != "1" and host_stopping():
            raise Gone(handle)
        # ExecMainCode: 1 exited (status is the exit code), 2/3 killed/dumped (status is the signal).
        return status if code == "1" else -status

    def stop(self, handle):
        subprocess.run(["systemctl", "kill", "--signal", "SIGTERM", handle], capture_output=True, check=False)

    def kill(self, handle):
        subprocess.run(["systemctl", "kill", "--signal", "SIGKILL", handle], capture_output=True, check=False)

    def cleanup(self, handle):
        subprocess.run(["systemctl", "stop", handle], capture_output=True, check=False)
        subprocess.run(["systemctl", "reset-failed", handle], capture_output=True, check=False)


def host_stopping():
    """Whether systemd is shutting the host down."""
    done = subprocess.run(["systemctl", "is-system-running"], capture_output=True, text=True, check=False)
    return done.stdout.strip() == "stopping"


def _die_with_parent():
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class LocalExecutor(CheckoutExecutor):
    name = "local"

    def __init__(self, cache_dir, python="python3", pip_environment=None):
        super().__init__(cache_dir, python, pip_environment)
        self.children = {}

    def start(self, job, workdir, env, log_path, prepared):
        with open(log_path, "ab") as log:
            child = subprocess.Popen(  # pylint: disable=subprocess-popen-preexec-fn
                ["/bin/sh", "-c", job["command"]], cwd=prepared["source"], env=self.command_environment(env, prepared),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=_die_with_parent)
        handle = "local:%d" % child.pid
        self.children[handle] = child
        return handle

    def poll(self, handle):
        if handle not in self.children:
            raise Gone(handle)
        return self.children[handle].poll()

    def _signal(self, handle, signum):
        child = self.children.get(handle)
        if child is not None and child.poll() is None:
            try:
                os.killpg(child.pid, signum)
            except ProcessLookupError:
                pass

    def stop(self, handle):
        self._signal(handle, signal.SIGTERM)

    def kill(self, handle):
        self._signal(handle, signal.SIGKILL)

    def cleanup(self, handle):
        self.kill(handle)
        child = self.children.pop(handle, None)
        if child is not None:
            child.wait()


class PodmanExecutor(object):
    """`podman`: the command in a container of the job's image (a job without one gets
    default_image), run by root podman:

    - A user namespace of its own (--userns=auto): podman gives each container a range of
      host uids and gids, from those /etc/subuid and /etc/subgid give the user
      `containers`, that no other container has while it exists. The job's root is an
      unprivileged host uid no other job, and not the runner, has: a job that breaks out
      of its container, or reaches another's files, meets them as a stranger. 65536 ids
      each, the id space of a usual image (the range of 2^31 the runner role configures
      holds 32768 such jobs at once).
    - Its work directory mounted at the same path (so the paths in its environment hold
      inside) read-only and still root's, but for what the job writes: its checkout,
      outputs/ and its log, mounted over it and handed by podman to the job's user (:U,
      a chown on the host to the id the container's user has there; a link in the
      checkout is changed itself, never what it points at). The job cannot replace its
      log or outputs/ with a link for the agent, which uploads them as root, to follow;
      its inputs stay read-only (as the process executor's) and job.env, root's,
      unreadable. The agent, root, reads the outputs and removes the directory afterwards
      as before. No other job's directory is mounted. (An idmapped mount would leave the
      files root's on the host, but runc before 1.2 cannot make one.)
    - The host's network (the tracking service as the runner reaches it); a container
      whose user namespace does not own its network namespace cannot mount a sysfs of
      its own, so the host's /sys is bound read-only (what rootless podman does).
    - --cpus and --memory from the request, no capabilities, no privilege escalation,
      and the job's GPUs passed through CDI by UUID (nvidia-ctk cdi generate) when it has
      any.

    job_user is ignored: jobs once ran as that user (`--user`), which the user namespace
    replaces; an agent configuration written by an older runner role still names it.
    """

    name = "podman"
    userns_size = 65536

    def __init__(self, cache_dir, default_image=None, podman="podman", job_user=None):
        del job_user  # see the class's documentation
        self.cache_dir = cache_dir
        self.default_image = default_image
        self.podman = podman

    paths = staticmethod(CheckoutExecutor.paths)

    def discard(self, job_id):
        """Nothing of a job outside its work directory."""

    def image(self, job):
        image = job.get("image") or self.default_image
        if not image:
            raise ExecutorError("the job names no image and the runner has no default_image")
        return image

    def prepare(self, job, workdir, git_env=None):
        source = os.path.join(workdir, "src")
        checkout(job["repository"], job["commit"], source, git_env)
        image = self.image(job)
        if subprocess.run([self.podman, "image", "exists", image], check=False).returncode != 0:
            run([self.podman, "pull", "-q", image], timeout=3600)
        return {"image": image, "source": source}

    def start(self, job, workdir, env, log_path, prepared):
        name = "mlops-job-%d" % job["id"]
        subprocess.run([self.podman, "rm", "-f", "--ignore", name], capture_output=True, check=False)
        env_file = os.path.join(workdir, "job.env")
        # podman's --env-file takes KEY=value lines verbatim, without quotes.
        fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            for key, value in sorted(dict(env, MLOPS_JOB_LOG=log_path).items()):
                if "\n" in value:
                    raise ExecutorError("the value of %s has a line break" % key)
                handle.write("%s=%s\n" % (key, value))
        # The log is bound as a file: made here, so that the job writes into this one.
        os.close(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        argv = [self.podman, "run", "-d", "--name", name, "--userns", "auto:size=%d" % self.userns_size,
                "--network", "host", "--volume", "/sys:/sys:ro", "--env-file", env_file,
                "--volume", "%s:%s:ro" % (workdir, workdir)]
        for path in (prepared["source"], self.paths(job["id"], workdir)["outputs"], log_path):
            argv += ["--volume", "%s:%s:U" % (path, path)]
        argv += ["--workdir", prepared["source"],
                 "--cpus", str(job["cpus"]), "--memory", "%dm" % job["memory_mb"], "--cap-drop", "all",
                 "--security-opt", "no-new-privileges", "--label", "mlops.job_id=%d" % job["id"]]
        for gpu in job.get("gpu_ids") or []:
            argv += ["--device", "nvidia.com/gpu=%s" % gpu]
        argv += [prepared["image"], "/bin/sh", "-c", 'exec >>"$MLOPS_JOB_LOG" 2>&1; ' + job["command"]]
        run(argv)
        return name

    def poll(self, handle):
        done = subprocess.run([self.podman, "inspect", "--type", "container", "--format",
                               "{{.State.Status}} {{.State.ExitCode}}", handle],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise Gone(handle)
        status, code = done.stdout.split()
        if status in ("created", "running", "paused", "stopping"):
            return None
        code = int(code)
        # podman reports a container killed by a signal as 128 + the signal.
        return -(code - 128) if code > 128 else code

    def stop(self, handle):
        subprocess.run([self.podman, "kill", "--signal", "SIGTERM", handle], capture_output=True, check=False)

    def kill(self, handle):
        subprocess.run([self.podman, "kill", "--signal", "SIGKILL", handle], capture_output=True, check=False)

    def cleanup(self, handle):
        subprocess.run([self.podman, "rm", "-f", "--ignore", handle], capture_output=True, check=False)


EXECUTORS = {"process": ProcessExecutor, "local": LocalExecutor, "podman": PodmanExecutor}
