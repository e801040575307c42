# Managed by mlops.platform.postgresql; local edits are overwritten.
# Run as postgres by mlops-postgresql-backup.service with the host's python3 and the
# distribution's psycopg2 (the role installs it for its modules).
"""Back up every database of this server, and prove each dump restores.

For each database (those named with --database, or else every database that accepts
connections except postgres and the templates, found when the run starts, so that a
tracking service created since the role last ran is backed up too):

1. a read-only transaction exports its snapshot and counts the rows of every table in it;
2. pg_dump writes the dump from that same snapshot (custom format) under a temporary
   name, renamed only when complete: a failed dump never replaces a good one;
3. with --verify, the dump is restored into a scratch database and its rows counted
   again: the counts must equal those of step 1 (the runs, metrics and params of a
   tracking service, the jobs of the job queue, every table), else the backup failed;
4. the dumps beyond the newest --keep, and those older than --keep-days (when given),
   are deleted; the newest good dump is always kept.

Roles and their password hashes go to _globals/ (pg_dumpall --globals-only): a restore
onto a new server needs them. Every run ends by replacing status.json in the backup
directory: its result (ok or failed, with the error), when it finished, when the last
good run finished, and per database its dump, size and row counts. The postgresql role
reads it on every run: a failed or stale backup is drift, which the next run (the
reconcile) mends by backing up at once. A failed database does not stop the others;
the exit status is 1 when any failed."""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile

STAMP = "%Y%m%dT%H%M%SZ"
STATUS = "status.json"
SCRATCH = "mlops_backup_verify"
SOCKET_DIR = "/var/run/postgresql"
TABLES = ("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
          " WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
          " AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1, 2")


def stamp_of(name):
    """The UTC time in a dump's name (<database>-<stamp>.dump), or None."""
    try:
        return datetime.datetime.strptime(name.rsplit("-", 1)[1].split(".", 1)[0], STAMP).replace(
            tzinfo=datetime.timezone.utc)
    except (IndexError, ValueError):
        return None


def to_delete(names, keep, keep_days, now):
    """The dumps retention deletes, of the names of one database's dumps: beyond the newest
    `keep`, or older than `keep_days` days (0: no age limit). The newest is always kept."""
    dated = sorted((n for n in names if stamp_of(n)), key=stamp_of, reverse=True)
    limit = now - datetime.timedelta(days=keep_days) if keep_days else None
    return [name for index, name in enumerate(dated)
            if index > 0 and (index >= keep or (limit is not None and stamp_of(name) < limit))]


def differences(dumped, restored):
    """Tables whose row count in the restored copy differs from the snapshot the dump was
    made from, as readable lines; empty when the copy is whole."""
    def rows(count):
        return "no such table" if count is None else "%d rows" % count
    return ["%s: %s in the database, %s in the restored copy" % (table, rows(dumped.get(table)), rows(restored.get(table)))
            for table in sorted(set(dumped) | set(restored)) if dumped.get(table) != restored.get(table)]


def row_counts(cursor):
    from psycopg2 import sql
    cursor.execute(TABLES)
    counts = {}
    for schema, table in cursor.fetchall():
        cursor.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table)))
        counts[schema + "." + table] = cursor.fetchone()[0]
    return counts


class Server:
    def __init__(self, port):
        import psycopg2
        self.port = str(port)
        self.psycopg2 = psycopg2

    def connect(self, database, autocommit=False):
        connection = self.psycopg2.connect(dbname=database, host=SOCKET_DIR, port=self.port)
        connection.autocommit = autocommit
        return connection

    def run(self, *argv):
        done = subprocess.run(list(argv) + ["--host", SOCKET_DIR, "--port", self.port],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError("%s: %s" % (argv[0], done.stderr.strip() or "exit status %d" % done.returncode))

    def databases(self):
        connection = self.connect("postgres")
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate"
                               " AND datname NOT IN ('postgres', %s) ORDER BY datname", (SCRATCH,))
                return [row[0] for row in cursor.fetchall()]
        finally:
            connection.close()

    def dump(self, database, path):
        """Dump from an exported snapshot; return the row counts of that snapshot."""
        connection = self.connect(database)
        try:
            connection.set_session(isolation_level="REPEATABLE READ", readonly=True)
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_export_snapshot()")
                snapshot = cursor.fetchone()[0]
                counts = row_counts(cursor)
                self.run("pg_dump", "--format=custom", "--snapshot=" + snapshot, "--file=" + path + ".partial",
                         "--dbname=" + database)
            os.rename(path + ".partial", path)
            return counts
        except BaseException:
            if os.path.exists(path + ".partial"):
                os.unlink(path + ".partial")
            raise
        finally:
            connection.close()

    def restored_counts(self, path):
        """Restore a dump into the scratch database and count its rows; drop it after."""
        admin = self.connect("postgres", autocommit=True)
        try:
            with admin.cursor() as cursor:
                cursor.execute('DROP DATABASE IF EXISTS "%s"' % SCRATCH)
                cursor.execute('CREATE DATABASE "%s"' % SCRATCH)
            try:
                self.run("pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
                         "--dbname=" + SCRATCH, path)
                scratch = self.connect(SCRATCH)
                try:
                    with scratch.cursor() as cursor:
                        return row_counts(cursor)
                finally:
                    scratch.close()
            finally:
                with admin.cursor() as cursor:
                    cursor.execute('DROP DATABASE IF EXISTS "%s"' % SCRATCH)
        finally:
            admin.close()


def prune(directory, prefix, keep, keep_days, now):
    names = [n for n in os.listdir(directory) if n.startswith(prefix + "-") and n.endswith((".dump", ".sql"))]
    for name in to_delete(names, keep, keep_days, now):
        os.unlink(os.path.join(directory, name))


def back_up(server, database, args, now):
    directory = os.path.join(args.dir, database)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    name = "%s-%s.dump" % (database, now.strftime(STAMP))
    path = os.path.join(directory, name)
    counts = server.dump(database, path)
    if args.verify:
        wrong = differences(counts, server.restored_counts(path))
        if wrong:
            # Not a good dump: it must not push a good one out by retention.
            os.rename(path, path + ".unverified")
            raise RuntimeError("the restored copy differs from the database: " + "; ".join(wrong))
    prune(directory, database, args.keep, args.keep_days, now)
    return {"dump": path, "bytes": os.path.getsize(path), "rows": counts, "verified": args.verify}


def write_status(directory, status):
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".status.")
    with os.fdopen(handle, "w") as stream:
        json.dump(status, stream, indent=2, sort_keys=True)
        stream.write("\n")
    os.replace(temporary, os.path.join(directory, STATUS))


def previous_success(directory):
    try:
        with open(os.path.join(directory, STATUS)) as stream:
            return json.load(stream).get("last_success")
    except (OSError, ValueError, AttributeError):
        return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--port", type=int, default=5432)
    parser.add_argument("--keep", type=int, default=7)
    parser.add_argument("--keep-days", type=int, default=0)
    parser.add_argument("--verify", action="store_true")
    parser.add_argument("--database", action="append", default=[])
    args = parser.parse_args(argv)
    os.umask(0o077)
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    server = Server(args.port)
    status = {"started": now.isoformat(), "databases": {}, "errors": []}
    try:
        globals_dir = os.path.join(args.dir, "_globals")
        os.makedirs(globals_dir, mode=0o700, exist_ok=True)
        path = os.path.join(globals_dir, "globals-%s.sql" % now.strftime(STAMP))
        server.run("pg_dumpall", "--globals-only", "--file=" + path + ".partial")
        os.rename(path + ".partial", path)
        prune(globals_dir, "globals", args.keep, args.keep_days, now)
        databases = args.database or server.databases()
    except Exception as error:  # pylint: disable=broad-except
        status["errors"].append("globals: %s" % error)
        databases = args.database
    for database in databases:
        try:
            status["databases"][database] = back_up(server, database, args, now)
            print("backed up %s to %s (%s)" % (database, status["databases"][database]["dump"],
                                               "restored and counted" if args.verify else "not verified"))
        except Exception as error:  # pylint: disable=broad-except
            status["errors"].append("%s: %s" % (database, error))
    finished = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()
    status["finished"] = finished
    status["result"] = "failed" if status["errors"] else "ok"
    status["last_success"] = previous_success(args.dir) if status["errors"] else finished
    write_status(args.dir, status)
    for line in status["errors"]:
        print("backup failed: " + line, file=sys.stderr)
    return 1 if status["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
