# -*- coding: utf-8 -*-
# Copyright: mlops.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The platform's one model: what each tracking service is and how the services reach each other.

Every role, playbook and module takes a tracking service from here: the name rule, the
names of its resources (database, bucket, unit), where its generated secrets are kept, its
public URL, its users, its runners and its upstreams. The endpoints of the platform's
services (PostgreSQL, S3, the job API, the gateway) are computed here too, from the
inventory alone (group membership and inventory variables), so no role reads another
role's runtime facts. The filters tracking_services and platform_endpoints expose it.

Records carry no secret: a user's password never leaves the entry it was given in.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,28}[a-z0-9])?$"
NAME_RULE = "1 to 30 lowercase letters, digits and hyphens, not starting or ending with a hyphen"
STATES = ("started", "present", "stopped", "absent")
# A DNS name (RFC 1123 labels) or an IPv4 address: what goes before the port in a Host header.
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_PATTERN = r"^(?=.{1,253}$)%s(\.%s)*$" % (_LABEL, _LABEL)
BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
USER_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
ORIGIN_PATTERN = r"^(https?://[^/\s]+|[*])$"
UPSTREAM_PATTERN = r"^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\]):[0-9]{1,5}$"
_IPV4 = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}"
_IPV6 = r"[0-9A-Fa-f]{0,4}(:[0-9A-Fa-f]{0,4}){2,7}"
# What nginx `allow` takes: an IPv4 or IPv6 address, optionally with a prefix length.
CIDR_PATTERN = r"^(%s(/(3[0-2]|[12]?[0-9]))?|%s(/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))?)$" % (_IPV4, _IPV6)
PASSWORD_LENGTHS = (8, 128)
# Where a git credential applies: an http(s) URL prefix with no user part (git's
# http.<url>.* matching); its token a single line.
GIT_URL_PATTERN = r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[^\s@]*)?$"
RUNNER_USER_PREFIX = "runner-"
DATABASE_CA_FILE = "/etc/mlops-platform/postgresql-ca.crt"
# The gateway checks MLflow and the job API on other hosts with the CA of the MLflow
# hosts (a private one, on the controller under <credentials>/<first MLflow host>/).
MLFLOW_CA_FILE = "/etc/mlops-platform/mlflow-ca.crt"
MLFLOW_CA_SUBDIR = "mlflow-tls"
# One name every MLflow host's certificate carries besides its own: nginx checks every
# server of an upstream against one name (proxy_ssl_name).
MLFLOW_TLS_NAME = "mlops-mlflow"

# The defaults of the settings other roles publish their endpoints with. Each is also the
# default in its role's defaults/main.yml (a unit test keeps the two equal); the model
# reads the inventory's value of the providing host and falls back to these.
PUBLISHED_DEFAULTS = {
    "postgresql_port": 5432,
    "postgresql_tls_enabled": True,
    "minio_port": 9000,
    "minio_tls_enabled": False,
    "jobs_api_port": 5080,
    "mlflow_tls_enabled": True,
    "gateway_tls_enabled": True,
    "gateway_public_host": "",
}
# The keys an entry may carry, and the role that reads each (documentation and typo check).
ENTRY_KEYS = (
    "name", "state", "mlflow_port", "gateway_port", "server_name", "bucket", "users", "allow", "upstreams",
    "cors_origins", "workers", "environment", "database_pool_size", "database_max_overflow",
    "enable_job_execution", "noncurrent_version_days", "features", "git_credentials", "s3", "postgresql",
)
# A PostgreSQL server the platform does not run (a managed database): an entry's
# `postgresql` over the platform-wide `mlops_postgresql` (inventory), each key of the
# entry winning. Reached over TCP with TLS, its certificate verified (verify-full) with
# ca_file; an administrative login with CREATEDB and CREATEROLE (no superuser) makes
# each service's database and login role, as on the platform's own server.
POSTGRESQL_KEYS = ("host", "port", "ca_file", "admin_user", "admin_password", "admin_database")
POSTGRESQL_ROLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"

# An artifact store the platform does not run (AWS S3, Ceph RGW, an institution's store, a
# user's own MinIO): an entry's `s3`, over the platform-wide `mlops_s3` (inventory), each
# key of the entry winning. The bucket is the entry's `bucket`; it must exist unless
# create_bucket lets the given key make it. No admin API: MLflow signs with these keys.
S3_KEYS = ("endpoint_url", "access_key", "secret_key", "region", "addressing_style", "ca_file", "create_bucket")
S3_ADDRESSING_STYLES = ("path", "virtual")
S3_URL_PATTERN = r"^https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\])(:[0-9]{1,5})?/?$"
S3_REGION_PATTERN = r"^[a-z0-9-]{1,32}$"
# Where an MLflow host keeps an external store's CA (the entry's ca_file, from the controller).
S3_CA_DIR = "/etc/mlflow/s3-ca"
# MLflow features the platform does not operate, and the routes (nginx regular
# expressions over the URI) of each, which the gateway refuses unless an entry's
# `features` lists the feature. Each lets a user make the server act beyond tracking:
# webhooks make it send requests to any URL (request forgery), the AI gateway keeps
# provider secrets and forwards prompts to them, scorer invocation runs judges from the
# server. tests/unit/plugins/module_utils/test_platform_model.py checks them against
# the routes of the MLflow version the roles install.
OPTIONAL_FEATURES = {
    "webhooks": [r"^/(ajax-)?api/2\.0/mlflow/webhooks(/|$)"],
    "ai_gateway": [r"^/(ajax-)?api/3\.0/mlflow/gateway/", r"^/ajax-api/2\.0/mlflow/gateway-proxy$", r"^/gateway/"],
    "scorer_invocation": [r"^/(ajax-)?api/3\.0/mlflow/scorer/invoke$"],
}
# Per-service MLflow settings copied into a record when the entry gives them.
SERVER_SETTINGS = ("workers", "environment", "database_pool_size", "database_max_overflow",
                   "enable_job_execution", "noncurrent_version_days")


class ModelError(ValueError):
    """An entry or setting that breaks a rule; the message names the variable and the rule."""


# ---------------------------------------------------------------- names of a service's resources


def name_problem(name):
    """Why name is not a valid tracking service name, or None when it is."""
    if not isinstance(name, str) or not re.match(NAME_PATTERN, name):
        return "name %r is not a valid tracking service name: %s" % (name, NAME_RULE)
    return None


def database_name(name):
    """The service's PostgreSQL database, also its login role: mlflow_ plus the name, hyphens as underscores."""
    return "mlflow_" + name.replace("-", "_")


def bucket_name(name):
    """The default bucket of the service, also its MinIO user and policy: mlflow- plus the name."""
    return "mlflow-" + name


def unit_name(name):
    """The systemd instance that runs the service."""
    return "mlflow@%s.service" % name


def secrets_dir(credentials_dir, name):
    """Where the service's generated secrets are kept on the controller."""
    return "%s/tracking-services/%s" % (credentials_dir, name)


def runner_user(host):
    """The gateway user a runner host has on the services it runs jobs of."""
    return RUNNER_USER_PREFIX + host


# ---------------------------------------------------------------- the inventory


def _get(variables, key, default=None):
    """A host variable, default when it is absent or None."""
    try:
        value = variables[key] if key in variables else None
    except Exception:  # pylint: disable=broad-except  # an undefined template reads as unset
        value = None
    return default if value is None else value


def host_vars(hostvars, host):
    return hostvars[host] if host in hostvars else {}


def host_address(hostvars, host, local=None):
    """The address the platform's hosts reach host at: loopback for local, else mlops_address,
    ansible_host or the inventory name."""
    if local is not None and host == local:
        return "127.0.0.1"
    variables = host_vars(hostvars, host)
    for key in ("mlops_address", "ansible_host"):
        value = _get(variables, key)
        if value:
            return str(value)
    return str(host)


def _group(groups, name):
    return list(groups.get(name) or []) if groups else []


def _first(groups, name, local):
    members = _group(groups, name)
    return members[0] if members else local


def _bool(value):
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _port(value, variable):
    text = str(value)
    if not re.match(r"^[0-9]{1,5}$", text) or not 1 <= int(text) <= 65535:
        raise ModelError("%s must be a port, an integer from 1 to 65535, not %r" % (variable, value))
    return int(text)


def gateway_public_host(hostvars, groups, local=None):
    """The name users reach the gateway at when a service has no server_name: the first gateway
    host's gateway_public_host (or mlops_public_host), else its default IPv4 address (its facts,
    when gathered), else its platform address."""
    host = _first(groups, "gateway", local)
    variables = host_vars(hostvars, host)
    given = _get(variables, "gateway_public_host") or _get(variables, "mlops_public_host")
    if given:
        return str(given)
    facts = _get(variables, "ansible_facts", {}) or {}
    address = (_get(facts, "default_ipv4", {}) or {}).get("address")
    return str(address) if address else host_address(hostvars, host)


def postgresql_primary(hostvars, groups, local=None):
    """The postgresql host that takes writes: postgresql_primary as the first postgresql host's
    inventory sets it (playbooks/failover.yml moves it), else that first host. Every other
    postgresql host is its streaming standby."""
    first = _first(groups, "postgresql", local)
    primary = _get(host_vars(hostvars, first), "postgresql_primary") or first
    members = _group(groups, "postgresql")
    if members and primary not in members:
        raise ModelError("postgresql_primary must name a host of the postgresql group (%s), not %r"
                         % (", ".join(members), primary))
    return str(primary)


def minio_on_loopback(hostvars, groups):
    """MinIO listens on loopback alone when its host is the platform's only MinIO node (no
    distributed cluster) and its only MLflow host: nothing else has a reason to reach it.
    Otherwise it listens on its host's platform address, also for clients on that host."""
    minio = _group(groups, "minio")
    return (len(minio) == 1 and _group(groups, "mlflow") == minio
            and not _get(host_vars(hostvars, minio[0]), "minio_nodes"))


def platform_endpoints(hostvars, groups, local=None):
    """How each service of the platform is reached from the host local, from the inventory alone."""
    database_host = postgresql_primary(hostvars, groups, local)
    minio_host = _first(groups, "minio", local)
    mlflow_host = _first(groups, "mlflow", local)
    gateway_host = _first(groups, "gateway", local)

    def setting(host, key):
        return _get(host_vars(hostvars, host), key, PUBLISHED_DEFAULTS[key])

    minio_scheme = "https" if _bool(setting(minio_host, "minio_tls_enabled")) else "http"
    minio_port = _port(setting(minio_host, "minio_port"), "minio_port of %s" % minio_host)
    minio_loopback = not _group(groups, "minio") or minio_on_loopback(hostvars, groups)
    minio_address = host_address(hostvars, minio_host, local if minio_loopback else None)
    gateway_tls = _bool(setting(gateway_host, "gateway_tls_enabled"))
    # The gateway reaches MLflow and the job API across hosts on any platform where the
    # MLflow and gateway hosts are not one single host: they then listen on their hosts'
    # platform addresses (never loopback, also for a gateway on the same host) and, with
    # mlflow_tls_enabled, serve TLS.
    mlflow_across_hosts = len(set(_group(groups, "mlflow")) | set(_group(groups, "gateway"))) > 1
    mlflow_tls = _bool(setting(mlflow_host, "mlflow_tls_enabled")) and mlflow_across_hosts
    mlflow_scheme = "https" if mlflow_tls else "http"
    return {
        "postgresql": {
            "host": database_host,
            "address": host_address(hostvars, database_host, local),
            "port": _port(setting(database_host, "postgresql_port"), "postgresql_port of %s" % database_host),
            # Remote clients must use TLS (hostssl) and verify the server with its CA;
            # on loopback a client needs none.
            "tls": _bool(setting(database_host, "postgresql_tls_enabled")),
            "verify": _bool(setting(database_host, "postgresql_tls_enabled"))
            and host_address(hostvars, database_host, local) != "127.0.0.1",
            # Where a client host keeps the server's CA (mlops.platform._common database_ca),
            # and the host under whose credentials directory the controller keeps it: the
            # first postgresql host's CA signs every postgresql host's certificate, so a
            # failover changes no client's CA.
            "ca_file": DATABASE_CA_FILE,
            "ca_host": _first(groups, "postgresql", local),
            # The streaming standbys of the primary: every other postgresql host.
            "standbys": [member for member in _group(groups, "postgresql") if member != database_host],
        },
        "s3": {
            "host": minio_host,
            "address": minio_address,
            "port": minio_port,
            "scheme": minio_scheme,
            "tls": minio_scheme == "https",
            "url": "%s://%s:%d" % (minio_scheme, minio_address, minio_port),
            # MinIO listens on loopback alone (minio_on_loopback).
            "loopback": minio_loopback,
        },
        "mlflow": {
            "host": mlflow_host,
            "across_hosts": mlflow_across_hosts,
            "tls": mlflow_tls,
            "scheme": mlflow_scheme,
            # Where a gateway host keeps the MLflow hosts' CA, where the controller keeps it
            # (under the credentials directory), and the name the gateway checks.
            "ca_file": MLFLOW_CA_FILE,
            "ca_dir": "%s/%s" % (mlflow_host, MLFLOW_CA_SUBDIR),
            "tls_name": MLFLOW_TLS_NAME,
        },
        "jobs_api": {
            "host": mlflow_host,
            "address": host_address(hostvars, mlflow_host, None if mlflow_across_hosts else local),
            "port": _port(setting(mlflow_host, "jobs_api_port"), "jobs_api_port of %s" % mlflow_host),
            "tls": mlflow_tls,
            "scheme": mlflow_scheme,
        },
        "gateway": {
            "host": gateway_host,
            "scheme": "https" if gateway_tls else "http",
            "tls": gateway_tls,
            "public_host": gateway_public_host(hostvars, groups, local),
        },
    }


def firewall_openings(records, hostvars, groups, host, extra=(), trusted=()):
    """The platform's ports on host and who may reach each, from the inventory alone:
    [{port, service, sources}], sources the platform addresses of the inventory hosts
    that need the port and CIDR networks, or None for everyone. records are
    tracking_services' (for the MLflow and gateway ports and each service's allow list);
    extra further [{port, sources}] (the operator's), trusted sources every port admits.
    One item per port: the sources of every opening of a port together."""
    def addresses(*names):
        return sorted({host_address(hostvars, member) for name in names for member in _group(groups, name)})

    def setting(key):
        return _get(host_vars(hostvars, host), key, PUBLISHED_DEFAULTS.get(key))

    openings = []
    if host in _group(groups, "postgresql"):
        # The other postgresql hosts stream from this one as standbys (and this one from
        # them after a failover).
        peers = [host_address(hostvars, member) for member in _group(groups, "postgresql") if member != host]
        openings.append({"port": _port(setting("postgresql_port"), "postgresql_port of %s" % host),
                         "service": "postgresql", "sources": sorted(set(addresses("mlflow", "runners") + peers))})
    if host in _group(groups, "minio"):
        minio = addresses("mlflow", "minio")
        openings.append({"port": _port(setting("minio_port"), "minio_port of %s" % host), "service": "minio",
                         "sources": minio})
        if _bool(_get(host_vars(hostvars, host), "minio_console_enabled", False)):
            openings.append({"port": _port(_get(host_vars(hostvars, host), "minio_console_port", 9001),
                                           "minio_console_port of %s" % host),
                             "service": "minio console", "sources": minio})
    present = [r for r in records if r["present"]]
    if host in _group(groups, "mlflow"):
        openings += [{"port": r["mlflow_port"], "service": r["unit"], "sources": addresses("gateway")}
                     for r in present if r["mlflow_port"]]
        openings.append({"port": _port(setting("jobs_api_port"), "jobs_api_port of %s" % host),
                         "service": "job API", "sources": addresses("gateway")})
    if host in _group(groups, "gateway"):
        openings += [{"port": r["gateway_port"], "service": "gateway of " + r["name"],
                      "sources": sorted(r["allow"]) or None} for r in present]
    openings += [{"port": _port(o.get("port"), "the port of firewall_allow"),
                  "service": o.get("service") or "firewall_allow",
                  "sources": list(o.get("sources") or [])} for o in extra]
    merged = {}
    for opening in openings:
        port = merged.setdefault(opening["port"], {"port": opening["port"], "services": [], "sources": []})
        port["services"].append(opening["service"])
        if opening["sources"] is None or port["sources"] is None:
            port["sources"] = None
        else:
            port["sources"] += opening["sources"]
    return [{"port": number, "service": ", ".join(merged[number]["services"]),
             "sources": None if merged[number]["sources"] is None
             else sorted(set(merged[number]["sources"]) | set(trusted))} for number in sorted(merged)]


# ---------------------------------------------------------------- tracking services


def _problem(variable, entry_name, rule, value):
    return ModelError("%s entry %s: %s (got %s)" % (variable, _show(entry_name), rule, _show(value)))


def _show(value):
    return repr(value) if not isinstance(value, str) else '"%s"' % value


def _list(entry, key, variable, name):
    value = entry.get(key)
    if value is None or value == "":
        return []
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, (list, tuple)):
        raise _problem(variable, name, "%s must be a list" % key, value)
    return list(value)


def _check_entry(entry, variable):
    if not isinstance(entry, dict):
        raise ModelError("%s: every entry must be a mapping with at least name and mlflow_port, got %r"
                         % (variable, entry))
    name = entry.get("name")
    if not isinstance(name, str) or not re.match(NAME_PATTERN, name):
        raise _problem(variable, name, "name must be " + NAME_RULE, name)
    unknown = sorted(set(entry) - set(ENTRY_KEYS))
    if unknown:
        raise _problem(variable, name, "unknown keys %s; an entry may have %s" % (unknown, ", ".join(ENTRY_KEYS)),
                       unknown)
    state = entry.get("state") or "started"
    if state not in STATES:
        raise _problem(variable, name, "state must be one of %s" % ", ".join(STATES), state)
    for key, low in (("mlflow_port", 1024), ("gateway_port", 1)):
        value = entry.get(key)
        # Without mlflow_port a service is served from the upstreams its entry lists.
        if value is None and (key == "gateway_port" or entry.get("upstreams")):
            continue
        text = str(value)
        if not re.match(r"^[0-9]{1,5}$", text) or not low <= int(text) <= 65535:
            raise _problem(variable, name, "%s must be an integer from %d to 65535" % (key, low), value)
    server_name = entry.get("server_name") or ""
    if server_name and not (isinstance(server_name, str) and re.match(HOST_PATTERN, server_name)):
        raise _problem(variable, name, "server_name must be empty or a bare DNS name or IPv4 address with no "
                       "scheme, port or path", server_name)
    bucket = entry.get("bucket") or bucket_name(name)
    if not isinstance(bucket, str) or not re.match(BUCKET_PATTERN, bucket):
        raise _problem(variable, name, "bucket must be 3 to 63 lowercase letters, digits, dots and hyphens", bucket)
    for origin in _list(entry, "cors_origins", variable, name):
        if not isinstance(origin, str) or not re.match(ORIGIN_PATTERN, origin):
            raise _problem(variable, name, "cors_origins must list origins, http(s)://host[:port], or *", origin)
    for address in _list(entry, "allow", variable, name):
        if not isinstance(address, str) or not re.match(CIDR_PATTERN, address):
            raise _problem(variable, name, "allow must list IPv4/IPv6 addresses or CIDR networks such as "
                           "10.0.0.0/8", address)
    for upstream in _list(entry, "upstreams", variable, name):
        if not (isinstance(upstream, str) and re.match(UPSTREAM_PATTERN, upstream)
                and int(upstream.rsplit(":", 1)[1]) <= 65535):
            raise _problem(variable, name, "upstreams must list host:port", upstream)
    workers = entry.get("workers")
    if workers is not None and not re.match(r"^[1-9][0-9]?$", str(workers)):
        raise _problem(variable, name, "workers must be 1 to 99", workers)
    for feature in _list(entry, "features", variable, name):
        if feature not in OPTIONAL_FEATURES:
            raise _problem(variable, name, "features must list some of %s (MLflow features the gateway refuses "
                           "unless listed)" % ", ".join(sorted(OPTIONAL_FEATURES)), feature)
    _check_git_credentials(entry, variable, name)
    if entry.get("environment") is not None and not isinstance(entry.get("environment"), dict):
        raise _problem(variable, name, "environment must be a mapping of MLFLOW_* settings", entry["environment"])
    _check_users(entry, variable, name)
    return name, state


def _overlay(entry, key, platform_value, allowed, variable, name):
    """The entry's mapping `key` over the platform-wide one (mlops_<key>), each checked for
    its type and keys; {} when neither is given."""
    given = entry.get(key)
    for source, value in (("mlops_" + key, platform_value), (key, given)):
        if value not in (None, "", {}) and not isinstance(value, dict):
            raise _problem(variable, name, "%s must be a mapping of %s" % (source, ", ".join(allowed)),
                           "(not a mapping)")
        unknown = sorted(set(value or {}) - set(allowed))
        if unknown:
            raise _problem(variable, name, "%s may have %s" % (source, ", ".join(allowed)), unknown)
    return dict(platform_value or {}, **(given or {}))


def _check_s3(entry, platform_s3, variable, name):
    """The entry's external artifact store: its `s3` over mlops_s3, checked; {} for the
    platform's MinIO. The message names the key, never the secret key."""
    store = _overlay(entry, "s3", platform_s3, S3_KEYS, variable, name)
    if not store:
        return {}
    url = store.get("endpoint_url")
    if not (isinstance(url, str) and re.match(S3_URL_PATTERN, url)):
        raise _problem(variable, name, "s3.endpoint_url must be http(s)://host[:port] without a path or credentials",
                       url if isinstance(url, str) and "@" not in url else "(not shown)")
    access_key = store.get("access_key")
    if not isinstance(access_key, str) or not re.match(r"^\S{3,128}$", access_key):
        raise _problem(variable, name, "s3.access_key must be the store's access key, 3 to 128 characters without "
                       "spaces", access_key)
    secret = store.get("secret_key")
    if not isinstance(secret, str) or not re.match(r"^\S{8,128}$", secret):
        raise _problem(variable, name, "s3.secret_key must be the access key's secret, 8 to 128 characters without "
                       "spaces (a vaulted string)", "(not shown)")
    region = store.get("region") or ""
    if region and not (isinstance(region, str) and re.match(S3_REGION_PATTERN, region)):
        raise _problem(variable, name, "s3.region must be empty or a region name such as eu-west-1", region)
    style = store.get("addressing_style") or "path"
    if style not in S3_ADDRESSING_STYLES:
        raise _problem(variable, name, "s3.addressing_style must be %s (path: https://host/bucket/key, the S3-"
                       "compatible stores' usual; virtual: https://bucket.host/key)"
                       % " or ".join(S3_ADDRESSING_STYLES), style)
    ca_file = store.get("ca_file") or ""
    if ca_file and not (isinstance(ca_file, str) and ca_file.startswith("/")):
        raise _problem(variable, name, "s3.ca_file must be an absolute path on the controller to the PEM file of the "
                       "CA the endpoint's certificate is signed by", ca_file)
    if ca_file and not url.startswith("https://"):
        raise _problem(variable, name, "s3.ca_file needs an https:// endpoint_url", url)
    create = store.get("create_bucket", False)
    if not isinstance(create, bool):
        raise _problem(variable, name, "s3.create_bucket must be true or false", create)
    return {"endpoint_url": url.rstrip("/"), "access_key": access_key, "region": region, "addressing_style": style,
            "ca_file": ca_file, "create_bucket": create}


def _check_postgresql(entry, platform_postgresql, variable, name):
    """The entry's external database server: its `postgresql` over mlops_postgresql,
    checked; {} for the platform's. The message names the key, never the password."""
    server = _overlay(entry, "postgresql", platform_postgresql, POSTGRESQL_KEYS, variable, name)
    if not server:
        return {}
    host = server.get("host")
    if not (isinstance(host, str) and re.match(HOST_PATTERN, host)):
        raise _problem(variable, name, "postgresql.host must be the server's DNS name or IPv4 address", host)
    port = server.get("port") or 5432
    if not re.match(r"^[0-9]{1,5}$", str(port)) or not 1 <= int(port) <= 65535:
        raise _problem(variable, name, "postgresql.port must be an integer from 1 to 65535", port)
    ca_file = server.get("ca_file")
    if not (isinstance(ca_file, str) and ca_file.startswith("/")):
        raise _problem(variable, name, "postgresql.ca_file must be an absolute path on the controller to the PEM file "
                       "of the CA that signs the server's certificate (the platform verifies it, verify-full)", ca_file)
    for key in ("admin_user", "admin_database"):
        value = server.get(key) or ("postgres" if key == "admin_database" else None)
        if not (isinstance(value, str) and re.match(POSTGRESQL_ROLE_PATTERN, value)):
            raise _problem(variable, name, "postgresql.%s must be a PostgreSQL name: letters, digits and underscores, "
                           "not starting with a digit, at most 63" % key, value)
    password = server.get("admin_password")
    if not isinstance(password, str) or not password or re.search(r"\s", password):
        raise _problem(variable, name, "postgresql.admin_password must be the admin_user's password, a non-empty "
                       "string without spaces (a vaulted string)", "(not shown)")
    return {"host": host, "port": int(port), "ca_file": ca_file, "admin_user": server["admin_user"],
            "admin_database": server.get("admin_database") or "postgres"}


def _check_users(entry, variable, name):
    """The users' names and given passwords; the message names users, never a password."""
    users = _list(entry, "users", variable, name)
    names = []
    for user in users:
        if not isinstance(user, dict) or not isinstance(user.get("user_name"), str) \
                or not re.match(USER_PATTERN, user["user_name"]):
            shown = user.get("user_name") if isinstance(user, dict) else "(not a mapping)"
            raise _problem(variable, name, "users must be a list of {user_name, pass} whose user_name is letters, "
                           "digits, dot, underscore or hyphen (at most 64, no colon)", shown)
        names.append(user["user_name"])
        given = user.get("pass")
        if given not in (None, "") and not (isinstance(given, str)
                                            and PASSWORD_LENGTHS[0] <= len(given) <= PASSWORD_LENGTHS[1]):
            raise _problem(variable, name, "the pass of a user must be a string of %d to %d characters; give one or "
                           "leave pass out to have one generated" % PASSWORD_LENGTHS, user["user_name"])
    if len(set(names)) != len(names):
        raise _problem(variable, name, "users must have unique user names", names)
    return users


def _check_git_credentials(entry, variable, name):
    """The runners' credentials for the service's private repositories; the message names
    the url, never a token."""
    credentials = _list(entry, "git_credentials", variable, name)
    for credential in credentials:
        url = credential.get("url") if isinstance(credential, dict) else None
        unknown = set(credential) - {"url", "username", "token"} if isinstance(credential, dict) else set()
        if not (isinstance(url, str) and re.match(GIT_URL_PATTERN, url)) or unknown:
            # A URL with a user part may hold a secret: not repeated.
            raise _problem(variable, name, "git_credentials must be a list of {url, token, username} whose url is "
                           "an http(s):// URL prefix without a user or password in it",
                           "(a URL with a user part, not shown)" if "@" in str(url) else url)
        token = credential.get("token")
        if not isinstance(token, str) or not token.strip() or re.search(r"\s", token):
            raise _problem(variable, name, "the token of git_credentials must be a non-empty string without "
                           "spaces or line breaks", url)
        username = credential.get("username")
        if username is not None and not (isinstance(username, str) and re.match(USER_PATTERN, username)):
            raise _problem(variable, name, "the username of git_credentials must be letters, digits, dot, "
                           "underscore or hyphen (default git)", url)
    urls = [c["url"].rstrip("/") for c in credentials]
    if len(set(urls)) != len(urls):
        raise _problem(variable, name, "git_credentials must give each url once", urls)
    return credentials


def _check_unique(records, variable):
    names = [r["name"] for r in records]
    if len(set(names)) != len(names):
        raise ModelError("%s: names must be unique, got %s" % (variable, names))
    ports = [r["mlflow_port"] for r in records if r["mlflow_port"]]
    public = [r["gateway_port"] for r in records if r["present"]]
    if len(set(ports)) != len(ports) or len(set(public)) != len(public) or set(ports) & set(public):
        raise ModelError("%s: no two services may share a port: every mlflow_port and every gateway_port must differ "
                         "from all the others; mlflow_ports %s, gateway_ports %s" % (variable, ports, public))


def _runner_users(name, present, hostvars, groups):
    """runner-<host> for each runner host that runs jobs of the service (its runner_services,
    by default every service that is not absent)."""
    users = []
    for host in _group(groups, "runners"):
        chosen = _get(host_vars(hostvars, host), "runner_services")
        if (name in chosen) if isinstance(chosen, (list, tuple)) else present:
            users.append(runner_user(host))
    return users


def tracking_services(entries, hostvars=None, groups=None, local=None, credentials_dir="",
                      variable="mlops_tracking_services"):
    """One secret-free record per entry of mlops_tracking_services, checked against every rule.

    local is the host asking (its own services are reached on loopback); credentials_dir the
    controller directory of generated secrets. Raises ModelError naming variable and the rule."""
    hostvars = hostvars if hostvars is not None else {}
    groups = groups if groups is not None else {}
    if entries is None or entries == "":
        entries = []
    if isinstance(entries, (str, bytes, dict)) or not isinstance(entries, (list, tuple)):
        raise ModelError("%s must be a list of tracking services, got %r" % (variable, entries))
    endpoints = platform_endpoints(hostvars, groups, local)
    # The platform-wide external store, an inventory variable as the endpoints' settings are.
    platform_s3 = _get(host_vars(hostvars, _first(groups, "mlflow", local)), "mlops_s3")
    platform_postgresql = _get(host_vars(hostvars, _first(groups, "mlflow", local)), "mlops_postgresql")
    gateway = endpoints["gateway"]
    default_port = 443 if gateway["tls"] else 80
    mlflow_hosts = _group(groups, "mlflow")
    records = []
    for entry in entries:
        name, state = _check_entry(entry, variable)
        present = state != "absent"
        mlflow_port = int(entry["mlflow_port"]) if entry.get("mlflow_port") is not None else None
        gateway_port = int(entry.get("gateway_port") or default_port)
        public_host = entry.get("server_name") or gateway["public_host"]
        public_url = "%s://%s%s" % (gateway["scheme"], public_host,
                                    "" if gateway_port == default_port else ":%d" % gateway_port)
        upstreams = _list(entry, "upstreams", variable, name)
        if not upstreams:
            near = None if endpoints["mlflow"]["across_hosts"] else local
            upstreams = ["%s:%d" % (host_address(hostvars, host, near), mlflow_port)
                         for host in (mlflow_hosts or [local])]
        users = _check_users(entry, variable, name)
        store = _check_s3(entry, platform_s3, variable, name)
        server = _check_postgresql(entry, platform_postgresql, variable, name)
        secrets = secrets_dir(credentials_dir, name)
        runners = _runner_users(name, present, hostvars, groups)
        record = {
            "name": name,
            "state": state,
            "present": present,
            "database": database_name(name),
            # The database server: the platform's (the postgresql group's primary), or an
            # external one the entry names, reached over TLS (the admin password stays in
            # the entry).
            "postgresql": dict(server, external=True) if server else {"external": False},
            "bucket": entry.get("bucket") or bucket_name(name),
            "unit": unit_name(name),
            "secrets_dir": secrets,
            "database_password_file": secrets + "/database.password",
            "s3_secret_key_file": secrets + "/s3_secret_key",
            "users_dir": secrets + "/users",
            # The artifact store: the platform's MinIO (a user and policy of the bucket's
            # name, its secret generated into s3_secret_key_file), or an external store
            # with the entry's keys (the secret key stays in the entry).
            "s3": dict(store, external=True, ca_host_file="%s/%s.crt" % (S3_CA_DIR, name) if store["ca_file"] else "")
            if store else {"external": False, "access_key": entry.get("bucket") or bucket_name(name)},
            "mlflow_port": mlflow_port,
            "gateway_port": gateway_port,
            "server_name": entry.get("server_name") or "",
            "public_host": public_host,
            "public_url": public_url,
            # The Host headers MLflow accepts: the public name (bare on the scheme's default
            # port, as clients send it there), and loopback on both ports for checks on the host.
            "allowed_hosts": (["%s:%d" % (public_host, gateway_port)]
                              + ([public_host] if gateway_port in (80, 443) else [])
                              + (["127.0.0.1:%d" % mlflow_port, "localhost:%d" % mlflow_port] if mlflow_port else [])
                              + ["127.0.0.1:%d" % gateway_port, "localhost:%d" % gateway_port]),
            "cors_origins": [public_url] + _list(entry, "cors_origins", variable, name),
            "allow": _list(entry, "allow", variable, name),
            "features": _list(entry, "features", variable, name),
            # The gateway answers 403 to these routes (OPTIONAL_FEATURES not listed).
            "refused_routes": [route for feature in sorted(OPTIONAL_FEATURES)
                               if feature not in _list(entry, "features", variable, name)
                               for route in OPTIONAL_FEATURES[feature]],
            "upstreams": upstreams,
            # Where the runners fetch with a credential (the tokens stay in the entry).
            "git_urls": [c["url"] for c in _list(entry, "git_credentials", variable, name)],
            "users": [u["user_name"] for u in users],
            "generated_users": [u["user_name"] for u in users if u.get("pass") in (None, "")],
            "runner_users": runners,
            # Every basic-auth user of the service at the gateway, and those whose
            # password is generated (runners' always are).
            "logins": [u["user_name"] for u in users] + runners,
            "generated_logins": [u["user_name"] for u in users if u.get("pass") in (None, "")] + runners,
        }
        for key in SERVER_SETTINGS:
            if entry.get(key) is not None:
                record[key] = entry[key]
        records.append(record)
    _check_unique(records, variable)
    return records
