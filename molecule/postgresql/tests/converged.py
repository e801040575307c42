"""The role as converge.yml applies it (molecule.yml's inventory), for the tests that run it again on the converged
server: its variables (kept in step with converge.yml) and a runner for them."""

from mlops_testing import CREDENTIALS, address
from mlops_testing import apply_role as apply_any_role

ALPHA_PASSWORD = "alpha-password-for-tests"


def apply_role(target, variables, *extra):
    """The postgresql role on target with variables and the scenario's credentials directory."""
    return apply_any_role("mlops.platform.postgresql", target,
                          dict(variables, mlops_credentials_dir=str(CREDENTIALS)), *extra)


def converge_variables():
    return {
        "postgresql_listen_addresses": ["*"],
        "postgresql_clients": [{"address": address("pg-client-allowed") + "/32"}],
        "postgresql_work_mem": "8MB",
        "postgresql_databases": [
            {"name": "tracking_alpha", "owner": "alpha", "password": ALPHA_PASSWORD},
            {"name": "tracking-beta", "owner": "beta"},
        ],
        "postgresql_backup_enabled": True,
        "postgresql_backup_retention": 2,
        "postgresql_synchronous_replication": True,
        "postgresql_standby_max_wal_size": "256MB",
    }
