"""mlops-jobs-migrate: create or update the queue's schema and grants, for deployment.

  mlops-jobs-migrate --settings /etc/mlops-jobs/migrate.json

The settings file (JSON, root-only: it holds the owner's password):
  database     libpq connection string of the database owner
  api_role     the login role of the submission API
  runner_role  the login role of the runner agents

Prints one JSON line, {"changed": true|false}: whether the schema or a grant differs
from before, which is what a deployment tool reports. The comparison covers tables,
columns, functions, triggers and table/column privileges of the public schema.
"""

import argparse
import hashlib
import json
import sys

import psycopg

from mlops_jobs.queue import migrate

FINGERPRINT_QUERIES = (
    "SELECT table_name, column_name, data_type, is_nullable, column_default FROM information_schema.columns"
    " WHERE table_schema = 'public' ORDER BY 1, 2",
    "SELECT routine_name, md5(routine_definition) FROM information_schema.routines"
    " WHERE routine_schema = 'public' ORDER BY 1, 2",
    "SELECT event_object_table, trigger_name, event_manipulation FROM information_schema.triggers"
    " WHERE trigger_schema = 'public' ORDER BY 1, 2, 3",
    "SELECT table_name, grantee, privilege_type FROM information_schema.table_privileges"
    " WHERE table_schema = 'public' ORDER BY 1, 2, 3",
    "SELECT table_name, column_name, grantee, privilege_type FROM information_schema.column_privileges"
    " WHERE table_schema = 'public' ORDER BY 1, 2, 3, 4",
    "SELECT version FROM schema_version ORDER BY 1",
)


def fingerprint(conn):
    digest = hashlib.sha256()
    for query in FINGERPRINT_QUERIES:
        try:
            with conn.transaction():
                rows = conn.execute(query).fetchall()
        except psycopg.errors.UndefinedTable:
            rows = None
        digest.update(repr(rows).encode())
    return digest.hexdigest()


def main(argv=None):
    options = argparse.ArgumentParser(prog="mlops-jobs-migrate", description=__doc__.split("\n", maxsplit=1)[0])
    options.add_argument("--settings", required=True, help="JSON file with database, api_role, runner_role")
    args = options.parse_args(argv)
    with open(args.settings) as handle:
        settings = json.load(handle)
    try:
        with psycopg.connect(settings["database"], autocommit=True) as conn:
            before = fingerprint(conn)
            migrate(conn, settings.get("api_role"), settings.get("runner_role"))
            changed = fingerprint(conn) != before
    except psycopg.Error as exc:
        # The message names the server and the role, never the password.
        print(json.dumps({"changed": False, "failed": True, "msg": "migrating the job queue failed: %s" % exc}))
        return 1
    print(json.dumps({"changed": changed}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
