# -*- coding: utf-8 -*-
# Copyright: mlops.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The environment file of a tracking service: the options it is made of, and its syntax.

Tracking service NAME is configured only by the environment file CONFIG_DIR/NAME.env, which
mlflow@NAME.service reads with systemd's EnvironmentFile=. This file holds the variables the
module's options set (and the defaults for S3-compatible stores), the validation of those
options, rendering the file from them and parsing it back as systemd reads it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
from urllib.parse import urlsplit

from ansible_collections.mlops.platform.plugins.module_utils.platform_model import name_problem, unit_name
from ansible_collections.mlops.platform.plugins.module_utils.tracking_service import TrackingServiceError

ENV_KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
ARTIFACTS_PATTERN = r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(/\S*)?$"
# A Host header value as MLflow's allowed hosts compare it: a name or IPv4 address (MLflow
# takes * wildcards) or a bracketed IPv6 address, with an optional port; no scheme, no path.
ALLOWED_HOST_PATTERN = r"^([A-Za-z0-9*]([A-Za-z0-9.*-]*[A-Za-z0-9*])?|\[[0-9A-Fa-f:.]+\])(:([0-9]{1,5}|\*))?$"
URI_KEY = "MLFLOW_BACKEND_STORE_URI"
# How long uvicorn's workers may finish their requests once told to stop (uvicorn_options).
GRACEFUL_SHUTDOWN_SECONDS = 5

# Keys set from the module's options, named by the option: `environment` cannot set them.
OPTION_KEYS = {
    "MLFLOW_HOST": "host",
    "MLFLOW_PORT": "port",
    "MLFLOW_WORKERS": "workers",
    "MLFLOW_UVICORN_OPTS": "tls_certificate and tls_key (and the module's bounded graceful shutdown)",
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
    # boto3's "standard" defaults: a 3.1 s connect timeout and three attempts, so an
    # artifact store that is down or unreachable fails an artifact request within seconds
    # (the legacy defaults: 60 s per connection attempt, five attempts).
    "AWS_DEFAULTS_MODE": "standard",
    "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
    "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
}


# ---------------------------------------------------------------- validation


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
    for option in ("tls_certificate", "tls_key"):
        if params.get(option) and re.search(r"\s", params[option]):
            raise TrackingServiceError("%s must be a path without spaces, got %r" % (option, params[option]))

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
        # mlflow server passes these to the uvicorn it starts.
        "MLFLOW_UVICORN_OPTS": uvicorn_options(params),
    }
    managed.update((k, str(v)) for k, v in optional.items() if v is not None and v != "")
    extra = _extra_environment(params.get("environment"))
    for key in extra:
        managed.pop(key, None)
    return managed, extra


def uvicorn_options(params):
    """MLFLOW_UVICORN_OPTS: a bounded graceful shutdown, no access log, and TLS when a
    certificate is given.

    On a stop, and when the main process dies, systemd sends SIGTERM to every process of the
    service; the workers then finish their requests for at most GRACEFUL_SHUTDOWN_SECONDS,
    which mlflow@.service's TimeoutStopSec (10 s) must exceed, so a crashed service is
    serving again within seconds rather than after a long stop timeout. Every request is
    logged by the gateway, with its user; MLflow's own access log would add a line per
    request and per watchdog check (mlops.platform.watchdog), and nothing else."""
    options = "--timeout-graceful-shutdown %d --no-access-log" % GRACEFUL_SHUTDOWN_SECONDS
    if params.get("tls_certificate"):
        options += " --ssl-certfile %s --ssl-keyfile %s" % (params["tls_certificate"], params["tls_key"])
    return options


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
        "# %s: tracking service %s." % (unit_name(name), name),
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


def parse_line(line):
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
        parsed = parse_line(line)
        if parsed:
            values[parsed[0]] = parsed[1]
    return values
