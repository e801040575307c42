# -*- coding: utf-8 -*-
# Copyright: mlops.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backend store database of a tracking service: its schema, its backups, its libpq settings.

The schema check and upgrade are SCHEMA_SCRIPT, run by the venv's python (so with the
MLflow, alembic and SQLAlchemy the server runs with); backups before an upgrade are
pg_dump dumps or copies of the SQLite file, named by backup_file.

Secrets never go on a command line: the backend store URI reaches the venv's python
(script_environment) and pg_dump, pg_restore and psql (pg_environment) through their
environment.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import time
from urllib.parse import parse_qs, unquote, urlsplit

from ansible_collections.mlops.platform.plugins.module_utils.tracking_service import TrackingServiceError
from ansible_collections.mlops.platform.plugins.module_utils.tracking_service_env import sqlite_path

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


def script_environment(uri):
    """The environment SCHEMA_SCRIPT reads the backend store URI from."""
    return {"MLOPS_BACKEND_STORE_URI": uri, "PGCONNECT_TIMEOUT": CONNECT_TIMEOUT}


def script_result(out):
    """The JSON object on the last line of SCHEMA_SCRIPT's output that starts with {, or None."""
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


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
