#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mlops.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: tracking_service
short_description: One MLflow tracking service on this host
version_added: 0.1.0
author: mlops.platform maintainers (@mlops-platform)
description:
  - Manages one named MLflow tracking service on the host the module runs on, the systemd instance
    C(mlflow@NAME.service) of the template unit that the role C(mlops.platform.mlflow) installs.
  - Writes its environment file C(CONFIG_DIR/NAME.env) (systemd C(EnvironmentFile=) syntax, owned by root, mode
    0600, in a directory of mode 0700), from which C(mlflow server) reads all its settings. Only this module writes
    that file; it is rewritten whole when any setting differs.
  - Before a start, checks the schema of the backend store with the venv's MLflow. When the schema is behind the
    version this MLflow needs, stops the service, backs the database up (C(pg_dump -Fc), or a copy of a SQLite
    file) into O(backup_dir), upgrades the schema and starts the service again. An empty database needs nothing,
    since the server creates the schema at its first start. A database whose revision this MLflow does not know (it was
    upgraded by a newer MLflow) fails the module before anything changes.
  - After a start or restart, waits until C(/health) answers C(OK); when it does not, fails with the last lines of
    the unit's journal, secrets masked.
  - Bounds uvicorn's graceful shutdown to 5 seconds (C(MLFLOW_UVICORN_OPTS)), so that a stop, and the death of the
    service's main process, ends every worker within the unit's stop timeout and the service restarts at once.
    uvicorn's access log is off (C(--no-access-log)); the gateway logs every request with its user.
  - With O(venv_link), an upgrade is one service at a time and undone when it fails. The unit runs MLflow through
    that symlink; pointing it at another O(venv) (another MLflow version) rewrites the configuration, upgrades the
    schema after a backup when the new MLflow needs that, and restarts the service. When the upgrade or the health
    check fails, the module stops the service, restores the database from the backup (only when one was taken for
    this run), puts the previous configuration and link back, starts the service, waits for it to be healthy and
    then fails, saying what was rolled back.
  - The backend store URI reaches the venv's python and C(pg_dump) through their environment, never on a command
    line. The returned diff masks the database password, C(AWS_SECRET_ACCESS_KEY) and every variable whose name
    contains C(PASSWORD), C(SECRET) or C(TOKEN).
  - Never touches the data of a service. O(state=absent) removes its unit's configuration, not its database, its
    bucket or its backups.
  - Runs as root.
attributes:
  check_mode:
    support: full
    description:
      - Writes, starts and stops nothing; reports in RV(actions) what it would do. The schema check runs, since it
        only reads; the backup and the upgrade do not. When the venv does not exist yet, the check is skipped with
        a warning.
  diff_mode:
    support: full
    description: Shows the environment file before and after, secrets masked.
  platform:
    support: full
    platforms: posix
    description: Linux hosts with systemd.
options:
  name:
    description:
      - Name of the tracking service; the unit is C(mlflow@NAME.service).
      - 1 to 30 lowercase letters, digits and hyphens, not starting or ending with a hyphen.
    type: str
    required: true
  state:
    description:
      - V(started) writes the configuration, enables the unit, upgrades the schema when needed, starts the unit (or
        restarts it when its configuration changed) and waits for it to be healthy.
      - V(present) writes the configuration and upgrades the schema when needed; it restarts the unit only when it
        was running and something changed, and never starts or enables it otherwise.
      - V(stopped) writes the configuration, stops and disables the unit.
      - V(absent) stops and disables the unit and removes its environment file. The database, the bucket and the
        backups stay.
    type: str
    choices: [present, started, stopped, absent]
    default: started
  backend_store_uri:
    description:
      - Backend store of the service, such as V(postgresql://mlflow:PASSWORD@127.0.0.1:5432/mlflow) or
        V(sqlite:////var/lib/mlflow/NAME/mlflow.db) (an absolute path). Required unless O(state=absent).
      - A V(postgresql://) URI is written as V(postgresql+psycopg2://), since SQLAlchemy 2.1 maps plain
        V(postgresql://) to psycopg 3 and the venv ships psycopg2. Other PostgreSQL drivers are refused.
      - Special characters in the password must be percent-encoded.
    type: str
  artifacts_destination:
    description:
      - Where the server stores artifacts, V(s3://BUCKET) or V(s3://BUCKET/PREFIX). Clients reach artifacts through
        the server. Required unless O(state=absent).
    type: str
  s3_endpoint_url:
    description: URL of the S3 endpoint, such as V(https://minio.example.com:9000); not given, AWS S3.
    type: str
  s3_access_key:
    description: Access key of the server's S3 user. Given together with O(s3_secret_key).
    type: str
  s3_secret_key:
    description: Secret key of O(s3_access_key).
    type: str
  s3_ignore_tls:
    description: Do not verify the TLS certificate of O(s3_endpoint_url).
    type: bool
    default: false
  host:
    description:
      - Address the server listens on. Keep the default behind a gateway on the same host.
    type: str
    default: 127.0.0.1
  tls_certificate:
    description:
      - Certificate file the server serves TLS with (uvicorn's C(--ssl-certfile), through C(MLFLOW_UVICORN_OPTS));
        with O(tls_key). Not given, the server speaks plain HTTP.
      - The file must be readable by the service's user; the health check then uses https, checked with O(tls_ca).
    type: path
  tls_key:
    description: Private key file of O(tls_certificate), readable by the service's user.
    type: path
  tls_ca:
    description:
      - CA file the health check verifies the server's certificate with, and the name the server listens on
        (O(host), or C(127.0.0.1) for a wildcard). Not given, the system's CAs.
    type: path
  port:
    description:
      - Port the server listens on, 1 to 65535. Required unless O(state=absent).
      - Refused before anything changes when another service's environment file in O(config_dir) has the same port.
    type: int
  workers:
    description: Number of server worker processes; each has its own database connection pool.
    type: int
    default: 2
  allowed_hosts:
    description:
      - Values of the C(Host) header the server accepts (C(MLFLOW_SERVER_ALLOWED_HOSTS)), such as the public name
        of a gateway in front of it. Not given, MLflow's default (localhost and private addresses).
      - Each entry is V(host) or V(host:port) as clients send it (C(*) wildcards allowed, IPv6 in brackets); an
        entry with a scheme such as V(https://mlflow.example.com) is refused before anything changes.
    type: list
    elements: str
  cors_origins:
    description:
      - Origins allowed to send cross-origin requests (C(MLFLOW_SERVER_CORS_ALLOWED_ORIGINS)), each
        an origin such as V(https://mlflow.example.com:8443) (no path), or V(*).
    type: list
    elements: str
  public_url:
    description:
      - URL users reach the service at, such as V(https://mlflow.example.com). Stored in the environment file
        (C(MLOPS_PUBLIC_URL)) for M(mlops.platform.tracking_service_info) and returned; the server does not use it.
    type: str
  database_pool_size:
    description: Size of each worker's database connection pool (C(MLFLOW_SQLALCHEMYSTORE_POOL_SIZE)).
    type: int
  database_max_overflow:
    description: Connections each worker may open above the pool size (C(MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW)).
    type: int
  enable_job_execution:
    description:
      - Run MLflow's job runner (C(MLFLOW_SERVER_ENABLE_JOB_EXECUTION)). Off, the server saves its consumer
        processes, about 230 MB each.
    type: bool
    default: false
  environment:
    description:
      - More environment variables for the server. Keys must be environment variable names; values are strings.
      - Variables that options set cannot be given here. The S3 defaults
        (C(MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE=path), C(AWS_REQUEST_CHECKSUM_CALCULATION=when_required),
        C(AWS_RESPONSE_CHECKSUM_VALIDATION=when_required), and C(AWS_DEFAULTS_MODE=standard), which bounds a failing
        artifact request to seconds) can be overridden.
      - Values of variables whose names contain C(PASSWORD), C(SECRET) or C(TOKEN) are masked in the diff; set
        C(no_log) on the task when any value is a secret.
    type: dict
    default: {}
  upgrade_schema:
    description:
      - Check the schema before a start and upgrade it, after a backup, when it is behind.
      - V(false) skips the check; a server whose schema is behind then refuses to start.
    type: bool
    default: true
  venv:
    description: Virtual environment MLflow is installed in. Its mlflow version is written to the environment file
      (C(MLOPS_MLFLOW_VERSION)), so an upgraded venv restarts the service.
    type: path
    default: /opt/mlflow/venv
  venv_link:
    description:
      - Symlink through which the service's unit runs MLflow (the role's unit runs
        C(/opt/mlflow/services/%i/bin/mlflow)); the module points it at O(venv), so every service can move to a new
        venv on its own, and removes it with O(state=absent).
      - A link that pointed at another venv with a C(bin/python) makes a failed upgrade roll back (see above).
      - Not given, the unit is expected to run the MLflow of O(venv) itself and nothing is rolled back.
    type: path
  config_dir:
    description: Directory of the environment files.
    type: path
    default: /etc/mlflow/services
  backup_dir:
    description: Directory of the backups taken before schema upgrades, C(NAME-YYYYMMDDTHHMMSSZ.dump).
    type: path
    default: /var/backups/mlflow
  wait_timeout:
    description: Seconds to wait for C(/health) to answer C(OK) after a start or restart.
    type: int
    default: 180
seealso:
  - module: mlops.platform.tracking_service_info
notes:
  - Backups before schema upgrades need C(pg_dump) of the PostgreSQL server's major version or newer on the host.
"""

EXAMPLES = r"""
- name: Tracking service team-a on PostgreSQL and MinIO
  mlops.platform.tracking_service:
    name: team-a
    backend_store_uri: "postgresql://mlflow_team_a:{{ db_password }}@127.0.0.1:5432/mlflow_team_a"
    artifacts_destination: s3://mlflow-team-a
    s3_endpoint_url: https://minio.example.com:9000
    s3_access_key: mlflow-team-a
    s3_secret_key: "{{ s3_secret_key }}"
    port: 5001
    allowed_hosts: [mlflow-a.example.com]
    public_url: https://mlflow-a.example.com
  no_log: true

- name: Stop a service but keep its configuration
  mlops.platform.tracking_service:
    name: team-b
    state: stopped
    backend_store_uri: sqlite:////var/lib/mlflow/team-b/mlflow.db
    artifacts_destination: s3://mlflow-team-b/runs
    port: 5002
  no_log: true

- name: Remove a service (its database and bucket stay)
  mlops.platform.tracking_service:
    name: team-c
    state: absent
"""

RETURN = r"""
actions:
  description: What the module did, or would do in check mode, in order.
  returned: always
  type: list
  elements: str
  sample: ["write /etc/mlflow/services/team-a.env", "enable mlflow@team-a.service", "stop mlflow@team-a.service",
           "back up database to /var/backups/mlflow/team-a-20250101T120000Z.dump",
           "upgrade schema 1b5f0d9ad7c1 -> 4a1b2c3d4e5f", "start mlflow@team-a.service"]
name:
  description: Name of the tracking service.
  returned: always
  type: str
  sample: team-a
state:
  description: State of the service after the run (what it would be, in check mode).
  returned: always
  type: str
  sample: running
  choices: [running, stopped, absent]
port:
  description: Port the server listens on.
  returned: always
  type: int
  sample: 5001
internal_url:
  description: URL of the server on its own host; null with O(state=absent).
  returned: always
  type: str
  sample: http://127.0.0.1:5001
public_url:
  description: O(public_url), or null.
  returned: always
  type: str
  sample: https://mlflow-a.example.com
schema:
  description:
    - Schema revision of the backend store after the run (what it would be, in check mode) and the revision the
      venv's MLflow needs; C(current) is null for an empty database. Null when the check did not run.
  returned: always
  type: dict
  sample: {"current": "4a1b2c3d4e5f", "head": "4a1b2c3d4e5f"}
backup:
  description: Backup taken before a schema upgrade (to be taken, in check mode), or null.
  returned: always
  type: str
  sample: /var/backups/mlflow/team-a-20250101T120000Z.dump
journal:
  description: Last lines of the unit's journal, secrets masked, when the service did not become healthy.
  returned: failure
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mlops.platform.plugins.module_utils.platform_model import name_problem, unit_name
from ansible_collections.mlops.platform.plugins.module_utils.secrets_masking import (
    changed_secrets,
    mask_env_text,
    secret_strings,
)
from ansible_collections.mlops.platform.plugins.module_utils.tracking_service import (
    TrackingServiceError,
    UnknownSchemaError,
)
from ansible_collections.mlops.platform.plugins.module_utils.tracking_service_env import (
    desired_environment,
    parse_env,
    render_env,
)
from ansible_collections.mlops.platform.plugins.module_utils.tracking_service_host import (
    TrackingServiceHost,
    internal_url,
    mlflow_version,
)
from ansible_collections.mlops.platform.plugins.module_utils.tracking_service_plan import plan_actions
from ansible_collections.mlops.platform.plugins.module_utils.tracking_service_schema import backup_file

NEEDS_CONFIG = ["backend_store_uri", "artifacts_destination", "port"]


def check_schema(module, client, uri, secrets):
    """The schema check's result, or None (with a warning) when it cannot or need not run."""
    params = module.params
    if params["state"] not in ("present", "started") or not params["upgrade_schema"]:
        return None
    if client.venv_python() is None:
        module.warn("%s has no python: schema check skipped (MLflow is not installed yet)" % params["venv"])
        return None
    try:
        return client.schema(uri, secrets)
    except TrackingServiceError as exc:
        if not module.check_mode or isinstance(exc, UnknownSchemaError):
            raise
        module.warn("schema check failed, so check mode cannot tell whether an upgrade is due: %s" % exc)
    return None


def rollback_possible(link, previous_text):
    """Whether the service can go back to the venv and configuration it ran with before."""
    return (link["current"] is not None and previous_text is not None
            and os.access(os.path.join(link["current"], "bin", "python"), os.X_OK))


def roll_back(client, name, params, link, previous_text, uri, backup, secrets, failure):
    """Put the service back on its previous venv, configuration and (after a schema upgrade)
    database, start it, and raise the failure with what was rolled back (in error.actions,
    only the steps that were carried out, also when the rollback itself fails)."""
    unit = unit_name(name)
    steps = [("stop %s" % unit, lambda: client.unit_action("stop", name))]
    if backup:
        steps.append(("restore database from %s" % backup, lambda: client.restore(uri, backup, secrets)))
    steps.extend([
        ("write %s" % client.env_path(name), lambda: client.write_env(name, previous_text)),
        ("point %s at %s" % (link["path"], link["current"]), lambda: client.set_link(link["path"], link["current"])),
        ("start %s" % unit, lambda: client.unit_action("start", name)),
    ])
    actions = []
    try:
        for description, action in steps:
            action()
            actions.append(description)
        client.wait_for_health(name, params["host"], params["port"], params["wait_timeout"], secrets,
                               tls_ca=params.get("tls_ca") if params.get("tls_certificate") else False)
    except TrackingServiceError as exc:
        raise TrackingServiceError("%s; the rollback to %s failed too: %s" % (failure, link["current"], exc),
                                   journal=exc.journal or failure.journal, actions=actions)
    raise TrackingServiceError(
        "%s; rolled back: %s runs from %s again%s and is healthy"
        % (failure, unit, link["current"], ", its database restored from %s" % backup if backup else ""),
        journal=failure.journal, actions=actions)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", default="started", choices=["present", "started", "stopped", "absent"]),
            backend_store_uri=dict(type="str", no_log=True),
            artifacts_destination=dict(type="str"),
            s3_endpoint_url=dict(type="str"),
            s3_access_key=dict(type="str", no_log=False),
            s3_secret_key=dict(type="str", no_log=True),
            s3_ignore_tls=dict(type="bool", default=False),
            host=dict(type="str", default="127.0.0.1"),
            tls_certificate=dict(type="path"),
            tls_key=dict(type="path", no_log=False),
            tls_ca=dict(type="path"),
            port=dict(type="int"),
            workers=dict(type="int", default=2),
            allowed_hosts=dict(type="list", elements="str"),
            cors_origins=dict(type="list", elements="str"),
            public_url=dict(type="str"),
            database_pool_size=dict(type="int"),
            database_max_overflow=dict(type="int"),
            enable_job_execution=dict(type="bool", default=False),
            environment=dict(type="dict", default={}),
            upgrade_schema=dict(type="bool", default=True),
            venv=dict(type="path", default="/opt/mlflow/venv"),
            venv_link=dict(type="path"),
            config_dir=dict(type="path", default="/etc/mlflow/services"),
            backup_dir=dict(type="path", default="/var/backups/mlflow"),
            wait_timeout=dict(type="int", default=180),
        ),
        required_if=[("state", state, NEEDS_CONFIG) for state in ("present", "started", "stopped")],
        required_together=[("s3_access_key", "s3_secret_key"), ("tls_certificate", "tls_key")],
        supports_check_mode=True,
    )
    params = module.params
    name, state = params["name"], params["state"]
    problem = name_problem(name)
    if problem:
        module.fail_json(msg=problem)

    client = TrackingServiceHost(module, params["config_dir"], params["venv"], params["backup_dir"])
    result = dict(changed=False, actions=[], name=name, port=params["port"], internal_url=None,
                  public_url=params["public_url"], schema=None, backup=None)
    steps = []
    done = []
    secrets = []
    try:
        desired_text, values = None, {}
        if state != "absent":
            managed, extra = desired_environment(params, mlflow_version(params["venv"]))
            owner = client.port_owner(params["port"], name)
            if owner:
                raise TrackingServiceError("port %d is already the port of tracking service %s (%s); every service "
                                           "on a host needs its own" % (params["port"], owner, client.env_path(owner)))
            desired_text = render_env(name, managed, extra)
            values = dict(managed, **extra)
            result["internal_url"] = internal_url(params["host"], params["port"], bool(params["tls_certificate"]))
        current_text, file_ok = client.read_env(name)
        current_values = parse_env(current_text)
        secrets = secret_strings(current_values, values)
        unit = client.unit_status(name)
        if state == "started" and not module.check_mode:
            if client.venv_python() is None:
                raise TrackingServiceError("%s has no bin/python: install MLflow first (the mlflow role does)"
                                           % params["venv"])
            if not unit["loaded"]:
                raise TrackingServiceError("systemd cannot load %s (%s): install the template unit mlflow@.service "
                                           "first (the mlflow role does)" % (unit["unit"], unit["load_state"]))

        uri = values.get("MLFLOW_BACKEND_STORE_URI")
        schema = check_schema(module, client, uri, secrets)
        backup = backup_file(params["backup_dir"], name, uri) if schema and schema["upgrade"] else None
        current = dict(text=current_text, file_ok=file_ok, dir=client.dir_state(), active=unit["active"],
                       enabled=unit["enabled"])
        link = None
        if params["venv_link"]:
            link = dict(path=params["venv_link"], current=client.link_target(params["venv_link"]),
                        desired=params["venv"])
        steps = plan_actions(state, name, client.env_path(name), current, desired_text, schema, backup, link)
        result.update(changed=bool(steps), actions=[description for _verb, description in steps], backup=backup)
        if schema:
            result["schema"] = dict(current=schema["head"] if schema["upgrade"] else schema["current"],
                                    head=schema["head"])

        if not module.check_mode:
            try:
                for step in steps:
                    client.apply([step], name, desired_text, uri, backup, secrets, link)
                    done.append(step[1])
                started = any(verb in ("start", "restart") for verb, _description in steps)
                if state == "started" or (state == "present" and started):
                    client.wait_for_health(name, params["host"], params["port"], params["wait_timeout"], secrets,
                                           tls_ca=params.get("tls_ca") if params.get("tls_certificate") else False)
            except TrackingServiceError as exc:
                # The steps carried out are the first len(done) of the plan.
                done_verbs = [verb for verb, _description in steps[:len(done)]]
                if "link" not in done_verbs or not rollback_possible(link, current_text):
                    raise
                roll_back(client, name, params, link, current_text, uri,
                          backup if "backup" in done_verbs else None, secrets, exc)
    except TrackingServiceError as exc:
        done.extend(exc.actions)
        result.update(changed=bool(done), actions=done)
        module.fail_json(msg=str(exc), journal=exc.journal, **result)
    except (IOError, OSError) as exc:
        result.update(changed=bool(done), actions=done)
        module.fail_json(msg="%s: %s" % (getattr(exc, "filename", None) or "tracking service", exc), **result)

    if state == "absent":
        result.update(state="absent")
    elif state == "present":
        result.update(state="running" if unit["active"] else "stopped")
    else:
        result.update(state="running" if state == "started" else "stopped")
    changed = changed_secrets(current_values, values)
    result["diff"] = dict(before=mask_env_text(current_text), after=mask_env_text(desired_text, changed),
                          before_header=client.env_path(name), after_header=client.env_path(name))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
