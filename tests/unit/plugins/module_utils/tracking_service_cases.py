"""What the tracking service tests of several module_utils share: a backend store URI with a
password (as desired_environment normalizes it) and a valid set of the module's parameters."""

URI = "postgresql+psycopg2://mlflow:s3cr%40t@db.example.com:5433/mlflow_a"


def params(**overrides):
    base = dict(
        name="team-a", state="started", backend_store_uri="postgresql://mlflow:s3cr%40t@db.example.com:5433/mlflow_a",
        artifacts_destination="s3://mlflow-team-a", s3_endpoint_url="https://minio.example.com:9000",
        s3_access_key="mlflow-team-a", s3_secret_key="very-secret-key", s3_ignore_tls=False, host="127.0.0.1",
        port=5001, workers=2, allowed_hosts=None, cors_origins=None, public_url=None, database_pool_size=None,
        database_max_overflow=None, enable_job_execution=False, environment={},
    )
    base.update(overrides)
    return base
