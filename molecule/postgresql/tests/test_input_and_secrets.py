"""Bad input fails before any change, naming the variable; secrets stay out of logs.

Bad input is applied to pg-client-denied, a host without a PostgreSQL server: after
each refusal the server package must still be absent. The secrets check runs the
converge variables in check mode at -vvv against the converged server, which is the
scenario's check step too (zero changed; steps-covered).
"""

import pytest

from converged import ALPHA_PASSWORD, apply_role, converge_variables
from mlops_testing import CREDENTIALS, host, recap_changed

GOOD_DATABASE = {"name": "app", "owner": "app", "password": "a-good-long-password"}


BAD_INPUTS = {
    "database name with a space": (
        {"postgresql_databases": [dict(GOOD_DATABASE, name="my app")]},
        ["postgresql_databases", "my app", "naming rule"],
    ),
    "unknown auth method": (
        {"postgresql_clients": [{"address": "10.0.0.0/24", "method": "md5"}]},
        ["method", "scram-sha-256", "md5", "postgresql_clients"],
    ),
    "short password": (
        {"postgresql_databases": [dict(GOOD_DATABASE, password="short-pw")]},
        ["postgresql_databases", "app", "shorter than 12 characters"],
    ),
    "client network that is not a CIDR": (
        {"postgresql_clients": [{"address": "10.0.0.300/24"}]},
        ["postgresql_clients", "10.0.0.300/24", "CIDR"],
    ),
    "host bits set in a client network": (
        {"postgresql_clients": [{"address": "10.0.0.1/24"}]},
        ["postgresql_clients", "10.0.0.1/24", "host bits zero"],
    ),
    "port out of range": (
        {"postgresql_port": 80},
        ["postgresql_port", "between 1024 and 65535"],
    ),
    "memory size without a unit": (
        {"postgresql_shared_buffers": "2048"},
        ["postgresql_shared_buffers", "512MB"],
    ),
    "backup never stale": (
        {"postgresql_backup_enabled": True, "postgresql_backup_max_age_hours": 0},
        ["postgresql_backup_max_age_hours at least 1 (got 0)"],
    ),
    "invalid backup calendar": (
        {"postgresql_backup_enabled": True, "postgresql_backup_on_calendar": "every night"},
        ["postgresql_backup_on_calendar", "every night", "not a systemd calendar"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_fails_before_any_change(case):
    variables, expected = BAD_INPUTS[case]
    result = apply_role("pg-client-denied", variables)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    for text in expected:
        assert text in output, "%r missing from the failure of %s:\n%s" % (text, case, output[-3000:])
    # Nothing was installed: the failure came before the install step.
    assert "changed=0" in output
    denied = host("pg-client-denied")
    assert not denied.package("postgresql").is_installed
    assert not denied.file("/etc/postgresql").exists


def test_no_password_in_verbose_check_mode_output():
    beta = (CREDENTIALS / "pg-server" / "postgresql" / "beta.password").read_text().split()[0]
    replication = (CREDENTIALS / "pg-server" / "postgresql" / "mlops_replication.password").read_text().split()[0]
    # The primary and its standby: check mode on both changes nothing.
    result = apply_role("postgresql", converge_variables(), "--check", "--diff", "-vvv")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    changed = recap_changed(result.stdout)
    assert len(changed) == 2 and set(changed) == {0}, result.stdout[-3000:]
    for password in (ALPHA_PASSWORD, beta, replication):
        assert password not in output
    # And no process on either server carries a password in its command line (the
    # standby's WAL receiver reads the replication login's from its password file).
    for name in ("pg-server", "pg-standby"):
        cmdlines = host(name).check_output("cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
        assert all(password not in cmdlines for password in (ALPHA_PASSWORD, beta, replication)), name
