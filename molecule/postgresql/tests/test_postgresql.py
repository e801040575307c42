"""Verify the postgresql scenario against the running containers.

Everything is checked from the outside the way a client sees it: the server under
systemd, logins over the podman network from an allowed and a disallowed client,
and a backup that restores. Passwords reach the clients in a .pgpass file copied
with `podman cp`, never on a command line.
"""

import os
import subprocess
import tempfile

import pytest

from mlops_testing import CREDENTIALS, PG_VERSION, as_postgres, host

ALPHA_PASSWORD = "alpha-password-for-tests"

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
    with tempfile.NamedTemporaryFile("w", delete=False) as f:
        f.write("pg-server:5432:*:%s:%s\n" % (user, password))
    try:
        os.chmod(f.name, 0o600)
        subprocess.run(["podman", "cp", f.name, "%s:/root/.pgpass-test" % client.backend.name], check=True)
    finally:
        os.unlink(f.name)
    client.run("chmod 600 /root/.pgpass-test")
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


def test_backup_runs_from_its_timer_service_and_restores():
    assert server.service("mlops-postgresql-backup.timer").is_enabled
    assert server.service("mlops-postgresql-backup.timer").is_running
    setup = psql(
        allowed, "alpha", ALPHA_PASSWORD, "tracking_alpha",
        "DROP TABLE IF EXISTS runs; CREATE TABLE runs (id int, name text); "
        "INSERT INTO runs VALUES (1, 'first'), (2, 'second')",
    )
    assert setup.rc == 0, setup.stderr

    # Three runs with retention 2: two dumps stay, the newest holds the table.
    for _run in range(3):
        server.check_output("systemctl start mlops-postgresql-backup.service")
        server.check_output("sleep 1")
    dumps = sorted(server.check_output("ls -1 /var/backups/postgresql/tracking_alpha").split())
    assert len(dumps) == 2, dumps
    assert all(d.startswith("tracking_alpha-") and d.endswith(".dump") for d in dumps)
    assert server.file("/var/backups/postgresql/tracking_alpha").mode == 0o700
    assert len(server.check_output("ls -1 /var/backups/postgresql/_globals").split()) == 2

    newest = "/var/backups/postgresql/tracking_alpha/" + dumps[-1]
    server.check_output("runuser -u postgres -- dropdb --if-exists restore_check")
    server.check_output("runuser -u postgres -- createdb restore_check")
    server.check_output("runuser -u postgres -- pg_restore --no-owner --dbname=restore_check %s", newest)
    assert as_postgres(server, "SELECT string_agg(name, ',' ORDER BY id) FROM runs", "restore_check") == "first,second"
    server.check_output("runuser -u postgres -- dropdb restore_check")
