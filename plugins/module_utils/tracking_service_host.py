# -*- coding: utf-8 -*-
# Copyright: mlops.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host client of the tracking service modules: MLflow tracking services on this host.

TrackingServiceHost does everything that touches the host: the environment files
(root:root 0600 in a root:root 0700 directory), systemctl and the journal of the units
mlflow@NAME.service, the schema check and upgrade run by the venv's python, database
backups and restores, the health wait, the venv link, and carrying out the action plan.
Beside it: what the modules read of a host without the client (the mlflow version of a
venv, the state of a unit, the URL a server is reached at).

Secrets never go on a command line: the backend store URI reaches the venv's python and
pg_dump, pg_restore and psql through their environment, and what their output or the
journal shows of a secret is scrubbed before it reaches an error message.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os
import re
import shutil
import socket
import ssl
import tempfile
import time
from urllib.error import HTTPError, URLError
from urllib.request import HTTPSHandler, ProxyHandler, build_opener

from ansible_collections.mlops.platform.plugins.module_utils.platform_model import name_problem, unit_name
from ansible_collections.mlops.platform.plugins.module_utils.secrets_masking import scrub
from ansible_collections.mlops.platform.plugins.module_utils.tracking_service import (
    TrackingServiceError,
    UnknownSchemaError,
)
from ansible_collections.mlops.platform.plugins.module_utils.tracking_service_env import parse_env, sqlite_path
from ansible_collections.mlops.platform.plugins.module_utils.tracking_service_schema import (
    SCHEMA_SCRIPT,
    pg_environment,
    script_environment,
    script_result,
)

ENV_MODE = 0o600
DIR_MODE = 0o700


def mlflow_version(venv):
    """The mlflow version installed in a venv, from its dist-info directory; None when there is none."""
    versions = set()
    for path in glob.glob(os.path.join(venv, "lib*", "python*", "site-packages", "mlflow-*.dist-info")):
        version = os.path.basename(path)[len("mlflow-"):-len(".dist-info")]
        try:
            with open(os.path.join(path, "METADATA"), "r") as metadata:
                for line in metadata:
                    if line.startswith("Version:"):
                        version = line.split(":", 1)[1].strip()
                        break
                    if not line.strip():
                        break
        except (IOError, OSError):
            pass
        versions.add(version)
    if not versions:
        return None

    def key(version):
        return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.+-]", version)]
    return max(versions, key=key)


def probe_host(host):
    """Where to reach a server listening on host from this host."""
    if host in ("0.0.0.0", "::", "*", ""):
        return "127.0.0.1"
    return "[%s]" % host if ":" in host else host


def internal_url(host, port, tls=False):
    return "%s://%s:%s" % ("https" if tls else "http", "[%s]" % host if ":" in host else host, port)


def service_state(unit):
    """running, stopped or failed, from a unit status."""
    if unit["active_state"] in ("active", "reloading") or (
            unit["active_state"] == "activating" and unit["sub_state"] != "auto-restart"):
        return "running"
    if unit["active_state"] == "failed" or unit["sub_state"] == "auto-restart":
        return "failed"
    return "stopped"


# ---------------------------------------------------------------- the host client


def not_healthy_reason(status, expired, timeout):
    """Why waiting for /health should stop now (None: go on waiting). A server that exited
    is not waited for until the timeout: with Restart=on-failure systemd would start it
    again and again (sub-state auto-restart) while it fails the same way each time."""
    if status["active_state"] == "failed":
        return "the unit failed"
    if status["sub_state"] == "auto-restart":
        return "the server exited and systemd is about to restart it"
    if expired:
        return "no OK within %s s" % timeout
    return None


class TrackingServiceHost(object):
    """Tracking services on this host: files, systemd, the database schema and health."""

    def __init__(self, module, config_dir, venv=None, backup_dir=None):
        self.module = module
        self.config_dir = config_dir
        self.venv = venv
        self.backup_dir = backup_dir
        self._systemctl = None

    # files

    def env_path(self, name):
        return os.path.join(self.config_dir, "%s.env" % name)

    def read_env(self, name):
        """(text or None, owner and mode are right) of a service's environment file."""
        path = self.env_path(name)
        try:
            with open(path, "rb") as handle:
                text = handle.read().decode("utf-8", "replace")
            info = os.stat(path)
        except (IOError, OSError) as exc:
            if not os.path.lexists(path):
                return None, True
            raise TrackingServiceError("cannot read %s: %s" % (path, exc))
        return text, (info.st_uid, info.st_gid, info.st_mode & 0o7777) == (0, 0, ENV_MODE)

    def names(self):
        """Names of the services with an environment file, sorted."""
        found = []
        for path in glob.glob(os.path.join(self.config_dir, "*.env")):
            name = os.path.basename(path)[:-len(".env")]
            if name_problem(name) is None:
                found.append(name)
        return sorted(found)

    def port_owner(self, port, name):
        """The other service whose environment file binds port, or None."""
        for other in self.names():
            if other == name:
                continue
            text, _file_ok = self.read_env(other)
            if parse_env(text or "").get("MLFLOW_PORT") == str(port):
                return other
        return None

    def dir_state(self):
        """ok, missing or insecure: the config directory."""
        if not os.path.isdir(self.config_dir):
            return "missing"
        info = os.stat(self.config_dir)
        return "ok" if (info.st_uid, info.st_gid, info.st_mode & 0o7777) == (0, 0, DIR_MODE) else "insecure"

    @staticmethod
    def _secure_dir(path):
        if not os.path.isdir(path):
            os.makedirs(path, DIR_MODE)
        os.chown(path, 0, 0)
        os.chmod(path, DIR_MODE)

    def write_env(self, name, text):
        path = self.env_path(name)
        fd, tmp = tempfile.mkstemp(dir=self.config_dir, prefix=".%s." % name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(text.encode("utf-8"))
            os.chmod(tmp, ENV_MODE)
            os.chown(tmp, 0, 0)
            self.module.atomic_move(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        # atomic_move gives a new file the umask's mode and an old one its old mode.
        self.secure_env(name)

    def secure_env(self, name):
        path = self.env_path(name)
        os.chown(path, 0, 0)
        os.chmod(path, ENV_MODE)

    # systemd

    def systemctl(self, *args, **kwargs):
        if self._systemctl is None:
            self._systemctl = self.module.get_bin_path("systemctl")
            if not self._systemctl:
                raise TrackingServiceError("systemctl not found: tracking services run as systemd units")
        rc, out, err = self.module.run_command([self._systemctl] + list(args))
        if rc != 0 and kwargs.get("check", True):
            raise TrackingServiceError("systemctl %s failed (exit status %d): %s"
                                       % (" ".join(args), rc, (err or out).strip()))
        return rc, out, err

    def unit_status(self, name):
        """What systemd says of mlflow@name.service (the is-active / is-enabled answers and more)."""
        unit = unit_name(name)
        rc, out, err = self.systemctl("show", "--property=LoadState,ActiveState,SubState,UnitFileState", unit,
                                      check=False)
        if rc != 0:
            raise TrackingServiceError("cannot ask systemd about %s: %s" % (unit, (err or out).strip()))
        props = dict(line.partition("=")[::2] for line in out.splitlines() if "=" in line)
        status = dict(unit=unit, load_state=props.get("LoadState", ""), active_state=props.get("ActiveState", ""),
                      sub_state=props.get("SubState", ""), unit_file_state=props.get("UnitFileState", ""))
        status["loaded"] = status["load_state"] == "loaded"
        status["active"] = status["active_state"] in ("active", "activating", "reloading")
        status["enabled"] = status["unit_file_state"] in ("enabled", "enabled-runtime", "linked", "linked-runtime")
        return status

    def unit_action(self, verb, name):
        self.systemctl(verb, unit_name(name))

    def journal_tail(self, name, secrets, lines=40):
        journalctl = self.module.get_bin_path("journalctl")
        if not journalctl:
            return []
        rc, out, err = self.module.run_command([journalctl, "--unit", unit_name(name), "--lines", str(lines),
                                                "--no-pager", "--output", "short-iso"])
        return scrub(out if rc == 0 else err, secrets).splitlines()

    def wait_for_health(self, name, host, port, timeout, secrets, interval=1.0, tls_ca=False):
        """Wait until /health answers OK; raises TrackingServiceError with the journal tail when it does not.
        tls_ca: False for plain HTTP, else https checked with that CA file (None: the system's)."""
        url = "%s://%s:%s/health" % ("http" if tls_ca is False else "https", probe_host(host), port)
        last = "no answer"
        deadline = time.time() + timeout
        handlers = [ProxyHandler({})]
        if tls_ca is not False:
            handlers.append(HTTPSHandler(context=ssl.create_default_context(cafile=tls_ca)))
        opener = build_opener(*handlers)
        while True:
            try:
                response = opener.open(url, timeout=max(1.0, min(5.0, deadline - time.time())))
                body = response.read(256).strip()
                if response.getcode() == 200 and body == b"OK":
                    return url
                last = "HTTP %s %r" % (response.getcode(), body[:40])
            except HTTPError as exc:
                last = "HTTP %s" % exc.code
            except URLError as exc:
                last = str(exc.reason)
            except (socket.error, socket.timeout) as exc:
                last = str(exc)
            why = not_healthy_reason(self.unit_status(name), time.time() >= deadline, timeout)
            if why:
                raise TrackingServiceError("%s is not healthy: %s (last answer from %s: %s)"
                                           % (unit_name(name), why, url, last),
                                           journal=self.journal_tail(name, secrets))
            time.sleep(interval)

    # database

    def venv_python(self):
        python = os.path.join(self.venv, "bin", "python")
        return python if os.access(python, os.X_OK) else None

    def schema(self, uri, secrets, upgrade=False):
        """The schema check (or, with upgrade, the upgrade) run by the venv's python; a dict."""
        action = "upgrade" if upgrade else "check"
        path = sqlite_path(uri)
        if not upgrade and path and not os.path.exists(path):
            # Connecting would create the file: a missing file is an empty database.
            action = "head"
        rc, out, err = self.module.run_command([self.venv_python(), "-I", "-", action], data=SCHEMA_SCRIPT,
                                               environ_update=script_environment(uri), cwd="/")
        result = script_result(out)
        what = "upgrade the schema of" if upgrade else "read the schema version of"
        if result is None:
            raise TrackingServiceError("could not %s the backend store (exit status %d): %s"
                                       % (what, rc, scrub((err or out).strip()[-2000:], secrets)))
        if "error" in result:
            raise TrackingServiceError("could not %s the backend store: %s" % (what, scrub(result["error"], secrets)))
        if not result["known"]:
            raise UnknownSchemaError(
                "the backend store has schema revision %s, which mlflow in %s does not know (its head is %s): the "
                "database was upgraded by a newer MLflow. Install that version or restore a backup."
                % (result["current"], self.venv, result["head"]))
        result["upgrade"] = result["current"] is not None and result["current"] != result["head"]
        return result

    def backup(self, uri, path, secrets):
        """Back up the backend store to path (root:root 0600): pg_dump -Fc, or a copy of a SQLite file."""
        self._secure_dir(os.path.dirname(path))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, ENV_MODE)
        os.close(fd)
        try:
            source = sqlite_path(uri)
            if source:
                shutil.copyfile(source, path)
                return
            pg_dump = self.module.get_bin_path("pg_dump")
            if not pg_dump:
                raise TrackingServiceError("pg_dump not found: install the PostgreSQL client (postgresql-client) of "
                                           "the server's major version or newer to back up before schema upgrades")
            rc, out, err = self.module.run_command([pg_dump, "--format=custom", "--no-password", "--file", path],
                                                   environ_update=pg_environment(uri), cwd="/")
            if rc != 0:
                raise TrackingServiceError("pg_dump failed (exit status %d): %s"
                                           % (rc, scrub((err or out).strip(), secrets)))
        except Exception:
            os.remove(path)
            raise
        finally:
            if os.path.exists(path):
                os.chmod(path, ENV_MODE)

    def restore(self, uri, path, secrets):
        """Put the backend store back as a backup of self.backup left it.

        PostgreSQL: everything the service's role owns in its database is dropped and the
        dump loaded, in one transaction, so a failed restore leaves the database as it was.
        Tables a newer MLflow added are dropped too (the dump does not know them).
        """
        target = sqlite_path(uri)
        if target:
            shutil.copyfile(path, target)
            return
        tools = dict((tool, self.module.get_bin_path(tool)) for tool in ("pg_restore", "psql"))
        missing = [tool for tool, found in tools.items() if not found]
        if missing:
            raise TrackingServiceError("%s not found: install the PostgreSQL client to restore %s"
                                       % (", ".join(missing), path))
        fd, script = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".restore.", suffix=".sql")
        os.close(fd)
        try:
            rc, out, err = self.module.run_command([tools["pg_restore"], "--no-owner", "--no-privileges",
                                                    "--file", script, path], cwd="/")
            if rc != 0:
                raise TrackingServiceError("pg_restore could not read %s (exit status %d): %s"
                                           % (path, rc, (err or out).strip()))
            rc, out, err = self.module.run_command(
                [tools["psql"], "--no-password", "--no-psqlrc", "--quiet", "--single-transaction",
                 "--set", "ON_ERROR_STOP=1", "--command", "DROP OWNED BY CURRENT_USER", "--file", script],
                environ_update=pg_environment(uri), cwd="/")
            if rc != 0:
                raise TrackingServiceError("restoring %s failed (exit status %d), the database is unchanged: %s"
                                           % (path, rc, scrub((err or out).strip()[-2000:], secrets)))
        finally:
            os.remove(script)

    # the venv link

    @staticmethod
    def link_target(path):
        """Where the symlink path points, or None when there is none."""
        return os.readlink(path) if os.path.islink(path) else None

    @staticmethod
    def set_link(path, target):
        """Point the symlink path at target, replacing the old link in one rename."""
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o755)
        tmp = os.path.join(directory, ".%s.%d" % (os.path.basename(path), os.getpid()))
        if os.path.lexists(tmp):
            os.remove(tmp)
        os.symlink(target, tmp)
        os.rename(tmp, path)

    # apply

    def apply(self, steps, name, text=None, uri=None, backup_path=None, secrets=(), link=None):
        """Carry out the steps of plan_actions, in order."""
        for verb, _description in steps:
            if verb == "link":
                self.set_link(link["path"], link["desired"])
            elif verb == "unlink":
                os.remove(link["path"])
            elif verb == "mkdir":
                self._secure_dir(self.config_dir)
            elif verb == "write":
                self.write_env(name, text)
            elif verb == "chmod":
                self.secure_env(name)
            elif verb == "remove":
                os.remove(self.env_path(name))
            elif verb == "backup":
                self.backup(uri, backup_path, secrets)
            elif verb == "upgrade":
                result = self.schema(uri, secrets, upgrade=True)
                if result["upgrade"]:
                    raise TrackingServiceError("the schema upgrade left revision %s, not the head %s"
                                               % (result["current"], result["head"]))
            else:
                self.unit_action(verb, name)
