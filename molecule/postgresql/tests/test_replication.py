"""The standby: pg-standby streams pg-server's WAL over TLS as a synchronous hot standby, and
playbooks/failover.yml promotes it when pg-server is lost, with every acknowledged write,
then rebuilds pg-server as its standby once it is back.

The failover test leaves pg-standby the primary (changes_platform: it runs after the
unmarked tests, see molecule/conftest.py); it passes postgresql_primary as extra variables,
as an operator who has written it in the inventory."""

import json
import re
import subprocess
import time

import pytest

from mlops_testing import (CREDENTIALS, PG_VERSION, as_postgres, host, platform_playbook, put_private_file,
                           recap_changed, wait_for)

primary = host("pg-server")
standby = host("pg-standby")
client = host("pg-client-allowed")
NETWORK = "mlops-test-postgresql"
DATA = "/var/lib/postgresql/%s/main" % PG_VERSION
UNIT = "postgresql@%s-main" % PG_VERSION
ALPHA = "alpha-password-for-tests"
# The writer on pg-client-allowed: one psql per row (each a transaction of its own); a row's
# id goes to the acknowledged file only once psql returned success, that is once the server
# acknowledged the commit. It writes to whichever server it is given.
WRITER = ("i=0; while true; do i=$((i+1)); "
          "psql -w -X -q -h %s -U alpha -d tracking_alpha -c \"insert into acknowledged values ($i)\" "
          "&& echo $i >> /root/acknowledged || exit 1; done")


# alpha's libpq settings on pg-client-allowed: its password file (alpha_login) and TLS
# verified with the group's CA.
ALPHA_ENV = "PGPASSFILE=/root/.pgpass-alpha PGSSLMODE=verify-full PGSSLROOTCERT=/root/postgresql-ca.crt"


def client_sql(server, sql):
    """sql as alpha from pg-client-allowed to server."""
    return client.run("env " + ALPHA_ENV + " PGCONNECT_TIMEOUT=5 psql -w -X -A -t -h %s -U alpha -d tracking_alpha "
                      "-c %s", server, sql)


@pytest.fixture(scope="module", autouse=True)
def alpha_login():
    put_private_file("pg-client-allowed", "/root/.pgpass-alpha", "*:5432:*:alpha:%s\n" % ALPHA)
    subprocess.run(["podman", "cp", str(CREDENTIALS / "pg-server" / "postgresql" / "ca.crt"),
                    "pg-client-allowed:/root/postgresql-ca.crt"], check=True)


def replication_state():
    """pg-server's view of its standbys: application name, state, sync state, TLS."""
    return as_postgres(primary, "select r.application_name, r.state, r.sync_state, s.ssl from pg_stat_replication r "
                                "join pg_stat_ssl s using (pid)")


def test_the_standby_streams_over_tls_synchronously_and_refuses_writes():
    assert replication_state() == "mlops_standby_pg_standby|streaming|quorum|t"
    assert as_postgres(standby, "select pg_is_in_recovery()") == "t"
    # Its databases and logins are the primary's: alpha reads there over TLS.
    done = client_sql("10.89.201.11", "select current_user")
    assert done.rc == 0 and done.stdout.split()[0] == "alpha", done.stderr
    refused = standby.run("runuser -u postgres -- psql -X -q -c %s", "create table on_the_standby ()")
    assert refused.rc != 0 and "read-only transaction" in refused.stderr, refused.stderr
    # The replication login's password is a file of postgres's alone, on every host.
    for node in (primary, standby):
        passfile = node.file("/var/lib/postgresql/.mlops-replication.pgpass")
        assert (passfile.user, passfile.mode) == ("postgres", 0o600)
    # Backups run where the writes are.
    assert primary.service("mlops-postgresql-backup.timer").is_enabled
    assert not standby.file("/etc/systemd/system/mlops-postgresql-backup.timer").exists


def test_the_status_playbook_shows_each_hosts_part_and_the_standbys_lag():
    rc, output = platform_playbook("postgresql_status", None, "--check")
    assert rc == 0 and not any(recap_changed(output)), output[-3000:]
    # Each host's message, a JSON object after "ok: [host] => " (the output's result format).
    shown_part = output[output.index("Show the replication status"):]
    shown = [json.JSONDecoder().raw_decode(shown_part, found.end())[0]["msg"]
             for found in re.finditer(r"ok: \[[^\]]+\] => ", shown_part)]
    by_host = {entry["host"]: entry for entry in shown}
    assert by_host["pg-server"]["role"] == "primary" and by_host["pg-standby"]["role"] == "standby", shown
    assert by_host["pg-standby"]["receiving"] == "streaming", shown
    (lag,) = by_host["pg-server"]["standbys"]
    assert (lag["standby"], lag["state"], lag["sync_state"]) == ("mlops_standby_pg_standby", "streaming", "quorum")
    assert lag["address"] == "10.89.201.11" and int(lag["replay_lag_bytes"]) >= 0, lag


def test_a_synchronous_primary_acknowledges_nothing_while_its_standby_is_down():
    standby.check_output("systemctl stop %s", UNIT)
    try:
        waiting = client.run("timeout 5 env " + ALPHA_ENV + " psql -w -X -q -h 10.89.201.10 -U alpha "
                             "-d tracking_alpha -c %s", "create table if not exists while_standby_down (id int)")
        assert waiting.rc == 124, "a commit was acknowledged with the standby down: %s" % waiting.stderr
    finally:
        standby.check_output("systemctl start %s", UNIT)
    wait_for(lambda: replication_state().endswith("streaming|quorum|t"), timeout=60)
    as_postgres(primary, "drop table if exists while_standby_down", "tracking_alpha")


@pytest.mark.changes_platform
def test_failover_keeps_every_acknowledged_write_and_rebuilds_the_old_primary():
    new = {"postgresql_primary": "pg-standby"}
    as_postgres(primary, "create table acknowledged (id int primary key); alter table acknowledged owner to alpha",
                "tracking_alpha")
    client.check_output("rm -f /root/acknowledged")
    writer = "env " + ALPHA_ENV + " nohup sh -c %s > /root/writer.log 2>&1 &"
    client.check_output(writer, WRITER % "10.89.201.10")
    wait_for(lambda: int(client.run("wc -l < /root/acknowledged").stdout.strip() or 0) >= 20, timeout=60)

    # pg-server lost mid-write: cut off the network, as a host that died.
    subprocess.run(["podman", "network", "disconnect", NETWORK, "pg-server"], check=True)
    time.sleep(2)
    client.run("pkill -f 'insert into acknowledged'; pkill psql")
    acknowledged = [int(line) for line in client.check_output("cat /root/acknowledged").split()]
    assert acknowledged == list(range(1, len(acknowledged) + 1))

    # The operator fails over to pg-standby, leaving out the host that is gone.
    started = time.monotonic()
    rc, output = platform_playbook("failover", new, "--limit", "!pg-server")
    assert rc == 0, output[-4000:]
    took = time.monotonic() - started
    assert as_postgres(standby, "select pg_is_in_recovery()") == "f"
    kept = as_postgres(standby, "select count(*) from acknowledged where id <= %d" % len(acknowledged),
                       "tracking_alpha")
    assert int(kept) == len(acknowledged), "acknowledged %d rows, the new primary has %s" % (len(acknowledged), kept)
    # Clients write to it over TLS with the same CA; it backs up now, alone (no standby to wait for).
    done = client_sql("10.89.201.11", "insert into acknowledged values (1000000) returning id")
    assert done.rc == 0 and done.stdout.split()[0] == "1000000", done.stderr
    assert standby.service("mlops-postgresql-backup.timer").is_enabled
    assert as_postgres(standby, "show synchronous_standby_names") == ""
    print("failover with %d acknowledged writes kept: %.1f s" % (len(acknowledged), took))

    # pg-server back, still a primary with its old data: the postgresql playbook refuses
    # it (and changes nothing there) rather than run two primaries or drop its data.
    subprocess.run(["podman", "network", "connect", "--ip", "10.89.201.10", NETWORK, "pg-server"], check=True)
    rc, output = platform_playbook("postgresql", new, "--limit", "pg-server")
    assert rc != 0 and "should be a standby of pg-standby" in output and "postgresql_standby_rebuild" in output, \
        output[-4000:]
    assert not any(recap_changed(output)), output[-4000:]

    # failover.yml again, with pg-server: stopped, kept aside, cloned, streaming, and waited for.
    rc, output = platform_playbook("failover", new)
    assert rc == 0, output[-4000:]
    assert as_postgres(primary, "select pg_is_in_recovery()") == "t"
    assert primary.check_output("ls -d %s.replaced-* | wc -l", DATA) == "1"
    assert as_postgres(primary, "select max(id) from acknowledged", "tracking_alpha") == "1000000"
    assert as_postgres(standby, "select r.application_name, r.state, r.sync_state from pg_stat_replication r") == \
        "mlops_standby_pg_server|streaming|quorum"
    assert not primary.file("/etc/systemd/system/mlops-postgresql-backup.timer").exists

    rc, output = platform_playbook("failover", new)
    assert rc == 0 and recap_changed(output) and not any(recap_changed(output)), output[-4000:]
