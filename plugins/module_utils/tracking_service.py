# -*- coding: utf-8 -*-
# Copyright: mlops.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one client of the tracking service modules: MLflow tracking services on this host.

A tracking service NAME is the systemd instance mlflow@NAME.service of the template unit
the mlflow role installs, configured only by the environment file CONFIG_DIR/NAME.env.
This file holds everything both modules share: validation of the options, rendering
and parsing of the environment file (systemd EnvironmentFile syntax), secret masking,
the action plan, and the host client (systemctl, the schema check and upgrade run by
the venv's python, database backups, the health wait and the journal tail).

Secrets never go on a command line: the backend store URI reaches the venv's python
and pg_dump through their environment.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import json
import os
import re
import shutil
import socket
import tempfile
import time
from urllib.error import HTTPError, URLError
from urllib.parse import parse_qs, unquote, urlsplit
from urllib.request import ProxyHandler, build_opener

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,28}[a-z0-9])?$"
NAME_RULE = (
    "1 to 30 lowercase letters, digits and hyphens, not starting or ending with a hyphen (%s)" % NAME_PATTERN
)
ENV_KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
ARTIFACTS_PATTERN = r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(/\S*)?$"
# A Host header value as MLflow's allowed hosts compare it: a name or IPv4 address (MLflow
# takes * wildcards) or a bracketed IPv6 address, with an optional port; no scheme, no path.
ALLOWED_HOST_PATTERN = r"^([A-Za-z0-9*]([A-Za-z0-9.*-]*[A-Za-z0-9*])?|\[[0-9A-Fa-f:.]+\])(:([0-9]{1,5}|\*))?$"
MASK = "********"
CHANGED_MASK = MASK + "(changed)"
SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN")
URI_KEY = "MLFLOW_BACKEND_STORE_URI"
UNIT_TEMPLATE = "mlflow@%s.service"
ENV_MODE = 0o600
DIR_MODE = 0o700

# Keys set from the module's options, named by the option: `environment` cannot set them.
OPTION_KEYS = {
    "MLFLOW_HOST": "host",
    "MLFLOW_PORT": "port",
    "MLFLOW_WORKERS": "workers",
    URI_KEY: "backend_store_uri",
    "MLFLOW_ARTIFACTS_DESTINATION": "artifacts_destination",
    "MLFLOW_S3_ENDPOINT_URL": "s3_endpoint_url",
    "AWS_ACCESS_KEY_ID": "s3_access_key",
    "AWS_SECRET_ACCESS_KEY": "s3_secret_key",
    "MLFLOW_S3_IGNORE_TLS": "s3_ignore_tls",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "enable_job_execution",
    "MLFLOW_SERVER_ALLOWED_HOSTS": "allowed_hosts",
    "MLFLOW_SERVER_CORS_ALLOWED_ORIGINS": "cors_origins",
    "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": "database_pool_size",
    "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": "database_max_overflow",
    "MLOPS_PUBLIC_URL": "public_url",
    "MLOPS_MLFLOW_VERSION": "venv (the installed mlflow version)",
}
# Settings for S3-compatible stores such as MinIO; `environment` may override them (AWS S3 itself, say).
DEFAULT_KEYS = {
    "MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE": "path",
    "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
    "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
}
# libpq settings a backend store URI's query may carry, and their environment variables.
PG_QUERY_ENV = {
    "host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD", "dbname": "PGDATABASE",
    "sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY",
    "connect_timeout": "PGCONNECT_TIMEOUT", "options": "PGOPTIONS", "application_name": "PGAPPNAME",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
}
CONNECT_TIMEOUT = "10"

# Run by the venv's python, reading the backend store URI from its environment. It only reads
# unless its first argument is "upgrade". The last line of its output is one JSON object.
SCHEMA_SCRIPT = r'''
import json
import os
import sys


def main():
    uri = os.environ.pop("MLOPS_BACKEND_STORE_URI")
    action = sys.argv[1] if len(sys.argv) > 1 else "check"
    from alembic.script import ScriptDirectory
    from mlflow.store.db import utils

    if action == "head":
        return dict(empty=True, complete=False, current=None, head=utils._get_latest_schema_revision(), known=True)
    engine = utils.create_sqlalchemy_engine(uri)
    try:
        head = utils._get_latest_schema_revision()
        if action == "upgrade":
            utils._upgrade_db(engine)
        empty = utils._is_empty_database(engine)
        current = None if empty else utils._get_schema_version(engine)
        script = ScriptDirectory.from_config(utils._get_alembic_config(db_url=""))
        known = current is None or current in set(r.revision for r in script.walk_revisions())
        return dict(empty=empty, complete=utils._all_tables_exist(engine), current=current, head=head,
                    known=known)
    finally:
        engine.dispose()


try:
    result = main()
except Exception as exc:
    sys.stdout.write("\n" + json.dumps(dict(error="%s: %s" % (type(exc).__name__, exc))) + "\n")
    sys.exit(2)
sys.stdout.write("\n" + json.dumps(result) + "\n")
'''


class TrackingServiceError(Exception):
    """A failure already worded for the operator."""


class UnknownSchemaError(TrackingServiceError):
    """The backend store has a schema revision the venv's MLflow does not know."""


# ---------------------------------------------------------------- validation


def name_problem(name):
    """Why name is not a valid tracking service name, or None when it is."""
    if not isinstance(name, str) or not re.match(NAME_PATTERN, name):
        return "name %r is not a valid tracking service name: %s" % (name, NAME_RULE)
    return None


def artifacts_destination_problem(value):
    """Why value is not an s3://bucket[/prefix] destination, or None when it is."""
    if not isinstance(value, str) or not re.match(ARTIFACTS_PATTERN, value) or ".." in value.split("/")[2]:
        return ("artifacts_destination must look like s3://bucket or s3://bucket/prefix (a bucket name of 3 to 63 "
                "lowercase letters, digits, dots and hyphens, no spaces), got %r" % (value,))
    return None


def normalize_backend_uri(uri):
    """The backend store URI as the server must get it; raises TrackingServiceError.

    PostgreSQL URIs get the psycopg2 driver: SQLAlchemy 2.1 maps a plain postgresql://
    to psycopg 3, which the venv does not ship. SQLite URIs must name an absolute path.
    """
    scheme, sep, rest = (uri or "").partition("://")
    scheme = scheme.lower()
    if sep and scheme in ("postgresql", "postgres", "postgresql+psycopg2") and rest:
        return "postgresql+psycopg2://" + rest
    if sep and scheme.startswith("postgresql+"):
        raise TrackingServiceError(
            "backend_store_uri must use the postgresql+psycopg2 driver (the venv ships psycopg2), got the %s "
            "driver" % scheme.partition("+")[2])
    if sep and scheme == "sqlite":
        if sqlite_path(uri) is None:
            raise TrackingServiceError(
                "backend_store_uri: a SQLite URI must name an absolute file path, as in sqlite:////var/lib/mlflow/"
                "NAME/mlflow.db (four slashes)")
        return uri
    raise TrackingServiceError(
        "backend_store_uri must be a postgresql:// (or postgresql+psycopg2://) or sqlite://// URI; the scheme "
        "given is %r" % (scheme if sep else "(none)"))


def sqlite_path(uri):
    """The absolute file path of a sqlite:////path URI, or None."""
    if not uri.lower().startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    return path if path.startswith("/") and len(path) > 1 else None


def _http_url_problem(option, value, allow_path=False):
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "%s must look like http(s)://host[:port], got %r" % (option, value)
    if not allow_path and (parts.path not in ("", "/") or parts.query or parts.fragment):
        return "%s must not have a path or query, got %r" % (option, value)
    if parts.username or parts.password:
        return "%s must not carry credentials" % option
    return None


def _join_list(option, items):
    for item in items:
        if not item or "," in item or item != item.strip():
            raise TrackingServiceError("%s: each entry must be non-empty, without commas or surrounding spaces, "
                                       "got %r" % (option, item))
    return ",".join(items)


def allowed_host_problem(value):
    """Why value cannot be an entry of allowed_hosts, or None when it can."""
    if not isinstance(value, str):
        return "allowed_hosts: each entry must be a string, got %r" % (value,)
    if "://" in value:
        return ("allowed_hosts: %r has a scheme; an entry is what clients send as the Host header, host[:port] as "
                "in mlflow.example.com:8443 (the scheme belongs in public_url and cors_origins)" % (value,))
    if not re.match(ALLOWED_HOST_PATTERN, value):
        return ("allowed_hosts: %r is not host[:port]: a DNS name or IPv4 address (* wildcards allowed) or a "
                "[bracketed] IPv6 address, an optional :port, no path or spaces" % (value,))
    return None


def _extra_environment(environment):
    extra = {}
    for key, value in sorted((environment or {}).items()):
        if not re.match(ENV_KEY_PATTERN, key):
            raise TrackingServiceError("environment: %r is not an environment variable name (%s)"
                                       % (key, ENV_KEY_PATTERN))
        if key in OPTION_KEYS:
            raise TrackingServiceError("environment: %s is set by the option %s; use the option"
                                       % (key, OPTION_KEYS[key]))
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise TrackingServiceError("environment: the value of %s must be a string, got %s; quote it"
                                       % (key, type(value).__name__))
        extra[key] = str(value)
    return extra


def desired_environment(params, mlflow_version=None):
    """Return (managed, extra): the environment file's variables; raises TrackingServiceError.

    params are the tracking_service module's parameters with backend_store_uri as given.
    """
    problem = name_problem(params["name"]) or artifacts_destination_problem(params["artifacts_destination"])
    if problem:
        raise TrackingServiceError(problem)
    for option, low, high in (("port", 1, 65535), ("workers", 1, 1024), ("database_pool_size", 1, 10000),
                              ("database_max_overflow", 0, 10000)):
        value = params.get(option)
        if value is not None and not low <= value <= high:
            raise TrackingServiceError("%s must be between %d and %d, got %d" % (option, low, high, value))
    for option, allow_path in (("s3_endpoint_url", False), ("public_url", True)):
        problem = params.get(option) and _http_url_problem(option, params[option], allow_path)
        if problem:
            raise TrackingServiceError(problem)
    for value in params.get("allowed_hosts") or []:
        problem = allowed_host_problem(value)
        if problem:
            raise TrackingServiceError(problem)
    for value in params.get("cors_origins") or []:
        problem = _http_url_problem("cors_origins", value) if value != "*" else None
        if problem:
            raise TrackingServiceError(problem)
    if not params.get("host"):
        raise TrackingServiceError("host must not be empty")

    managed = dict(DEFAULT_KEYS)
    managed.update({
        "MLFLOW_HOST": params["host"],
        "MLFLOW_PORT": str(params["port"]),
        "MLFLOW_WORKERS": str(params["workers"]),
        URI_KEY: normalize_backend_uri(params["backend_store_uri"]),
        "MLFLOW_ARTIFACTS_DESTINATION": params["artifacts_destination"],
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true" if params.get("enable_job_execution") else "false",
    })
    optional = {
        "MLFLOW_S3_ENDPOINT_URL": params.get("s3_endpoint_url"),
        "AWS_ACCESS_KEY_ID": params.get("s3_access_key"),
        "AWS_SECRET_ACCESS_KEY": params.get("s3_secret_key"),
        # Any non-empty value would count as set: the variable is written only to turn TLS checks off.
        "MLFLOW_S3_IGNORE_TLS": "true" if params.get("s3_ignore_tls") else None,
        "MLFLOW_SERVER_ALLOWED_HOSTS": _join_list("allowed_hosts", params["allowed_hosts"])
        if params.get("allowed_hosts") else None,
        "MLFLOW_SERVER_CORS_ALLOWED_ORIGINS": _join_list("cors_origins", params["cors_origins"])
        if params.get("cors_origins") else None,
        "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": params.get("database_pool_size"),
        "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": params.get("database_max_overflow"),
        "MLOPS_PUBLIC_URL": params.get("public_url"),
        "MLOPS_MLFLOW_VERSION": mlflow_version,
    }
    managed.update((k, str(v)) for k, v in optional.items() if v is not None and v != "")
    extra = _extra_environment(params.get("environment"))
    for key in extra:
        managed.pop(key, None)
    return managed, extra


# ---------------------------------------------------------------- environment file


def quote_value(key, value):
    """value as a double-quoted systemd EnvironmentFile value."""
    for char, what in (("\n", "newline"), ("\r", "carriage return"), ("\0", "NUL character")):
        if char in value:
            raise TrackingServiceError("the value of %s contains a %s, which an environment file cannot hold"
                                       % (key, what))
    return '"%s"' % value.replace("\\", "\\\\").replace('"', '\\"')


def render_env(name, managed, extra=None):
    """The environment file of tracking service name: a header, then sorted KEY="value" lines."""
    lines = [
        "# mlflow@%s.service: tracking service %s." % (name, name),
        "# Written by mlops.platform.tracking_service; changes made here are overwritten.",
    ]
    lines.extend("%s=%s" % (key, quote_value(key, managed[key])) for key in sorted(managed))
    if extra:
        lines.append("# environment")
        lines.extend("%s=%s" % (key, quote_value(key, extra[key])) for key in sorted(extra))
    return "\n".join(lines) + "\n"


def _unquote(raw):
    """A value as systemd reads it from one line of an EnvironmentFile."""
    out = []
    if raw.startswith('"'):
        i = 1
        while i < len(raw):
            char = raw[i]
            if char == "\\" and i + 1 < len(raw):
                following = raw[i + 1]
                # A backslash keeps ", \, ` and $; before anything else both characters stay.
                out.append(following if following in '"\\`$' else char + following)
                i += 2
                continue
            if char == '"':
                break
            out.append(char)
            i += 1
        return "".join(out)
    if raw.startswith("'"):
        return raw[1:].partition("'")[0]
    i = 0
    while i < len(raw):
        if raw[i] == "\\" and i + 1 < len(raw):
            out.append(raw[i + 1])
            i += 2
            continue
        out.append(raw[i])
        i += 1
    return "".join(out).rstrip()


def _parse_line(line):
    """(key, value) of an assignment line, or None for comments, blank and other lines."""
    stripped = line.strip()
    if not stripped or stripped[0] in "#;" or "=" not in stripped:
        return None
    key, _sep, raw = stripped.partition("=")
    key = key.strip()
    if not re.match(ENV_KEY_PATTERN, key):
        return None
    return key, _unquote(raw.strip())


def parse_env(text):
    """The variables of an environment file as systemd reads them (one line per variable)."""
    values = {}
    for line in (text or "").splitlines():
        parsed = _parse_line(line)
        if parsed:
            values[parsed[0]] = parsed[1]
    return values


# ---------------------------------------------------------------- secrets


def is_secret_key(key):
    return any(word in key.upper() for word in SECRET_WORDS)


def _split_uri_password(uri):
    """(before, password, after) of a URI with a password in its netloc, or None."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return None
    netloc_end = len(rest)
    for char in "/?#":
        index = rest.find(char)
        if index != -1:
            netloc_end = min(netloc_end, index)
    userinfo, at, _hostport = rest[:netloc_end].rpartition("@")
    user, colon, password = userinfo.partition(":")
    if not at or not colon or not password:
        return None
    return scheme + sep + user + colon, password, rest[len(userinfo):]


def mask_uri(uri, mask=MASK):
    """uri with the password of its netloc replaced by mask."""
    parts = _split_uri_password(uri)
    if parts is None:
        return uri
    return parts[0] + mask + parts[2]


def uri_password(uri):
    parts = _split_uri_password(uri)
    return parts[1] if parts else None


def mask_value(key, value, mask=MASK):
    if key == URI_KEY:
        return mask_uri(value, mask)
    if is_secret_key(key) and value:
        return mask
    return value


def mask_env_text(text, changed=()):
    """An environment file's text with its secrets masked, line by line.

    Secrets of keys in changed show as ********(changed), so a diff shows that they changed.
    """
    if text is None:
        return ""
    lines = []
    for line in text.splitlines():
        parsed = _parse_line(line)
        if parsed and (parsed[0] == URI_KEY or is_secret_key(parsed[0])):
            key, value = parsed
            masked = mask_value(key, value, CHANGED_MASK if key in changed else MASK)
            if masked != value:
                line = "%s=%s" % (key, quote_value(key, masked))
        lines.append(line)
    return "\n".join(lines) + ("\n" if lines else "")


def changed_secrets(before, after):
    """The secret keys of both sets of variables whose secret differs between them."""
    changed = set()
    for key in set(before) & set(after):
        if key == URI_KEY:
            if uri_password(before.get(key) or "") != uri_password(after.get(key) or ""):
                changed.add(key)
        elif is_secret_key(key) and before.get(key) != after.get(key):
            changed.add(key)
    return changed


def secret_strings(*value_sets):
    """The secret strings in sets of variables as they may show in logs and errors, longest first."""
    found = set()
    for key, value in [item for values in value_sets for item in values.items()]:
        if key == URI_KEY:
            password = uri_password(value or "")
            if password:
                found.update((password, unquote(password)))
        elif is_secret_key(key) and value:
            found.add(value)
    return sorted((s for s in found if s), key=len, reverse=True)


def scrub(text, secrets):
    """text with every known secret replaced by ********."""
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


# ---------------------------------------------------------------- plan


def plan_actions(state, name, env_path, current, desired_text=None, schema=None, backup_path=None, link=None):
    """The steps that bring a tracking service to state, as (verb, description) pairs, in order.

    current: dict(text=the env file's text or None, file_ok=its owner and mode are right,
    dir=ok, missing or insecure (the config directory), active=the unit runs or tries to,
    enabled=the unit starts at boot).
    schema: the schema check's result or None when it was not run; backup_path: where a
    backup before an upgrade goes. link: None, or dict(path=the symlink the unit runs
    MLflow through, current=its target or None, desired=the venv).
    """
    unit = UNIT_TEMPLATE % name
    steps = []
    active = current["active"]
    if state == "absent":
        if active:
            steps.append(("stop", "stop %s" % unit))
        if current["enabled"]:
            steps.append(("disable", "disable %s" % unit))
        if current["text"] is not None:
            steps.append(("remove", "remove %s" % env_path))
        if link and link["current"] is not None:
            steps.append(("unlink", "remove %s" % link["path"]))
        return steps

    if current["dir"] != "ok":
        template = "create %s (root:root 0700)" if current["dir"] == "missing" else "set root:root 0700 on %s"
        steps.append(("mkdir", template % os.path.dirname(env_path)))
    config_changed = current["text"] != desired_text
    if config_changed:
        steps.append(("write", "write %s" % env_path))
    elif not current["file_ok"]:
        steps.append(("chmod", "set root:root 0600 on %s" % env_path))
    if link and link["current"] != link["desired"]:
        steps.append(("link", "point %s at %s" % (link["path"], link["desired"])))
        # The unit runs MLflow through the link: another venv is another server.
        config_changed = True

    if state == "stopped":
        if active:
            steps.append(("stop", "stop %s" % unit))
        if current["enabled"]:
            steps.append(("disable", "disable %s" % unit))
        return steps

    if state == "started" and not current["enabled"]:
        steps.append(("enable", "enable %s" % unit))
    if schema and schema.get("upgrade"):
        if active:
            steps.append(("stop", "stop %s" % unit))
        steps.append(("backup", "back up database to %s" % backup_path))
        steps.append(("upgrade", "upgrade schema %s -> %s" % (schema["current"], schema["head"])))
        if active or state == "started":
            steps.append(("start", "start %s" % unit))
    elif active and config_changed:
        steps.append(("restart", "restart %s" % unit))
    elif state == "started" and not active:
        steps.append(("start", "start %s" % unit))
    return steps


def backup_file(backup_dir, name, uri, now=None):
    """The path of a new backup of the backend store of tracking service name."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    return os.path.join(backup_dir, "%s-%s.%s" % (name, stamp, "db" if sqlite_path(uri) else "dump"))


def pg_environment(uri):
    """libpq environment variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, ...) of a URI."""
    parts = urlsplit(uri)
    env = {}
    try:
        port = parts.port
    except ValueError:
        raise TrackingServiceError("backend_store_uri has an invalid port")
    for var, value in (("PGHOST", parts.hostname), ("PGPORT", port), ("PGUSER", parts.username),
                       ("PGPASSWORD", parts.password), ("PGDATABASE", parts.path.lstrip("/"))):
        if value not in (None, ""):
            env[var] = unquote(str(value))
    for key, values in parse_qs(parts.query).items():
        if key in PG_QUERY_ENV and values:
            env[PG_QUERY_ENV[key]] = values[-1]
    env.setdefault("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT)
    return env


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


def internal_url(host, port):
    return "http://%s:%s" % ("[%s]" % host if ":" in host else host, port)


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
        unit = UNIT_TEMPLATE % name
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
        self.systemctl(verb, UNIT_TEMPLATE % name)

    def journal_tail(self, name, secrets, lines=40):
        journalctl = self.module.get_bin_path("journalctl")
        if not journalctl:
            return []
        rc, out, err = self.module.run_command([journalctl, "--unit", UNIT_TEMPLATE % name, "--lines", str(lines),
                                                "--no-pager", "--output", "short-iso"])
        return scrub(out if rc == 0 else err, secrets).splitlines()

    def wait_for_health(self, name, host, port, timeout, secrets, interval=1.0):
        """Wait until /health answers OK; raises TrackingServiceError with the journal tail when it does not."""
        url = "http://%s:%s/health" % (probe_host(host), port)
        last = "no answer"
        deadline = time.time() + timeout
        opener = build_opener(ProxyHandler({}))
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
                error = TrackingServiceError("%s is not healthy: %s (last answer from %s: %s)"
                                             % (UNIT_TEMPLATE % name, why, url, last))
                error.journal = self.journal_tail(name, secrets)
                raise error
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
        env = {"MLOPS_BACKEND_STORE_URI": uri, "PGCONNECT_TIMEOUT": CONNECT_TIMEOUT}
        rc, out, err = self.module.run_command([self.venv_python(), "-I", "-", action],
                                               data=SCHEMA_SCRIPT, environ_update=env, cwd="/")
        result = None
        for line in reversed(out.splitlines()):
            if line.startswith("{"):
                try:
                    result = json.loads(line)
                except ValueError:
                    pass
                break
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
