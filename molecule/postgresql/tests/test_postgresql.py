"""Verify the postgresql scenario against the running containers.

Everything is checked from the outside the way a client sees it: the server under
systemd, logins over the podman network from an allowed and a disallowed client,
and a backup that restores. Passwords reach the clients in a .pgpass file written
through stdin (put_private_file), never on a command line.
"""

import json
import subprocess
import time

import pytest

from converged import ALPHA_PASSWORD, apply_role, converge_variables
from mlops_testing import CREDENTIALS, PG_VERSION, as_postgres, host, put_private_file

BACKUPS = "/var/backups/postgresql"

server = host("pg-server")
allowed = host("pg-client-allowed")
denied = host("pg-client-denied")


def generated_password(user):
    path = CREDENTIALS / "pg-server" / "postgresql" / ("%s.password" % user)
    assert path.stat().st_mode & 0o777 == 0o600, "%s must be 0600" % path
    # The password lookup may append " salt=..." for its own use; the password is the first word.
    return path.read_text().split()[0]


def psql(client, user, password, database, sql, sslmode="prefer"):
    """Run sql as user on pg-server from client (libpq's sslmode, verify-full with the
    platform's CA copied to the client); return the command result."""
    put_private_file(client.backend.name, "/root/.pgpass-test", "pg-server:5432:*:%s:%s\n" % (user, password))
    subprocess.run(["podman", "cp", str(CREDENTIALS / "pg-server" / "postgresql" / "ca.crt"),
                    "%s:/root/postgresql-ca.crt" % client.backend.name], check=True)
    return client.run(
        "PGPASSFILE=/root/.pgpass-test PGCONNECT_TIMEOUT=5 PGSSLMODE=%s PGSSLROOTCERT=/root/postgresql-ca.crt "
        "psql -w -h pg-server -U %s -d %s -Atc %s",
        sslmode, user, database, sql,
    )


def test_server_runs_under_systemd():
    unit = server.service("postgresql@%s-main" % PG_VERSION)
    assert unit.is_running
    assert unit.is_enabled
    assert as_postgres(server, "SHOW server_version_num").startswith(PG_VERSION)


def test_pg_hba_allows_only_scram_over_the_network():
    methods = set()
    for line in server.file("/etc/postgresql/%s/main/pg_hba.conf" % PG_VERSION).content_string.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if fields[0] == "local" and fields[2] == "postgres":
            assert fields[-1] == "peer"
            continue
        methods.add(fields[-1])
    assert methods == {"scram-sha-256"}
    assert as_postgres(server, "SHOW password_encryption") == "scram-sha-256"
    stored = as_postgres(server, "SELECT rolpassword FROM pg_authid WHERE rolname IN ('alpha', 'beta')").splitlines()
    assert len(stored) == 2
    assert all(s.startswith("SCRAM-SHA-256$") for s in stored)


def test_memory_settings_follow_ram_unless_overridden():
    memtotal_kb = int(server.check_output("awk '/^MemTotal:/ {print $2}' /proc/meminfo"))
    ram_mb = memtotal_kb // 1024
    expected_shared_buffers_mb = min(max(ram_mb // 4, 128), 16 * 1024)
    pages = int(as_postgres(server, "SELECT setting FROM pg_settings WHERE name = 'shared_buffers'"))
    assert pages * 8 // 1024 == expected_shared_buffers_mb
    # postgresql_work_mem: 8MB in converge.yml wins over the derived value.
    assert as_postgres(server, "SELECT setting FROM pg_settings WHERE name = 'work_mem'") == "8192"


@pytest.mark.parametrize("user,database", [("alpha", "tracking_alpha"), ("beta", "tracking-beta")])
def test_owner_connects_from_allowed_client(user, database):
    password = ALPHA_PASSWORD if user == "alpha" else generated_password(user)
    result = psql(allowed, user, password, database, "SELECT current_user || '@' || current_database()")
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == "%s@%s" % (user, database)


def test_clients_on_the_network_must_use_tls_and_can_verify_the_server():
    verified = psql(allowed, "alpha", ALPHA_PASSWORD, "tracking_alpha",
                    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", sslmode="verify-full")
    assert verified.rc == 0 and verified.stdout.strip() == "t", verified.stderr
    plain = psql(allowed, "alpha", ALPHA_PASSWORD, "tracking_alpha", "SELECT 1", sslmode="disable")
    assert plain.rc != 0 and "no encryption" in plain.stderr, plain.stderr


def test_disallowed_client_is_refused():
    result = psql(denied, "alpha", ALPHA_PASSWORD, "tracking_alpha", "SELECT 1")
    assert result.rc != 0
    assert "no pg_hba.conf entry" in result.stderr


def test_wrong_password_is_refused():
    result = psql(allowed, "alpha", "not-the-password-at-all", "tracking_alpha", "SELECT 1")
    assert result.rc != 0
    assert "password authentication failed" in result.stderr


def test_database_is_private_to_its_owner():
    result = psql(allowed, "alpha", ALPHA_PASSWORD, "tracking-beta", "SELECT 1")
    assert result.rc != 0
    assert "permission denied for database" in result.stderr


def backup_status():
    return json.loads(server.file(BACKUPS + "/status.json").content_string)


def test_backup_runs_from_its_timer_restores_and_counts_every_database():
    assert server.service("mlops-postgresql-backup.timer").is_enabled
    assert server.service("mlops-postgresql-backup.timer").is_running
    setup = psql(
        allowed, "alpha", ALPHA_PASSWORD, "tracking_alpha",
        "DROP TABLE IF EXISTS runs; CREATE TABLE runs (id int, name text); "
        "INSERT INTO runs VALUES (1, 'first'), (2, 'second')",
    )
    assert setup.rc == 0, setup.stderr
    # A database the role does not know (the mlflow role makes the tracking services'):
    # backed up all the same, found when the backup starts.
    as_postgres(server, "DROP DATABASE IF EXISTS made_elsewhere")
    as_postgres(server, "CREATE DATABASE made_elsewhere")
    as_postgres(server, "CREATE TABLE metrics AS SELECT generate_series(1, 500) AS step", "made_elsewhere")

    # Three runs with retention 2: two dumps stay, the newest holds the table.
    for _run in range(3):
        server.check_output("systemctl start mlops-postgresql-backup.service")
        server.check_output("sleep 1")
    dumps = sorted(server.check_output("ls -1 %s/tracking_alpha", BACKUPS).split())
    assert len(dumps) == 2, dumps
    assert all(d.startswith("tracking_alpha-") and d.endswith(".dump") for d in dumps)
    assert server.file(BACKUPS + "/tracking_alpha").mode == 0o700
    assert len(server.check_output("ls -1 %s/_globals", BACKUPS).split()) == 2

    # Each dump was restored into a scratch database and counted against the snapshot
    # it was made from; the status says so, and the scratch database is gone.
    status = backup_status()
    assert status["result"] == "ok" and status["errors"] == [] and status["last_success"] == status["finished"]
    assert set(status["databases"]) == {"tracking_alpha", "tracking-beta", "made_elsewhere"}
    assert status["databases"]["tracking_alpha"]["rows"] == {"public.runs": 2}
    assert status["databases"]["made_elsewhere"]["rows"] == {"public.metrics": 500}
    assert all(entry["verified"] for entry in status["databases"].values())
    assert status["databases"]["tracking_alpha"]["dump"] == BACKUPS + "/tracking_alpha/" + dumps[-1]
    assert server.file(BACKUPS + "/status.json").mode == 0o600
    assert as_postgres(server, "SELECT count(*) FROM pg_database WHERE datname = 'mlops_backup_verify'") == "0"

    newest = BACKUPS + "/tracking_alpha/" + dumps[-1]
    server.check_output("runuser -u postgres -- dropdb --if-exists restore_check")
    server.check_output("runuser -u postgres -- createdb restore_check")
    server.check_output("runuser -u postgres -- pg_restore --no-owner --dbname=restore_check %s", newest)
    assert as_postgres(server, "SELECT string_agg(name, ',' ORDER BY id) FROM runs", "restore_check") == "first,second"
    server.check_output("runuser -u postgres -- dropdb restore_check")
    as_postgres(server, "DROP DATABASE made_elsewhere")


# Sets status.json's times back by three days, as if no backup had run since.
AGE_STATUS = """
import datetime, json, sys
path = sys.argv[1]
status = json.load(open(path))
for key in ("started", "finished", "last_success"):
    moment = datetime.datetime.fromisoformat(status[key]) - datetime.timedelta(days=3)
    status[key] = moment.isoformat()
json.dump(status, open(path, "w"))
"""


@pytest.mark.injects_drift
def test_a_stale_or_failed_backup_is_drift_the_next_run_reports_and_mends(monkeypatch, tmp_path):
    server.check_output("python3 -c %s %s", AGE_STATUS, BACKUPS + "/status.json")
    stale = backup_status()
    server.check_output("chmod 0500 %s/tracking_alpha", BACKUPS)
    try:
        # A run finds the last good backup three days old, backs up at once, and fails
        # naming the database and pg_dump's error; the other databases are backed up all
        # the same, and the last good run is remembered.
        result = apply_role("pg-server", converge_variables())
        output = result.stdout + result.stderr
        assert result.returncode != 0
        assert "Back up now: the last good backup, at %s, is 72 hours old" % stale["last_success"] in output, \
            output[-3000:]
        assert "mlops-postgresql-backup.service: the last backup, at" in output, output[-3000:]
        assert "tracking_alpha: pg_dump" in output
        failed = backup_status()
        assert failed["result"] == "failed", failed
        assert [e.split(":")[:2] for e in failed["errors"]] == [["tracking_alpha", " pg_dump"]], failed["errors"]
        assert set(failed["databases"]) == {"tracking-beta"}
        assert failed["last_success"] == stale["last_success"]

        # Report mode (the reconcile's --check): the failure is the one drift, named.
        monkeypatch.setenv("ANSIBLE_CALLBACKS_ENABLED", "mlops.platform.drift_report")
        monkeypatch.setenv("MLOPS_DRIFT_REPORT", str(tmp_path / "drift.json"))
        result = apply_role("pg-server", converge_variables(), "--check")
        assert result.returncode == 0, result.stdout[-3000:]
        drift = json.loads((tmp_path / "drift.json").read_text())["drift"]
        assert [(d["host"], d["resource"]) for d in drift] == [
            ("pg-server", "systemd_service mlops-postgresql-backup.service")], drift
        assert "failed: tracking_alpha: pg_dump" in drift[0]["task"], drift[0]["task"]
    finally:
        server.check_output("chmod 0700 %s/tracking_alpha", BACKUPS)

    # The cause gone, the timer's next run is good again.
    server.check_output("systemctl start mlops-postgresql-backup.service")
    mended = backup_status()
    assert mended["result"] == "ok" and mended["last_success"] == mended["finished"] > failed["finished"]


# The data directory's own filesystem (molecule.yml: a 256 MB tmpfs on pg-server).
DATA = "/var/lib/postgresql"
FILLER = DATA + "/mlops-test-filler"
FULL_DISK_DB = "mlops_full_disk"


def psql_as_postgres(sql, database=FULL_DISK_DB):
    """sql run by psql as postgres on pg-server, stopping at the first error: the command result."""
    return server.run("runuser -u postgres -- psql -X -q -A -t -v ON_ERROR_STOP=1 -d %s -c %s", database, sql)


def test_a_full_disk_fails_writes_clearly_keeps_every_row_and_recovers_by_itself():
    """The data directory's filesystem full: a write that needs room fails with PostgreSQL's
    own 'No space left on device' (an error of that transaction, which leaves no row), the
    rows written before are all there, the server keeps running, and once space returns
    writes work again with no manual step."""
    as_postgres(server, "create database %s" % FULL_DISK_DB)
    try:
        psql_as_postgres("create table rows_before (id serial primary key, payload text);"
                         "insert into rows_before (payload) select md5(g::text) from generate_series(1, 5000) g;"
                         "checkpoint")
        # dd stops when nothing is left: its own 'No space left on device' is expected.
        filled = server.run("dd if=/dev/zero of=%s bs=1M", FILLER)
        assert "No space left on device" in filled.stderr, filled.stderr
        assert server.check_output("df --output=avail -B1 %s | tail -1", DATA).strip() == "0"

        big_write = psql_as_postgres("insert into rows_before (payload) "
                                     "select repeat(md5(g::text), 64) from generate_series(1, 20000) g")
        assert big_write.rc != 0
        assert "No space left on device" in big_write.stderr, big_write.stderr

        server.check_output("rm -f %s", FILLER)
        deadline = time.monotonic() + 90
        while True:
            written = psql_as_postgres("insert into rows_before (payload) values ('after the full disk')")
            if written.rc == 0:
                break
            assert time.monotonic() < deadline, "no write succeeded 90 s after space returned: %s" % written.stderr
            time.sleep(2)
        assert psql_as_postgres("select count(*), count(distinct payload) from rows_before").stdout.strip() == \
            "5001|5001"
        assert server.check_output("systemctl is-active postgresql@%s-main", PG_VERSION) == "active"
    finally:
        server.run("rm -f %s", FILLER)
        server.run("runuser -u postgres -- psql -X -q -c %s", "drop database if exists %s" % FULL_DISK_DB)


SERVER_LOG = "/var/log/postgresql/postgresql-%s-main.log" % PG_VERSION


def test_a_wal_that_cannot_grow_stops_the_server_which_comes_back_by_itself_with_every_commit(fault_figures):
    """The data directory's filesystem full and the WAL needing a new segment: PostgreSQL
    stops with a PANIC naming the full disk (it cannot log, so it accepts nothing), and
    once space returns it replays its WAL and serves again by itself (systemd restarts it
    however often its start fails), every committed row there."""
    as_postgres(server, "create database %s" % FULL_DISK_DB)
    log_size = int(server.check_output("stat -c %%s %s", SERVER_LOG))
    try:
        psql_as_postgres("create table rows_before (id serial primary key, payload text);"
                         "insert into rows_before (payload) select md5(g::text) from generate_series(1, 5000) g")
        filled = server.run("dd if=/dev/zero of=%s bs=1M", FILLER)
        assert "No space left on device" in filled.stderr, filled.stderr
        # Each switch leaves the rest of a 16 MB segment unused and needs the next one:
        # 64 of them are more than the filesystem holds, spare segments included.
        grown = psql_as_postgres("do $$ begin for i in 1..64 loop"
                                 " perform pg_logical_emit_message(false, 'mlops-test', 'x');"
                                 " perform pg_switch_wal(); end loop; end $$")
        assert grown.rc != 0, "64 new WAL segments on a full disk: %s" % grown.stdout
        log = server.check_output("tail -c +%s %s", str(log_size + 1), SERVER_LOG)
        assert "PANIC" in log and "No space left on device" in log, log[-3000:]
    finally:
        server.run("rm -f %s", FILLER)
    freed = time.monotonic()
    while True:
        written = psql_as_postgres("insert into rows_before (payload) values ('after the WAL could grow')")
        if written.rc == 0:
            break
        assert time.monotonic() - freed < 120, "no write 120 s after space returned: %s" % written.stderr
        time.sleep(1)
    fault_figures.append("PostgreSQL's WAL unable to grow: a PANIC; writing again %.1f s after space returned"
                         % (time.monotonic() - freed))
    assert psql_as_postgres("select count(*), count(distinct payload) from rows_before").stdout.strip() == \
        "5001|5001"
    server.run("runuser -u postgres -- psql -X -q -c %s", "drop database if exists %s" % FULL_DISK_DB)
