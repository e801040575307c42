"""tracking_service_schema: libpq settings of a backend store URI, backup names, the schema script's answer."""

from ansible_collections.mlops.platform.plugins.module_utils.tracking_service_schema import (
    backup_file,
    pg_environment,
    script_environment,
    script_result,
)
from ansible_collections.mlops.platform.tests.unit.plugins.module_utils.tracking_service_cases import URI


def test_pg_environment_takes_every_part_of_the_uri():
    env = pg_environment("postgresql+psycopg2://mlflow:s3cr%40t@db.example.com:5433/mlflow_a?sslmode=require")
    assert env == dict(PGHOST="db.example.com", PGPORT="5433", PGUSER="mlflow", PGPASSWORD="s3cr@t",
                       PGDATABASE="mlflow_a", PGSSLMODE="require", PGCONNECT_TIMEOUT="10")


def test_pg_environment_with_a_socket_directory():
    env = pg_environment("postgresql+psycopg2://mlflow@/mlflow?host=/var/run/postgresql")
    assert env["PGHOST"] == "/var/run/postgresql" and "PGPASSWORD" not in env and env["PGDATABASE"] == "mlflow"


def test_backup_file_names():
    assert backup_file("/var/backups/mlflow", "team-a", URI, now=0) == "/var/backups/mlflow/team-a-19700101T000000Z.dump"
    assert backup_file("/b", "a", "sqlite:////x/mlflow.db", now=0) == "/b/a-19700101T000000Z.db"


def test_the_schema_script_gets_the_uri_in_its_environment():
    assert script_environment(URI) == {"MLOPS_BACKEND_STORE_URI": URI, "PGCONNECT_TIMEOUT": "10"}


def test_the_schema_scripts_answer_is_its_last_json_line():
    assert script_result('warning {not json}\n{"current": "a"}\nlog line\n{"current": "b"}\n') == {"current": "b"}
    assert script_result("Traceback (most recent call last):\n  boom\n") is None
    assert script_result("{broken\n") is None
