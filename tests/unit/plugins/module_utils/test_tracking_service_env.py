"""tracking_service_env: validation of the options, rendering and parsing of the environment file."""

import pytest

from ansible_collections.mlops.platform.plugins.module_utils.platform_model import NAME_RULE, name_problem
from ansible_collections.mlops.platform.plugins.module_utils.tracking_service import TrackingServiceError
from ansible_collections.mlops.platform.plugins.module_utils.tracking_service_env import (
    artifacts_destination_problem,
    desired_environment,
    normalize_backend_uri,
    parse_env,
    render_env,
)
from ansible_collections.mlops.platform.tests.unit.plugins.module_utils.tracking_service_cases import URI, params


# names (the rule is platform_model's; desired_environment applies it)

@pytest.mark.parametrize("name", ["a", "team-a", "0", "a" * 30, "a-b-c", "9lives"])
def test_valid_names(name):
    assert name_problem(name) is None


@pytest.mark.parametrize("name", ["", "-a", "a-", "A", "team_a", "a" * 31, "a.b", "a b", "ä"])
def test_invalid_names_name_the_value_and_the_rule(name):
    problem = name_problem(name)
    # platform_model words the rule (NAME_RULE) without its regular expression.
    assert problem and repr(name) in problem and NAME_RULE in problem


# artifacts destination

@pytest.mark.parametrize("value", ["s3://bucket", "s3://mlflow-team-a/runs", "s3://a.b.c/x/y/", "s3://abc/"])
def test_valid_artifacts_destinations(value):
    assert artifacts_destination_problem(value) is None


@pytest.mark.parametrize("value", ["bucket", "s3://", "s3://ab", "s3://Bucket", "s3://-bucket", "gs://bucket",
                                   "s3://bucket /x", "s3://a..b", "file:///tmp/x", "s3://bucket_x", None])
def test_invalid_artifacts_destinations(value):
    problem = artifacts_destination_problem(value)
    assert problem and "s3://bucket" in problem


# backend store URI

@pytest.mark.parametrize("uri,expected", [
    ("postgresql://u:p@h/db", "postgresql+psycopg2://u:p@h/db"),
    ("postgres://u:p@h:5432/db", "postgresql+psycopg2://u:p@h:5432/db"),
    ("postgresql+psycopg2://u:p@h/db", "postgresql+psycopg2://u:p@h/db"),
    ("sqlite:////var/lib/mlflow/a/mlflow.db", "sqlite:////var/lib/mlflow/a/mlflow.db"),
])
def test_backend_uris_are_normalized(uri, expected):
    assert normalize_backend_uri(uri) == expected


@pytest.mark.parametrize("uri,message", [
    ("postgresql+psycopg://u:p@h/db", "psycopg2"),
    ("sqlite:///relative.db", "absolute"),
    ("sqlite://", "absolute"),
    ("mysql://u:p@h/db", "postgresql://"),
    ("/var/lib/mlflow.db", "(none)"),
])
def test_bad_backend_uris(uri, message):
    with pytest.raises(TrackingServiceError) as exc:
        normalize_backend_uri(uri)
    assert message in str(exc.value)


# environment file

TRICKY = {
    "PLAIN": "value",
    "QUOTES": 'say "hi" and \'bye\'',
    "BACKSLASHES": "C:\\path\\to\\ and \\\\ two and trailing \\",
    "DOLLARS": "$HOME ${HOME} $$ \\$ `cmd`",
    "HASHES": "#not a comment # and ; neither",
    "SPACES": "  leading and trailing  ",
    "EMPTY": "",
    "UNICODE": "naïve ☃",
    "EQUALS": "a=b=c",
}


def test_render_parse_round_trip():
    text = render_env("team-a", TRICKY)
    assert parse_env(text) == TRICKY


def test_render_quotes_only_backslash_and_double_quote():
    text = render_env("team-a", {"K": 'a\\b"c$d#e`f'})
    assert 'K="a\\\\b\\"c$d#e`f"' in text.splitlines()


def test_render_is_sorted_with_a_header_and_extra_environment_after():
    text = render_env("team-a", {"B": "2", "A": "1"}, {"Z": "26", "C": "3"})
    lines = text.splitlines()
    assert lines[0].startswith("#") and lines[1].startswith("#")
    assert [line.split("=")[0] for line in lines if not line.startswith("#")] == ["A", "B", "C", "Z"]
    assert lines.index("# environment") == 4
    assert text.endswith("\n") and parse_env(text) == {"A": "1", "B": "2", "C": "3", "Z": "26"}


@pytest.mark.parametrize("value", ["two\nlines", "carriage\rreturn", "nul\0"])
def test_render_refuses_line_breaks(value):
    with pytest.raises(TrackingServiceError) as exc:
        render_env("team-a", {"KEY": value})
    assert "KEY" in str(exc.value)


def test_parse_follows_systemd_rules_for_other_forms():
    text = "\n".join([
        "# comment", "; comment too", "", "not an assignment",
        "UNQUOTED=  a\\ b\\\\c  ",
        "SINGLE='no \\escapes $here'",
        'DOUBLE="keeps \\n and \\a"',
        "  INDENTED=x",
    ])
    assert parse_env(text) == {"UNQUOTED": "a b\\c", "SINGLE": "no \\escapes $here",
                               "DOUBLE": "keeps \\n and \\a", "INDENTED": "x"}


def test_desired_environment():
    managed, extra = desired_environment(
        params(allowed_hosts=["mlflow-a.example.com", "localhost"], cors_origins=["https://a.example.com"],
               database_pool_size=5, database_max_overflow=0, public_url="https://mlflow-a.example.com",
               environment={"MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE": "virtual", "HF_TOKEN": "tok", "N": 3}),
        mlflow_version="3.17.2")
    assert managed == {
        "MLFLOW_HOST": "127.0.0.1", "MLFLOW_PORT": "5001", "MLFLOW_WORKERS": "2", "MLFLOW_BACKEND_STORE_URI": URI,
        "MLFLOW_ARTIFACTS_DESTINATION": "s3://mlflow-team-a", "MLFLOW_S3_ENDPOINT_URL": "https://minio.example.com:9000",
        "AWS_ACCESS_KEY_ID": "mlflow-team-a", "AWS_SECRET_ACCESS_KEY": "very-secret-key",
        "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required", "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
        "AWS_DEFAULTS_MODE": "standard", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_SERVER_ALLOWED_HOSTS": "mlflow-a.example.com,localhost",
        "MLFLOW_SERVER_CORS_ALLOWED_ORIGINS": "https://a.example.com",
        "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": "5", "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": "0",
        "MLOPS_PUBLIC_URL": "https://mlflow-a.example.com", "MLOPS_MLFLOW_VERSION": "3.17.2",
        "MLFLOW_UVICORN_OPTS": "--timeout-graceful-shutdown 5 --no-access-log",
    }
    assert extra == {"MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE": "virtual", "HF_TOKEN": "tok", "N": "3"}


@pytest.mark.parametrize("host", ["mlflow.example.com", "mlflow.example.com:8443", "10.0.0.5:443", "*.example.com",
                                  "localhost:*", "[::1]:5001", "*"])
def test_allowed_hosts_take_host_header_values(host):
    managed, _extra = desired_environment(params(allowed_hosts=[host]))
    assert managed["MLFLOW_SERVER_ALLOWED_HOSTS"] == host


def test_ignore_tls_is_written_only_when_true():
    managed, _extra = desired_environment(params(s3_ignore_tls=False))
    assert "MLFLOW_S3_IGNORE_TLS" not in managed
    managed, _extra = desired_environment(params(s3_ignore_tls=True, enable_job_execution=True))
    assert managed["MLFLOW_S3_IGNORE_TLS"] == "true" and managed["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "true"


def test_uvicorn_stops_within_its_graceful_shutdown_and_a_certificate_makes_it_serve_tls():
    managed, _extra = desired_environment(params())
    assert managed["MLFLOW_UVICORN_OPTS"] == "--timeout-graceful-shutdown 5 --no-access-log"
    managed, _extra = desired_environment(params(tls_certificate="/etc/mlflow/tls/server.crt",
                                                 tls_key="/etc/mlflow/tls/server.key"))
    assert managed["MLFLOW_UVICORN_OPTS"] == ("--timeout-graceful-shutdown 5 --no-access-log "
                                              "--ssl-certfile /etc/mlflow/tls/server.crt "
                                              "--ssl-keyfile /etc/mlflow/tls/server.key")
    with pytest.raises(TrackingServiceError) as exc:
        desired_environment(params(tls_certificate="/etc/my certs/a.crt", tls_key="/k"))
    assert "tls_certificate must be a path without spaces" in str(exc.value)


def test_without_keys_and_version_no_aws_or_version_lines():
    managed, _extra = desired_environment(params(s3_endpoint_url=None, s3_access_key=None, s3_secret_key=None))
    assert not set(managed) & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL",
                               "MLOPS_MLFLOW_VERSION", "MLOPS_PUBLIC_URL"}


@pytest.mark.parametrize("overrides,message", [
    (dict(name="Team"), "not a valid tracking service name"),
    (dict(artifacts_destination="/srv/artifacts"), "artifacts_destination"),
    (dict(port=70000), "port must be between"),
    (dict(workers=0), "workers must be between"),
    (dict(s3_endpoint_url="minio:9000"), "s3_endpoint_url"),
    (dict(public_url="mlflow.example.com"), "public_url"),
    (dict(allowed_hosts=["a,b"]), "allowed_hosts"),
    (dict(allowed_hosts=["https://mlflow.example.com"]), "allowed_hosts: 'https://mlflow.example.com' has a scheme"),
    (dict(allowed_hosts=["mlflow.example.com/api"]), "is not host[:port]"),
    (dict(allowed_hosts=["mlflow.example.com:port"]), "is not host[:port]"),
    (dict(cors_origins=["mlflow.example.com"]), "cors_origins must look like http(s)://host[:port]"),
    (dict(cors_origins=["https://a.example.com/ui"]), "cors_origins must not have a path"),
    (dict(name="team_a"), "not a valid tracking service name"),
    (dict(artifacts_destination="gs://bucket"), "artifacts_destination must look like s3://"),
    (dict(environment={"MLFLOW_PORT": "1"}), "option port"),
    (dict(environment={"1BAD": "x"}), "not an environment variable name"),
    (dict(environment={"FLAG": True}), "quote it"),
    (dict(environment={"MULTI": "a\nb"}), "newline"),
])
def test_desired_environment_refuses_bad_input(overrides, message):
    with pytest.raises(TrackingServiceError) as exc:
        managed, extra = desired_environment(params(**overrides))
        render_env("team-a", managed, extra)
    assert message in str(exc.value)
