import pytest

from ansible_collections.mlops.platform.plugins.module_utils.tracking_service import (
    TrackingServiceHost,
    MASK,
    TrackingServiceError,
    artifacts_destination_problem,
    backup_file,
    changed_secrets,
    desired_environment,
    internal_url,
    mask_env_text,
    mask_uri,
    mlflow_version,
    name_problem,
    not_healthy_reason,
    normalize_backend_uri,
    parse_env,
    pg_environment,
    plan_actions,
    probe_host,
    render_env,
    scrub,
    secret_strings,
    service_state,
)

ENV = "/etc/mlflow/services/team-a.env"
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


# names

@pytest.mark.parametrize("name", ["a", "team-a", "0", "a" * 30, "a-b-c", "9lives"])
def test_valid_names(name):
    assert name_problem(name) is None


@pytest.mark.parametrize("name", ["", "-a", "a-", "A", "team_a", "a" * 31, "a.b", "a b", "ä"])
def test_invalid_names_name_the_value_and_the_rule(name):
    problem = name_problem(name)
    assert problem and repr(name) in problem and "^[a-z0-9]([a-z0-9-]{0,28}[a-z0-9])?$" in problem


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


def test_pg_environment_takes_every_part_of_the_uri():
    env = pg_environment("postgresql+psycopg2://mlflow:s3cr%40t@db.example.com:5433/mlflow_a?sslmode=require")
    assert env == dict(PGHOST="db.example.com", PGPORT="5433", PGUSER="mlflow", PGPASSWORD="s3cr@t",
                       PGDATABASE="mlflow_a", PGSSLMODE="require", PGCONNECT_TIMEOUT="10")


def test_pg_environment_with_a_socket_directory():
    env = pg_environment("postgresql+psycopg2://mlflow@/mlflow?host=/var/run/postgresql")
    assert env["PGHOST"] == "/var/run/postgresql" and "PGPASSWORD" not in env and env["PGDATABASE"] == "mlflow"


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
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_SERVER_ALLOWED_HOSTS": "mlflow-a.example.com,localhost",
        "MLFLOW_SERVER_CORS_ALLOWED_ORIGINS": "https://a.example.com",
        "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": "5", "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": "0",
        "MLOPS_PUBLIC_URL": "https://mlflow-a.example.com", "MLOPS_MLFLOW_VERSION": "3.17.2",
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


# masking

def test_mask_uri_hides_only_the_password():
    assert mask_uri(URI) == "postgresql+psycopg2://mlflow:%s@db.example.com:5433/mlflow_a" % MASK
    assert mask_uri("postgresql+psycopg2://u:p@ss@h/db?x=@") == "postgresql+psycopg2://u:%s@h/db?x=@" % MASK
    assert mask_uri("sqlite:////var/lib/mlflow/a.db") == "sqlite:////var/lib/mlflow/a.db"
    assert mask_uri("postgresql+psycopg2://u@h/db") == "postgresql+psycopg2://u@h/db"


def test_mask_env_text_masks_secrets_and_keeps_the_rest():
    values = {"MLFLOW_BACKEND_STORE_URI": URI, "AWS_SECRET_ACCESS_KEY": "very-secret-key",
              "AWS_ACCESS_KEY_ID": "mlflow-team-a", "DB_PASSWORD": "pw", "HF_TOKEN": "tok", "MY_SECRET_X": "x",
              "MLFLOW_PORT": "5001"}
    text = render_env("team-a", values)
    masked = mask_env_text(text)
    for secret in ("s3cr%40t", "very-secret-key", '"pw"', "tok", '"x"'):
        assert secret not in masked
    assert 'AWS_ACCESS_KEY_ID="mlflow-team-a"' in masked and 'MLFLOW_PORT="5001"' in masked
    assert masked.splitlines()[:2] == text.splitlines()[:2]
    assert parse_env(masked)["MLFLOW_BACKEND_STORE_URI"] == mask_uri(URI)


def test_a_changed_secret_shows_in_the_diff_without_its_value():
    before = {"AWS_SECRET_ACCESS_KEY": "old", "MLFLOW_BACKEND_STORE_URI": URI, "MLFLOW_PORT": "5001"}
    after = dict(before, AWS_SECRET_ACCESS_KEY="new", MLFLOW_PORT="5002")
    changed = changed_secrets(before, after)
    assert changed == {"AWS_SECRET_ACCESS_KEY"}
    masked = mask_env_text(render_env("a", after), changed)
    assert 'AWS_SECRET_ACCESS_KEY="%s(changed)"' % MASK in masked and "new" not in masked
    assert changed_secrets(before, dict(before, MLFLOW_BACKEND_STORE_URI=URI.replace("s3cr", "n3w"))) == {
        "MLFLOW_BACKEND_STORE_URI"}


def test_secrets_are_scrubbed_from_logs():
    secrets = secret_strings({"MLFLOW_BACKEND_STORE_URI": URI, "AWS_SECRET_ACCESS_KEY": "very-secret-key",
                              "MLFLOW_PORT": "5001"})
    assert set(secrets) == {"s3cr%40t", "s3cr@t", "very-secret-key"}
    log = "connect failed for s3cr@t (s3cr%40t); key very-secret-key on port 5001"
    assert scrub(log, secrets) == "connect failed for %s (%s); key %s on port 5001" % (MASK, MASK, MASK)


def test_longer_secrets_are_scrubbed_first_across_sets():
    secrets = secret_strings({"API_TOKEN": "abc"}, {"API_TOKEN": "abc-def"})
    assert secrets == ["abc-def", "abc"]
    assert scrub("token=abc-def", secrets) == "token=%s" % MASK


# action planning

def current(**overrides):
    base = dict(text="old", file_ok=True, dir="ok", active=True, enabled=True)
    base.update(overrides)
    return base


def verbs(state, cur, desired="new", schema=None, backup="/b/x.dump"):
    return [verb for verb, _description in plan_actions(state, "team-a", ENV, cur, desired, schema, backup)]


UPGRADE = dict(upgrade=True, current="aaa", head="bbb")


@pytest.mark.parametrize("state,cur,desired,schema,expected", [
    # started
    ("started", current(text=None, dir="missing", active=False, enabled=False), "new", None,
     ["mkdir", "write", "enable", "start"]),
    ("started", current(text="new"), "new", None, []),
    ("started", current(), "new", None, ["write", "restart"]),
    ("started", current(text="new", active=False), "new", None, ["start"]),
    ("started", current(text="new", enabled=False), "new", None, ["enable"]),
    ("started", current(text="new", file_ok=False), "new", None, ["chmod"]),
    ("started", current(), "new", UPGRADE, ["write", "stop", "backup", "upgrade", "start"]),
    ("started", current(text="new", active=False), "new", UPGRADE, ["backup", "upgrade", "start"]),
    ("started", current(text="new"), "new", dict(upgrade=False, current=None, head="bbb"), []),
    # present
    ("present", current(active=False, enabled=False), "new", None, ["write"]),
    ("present", current(), "new", None, ["write", "restart"]),
    ("present", current(text="new"), "new", None, []),
    ("present", current(text="new", active=False), "new", UPGRADE, ["backup", "upgrade"]),
    ("present", current(text="new"), "new", UPGRADE, ["stop", "backup", "upgrade", "start"]),
    # stopped
    ("stopped", current(), "new", None, ["write", "stop", "disable"]),
    ("stopped", current(text="new", active=False, enabled=False), "new", None, []),
    ("stopped", current(dir="insecure", text="new", active=False, enabled=False), "new", None, ["mkdir"]),
    # absent
    ("absent", current(), None, None, ["stop", "disable", "remove"]),
    ("absent", current(active=False), None, None, ["disable", "remove"]),
    ("absent", current(text=None, active=False, enabled=False, dir="missing"), None, None, []),
])
def test_plan(state, cur, desired, schema, expected):
    assert verbs(state, cur, desired, schema) == expected


def test_plan_describes_each_step():
    steps = plan_actions("started", "team-a", ENV, current(), "new", UPGRADE, "/var/backups/mlflow/t.dump")
    assert [d for _v, d in steps] == [
        "write /etc/mlflow/services/team-a.env", "stop mlflow@team-a.service",
        "back up database to /var/backups/mlflow/t.dump", "upgrade schema aaa -> bbb", "start mlflow@team-a.service",
    ]


def link(current_target, desired="/opt/mlflow/venvs/3.17.2"):
    return dict(path="/opt/mlflow/services/team-a", current=current_target, desired=desired)


@pytest.mark.parametrize("state,cur,desired,schema,venv_link,expected", [
    # a new service: the link comes with its configuration
    ("started", current(text=None, active=False, enabled=False), "new", None, link(None),
     ["write", "link", "enable", "start"]),
    # converged
    ("started", current(text="new"), "new", None, link("/opt/mlflow/venvs/3.17.2"), []),
    # an upgrade: the version in the configuration and the link change, the schema follows
    ("started", current(), "new", UPGRADE, link("/opt/mlflow/venvs/3.16.1"),
     ["write", "link", "stop", "backup", "upgrade", "start"]),
    # the link alone pointed elsewhere (same configuration): another server, so a restart
    ("started", current(text="new"), "new", None, link("/opt/mlflow/venvs/3.16.1"), ["link", "restart"]),
    ("present", current(text="new", active=False), "new", None, link("/elsewhere"), ["link"]),
    ("stopped", current(text="new", active=False, enabled=False), "new", None, link("/elsewhere"), ["link"]),
    ("absent", current(active=False, enabled=False), None, None, link("/opt/mlflow/venvs/3.17.2"),
     ["remove", "unlink"]),
    ("absent", current(text=None, active=False, enabled=False), None, None, link(None), []),
])
def test_plan_with_a_venv_link(state, cur, desired, schema, venv_link, expected):
    steps = plan_actions(state, "team-a", ENV, cur, desired, schema, "/b/x.dump", venv_link)
    assert [verb for verb, _description in steps] == expected


def test_the_link_step_names_the_link_and_the_venv():
    steps = plan_actions("started", "team-a", ENV, current(text="new"), "new", None, None, link("/old"))
    assert steps[0] == ("link", "point /opt/mlflow/services/team-a at /opt/mlflow/venvs/3.17.2")


def test_backup_file_names():
    assert backup_file("/var/backups/mlflow", "team-a", URI, now=0) == "/var/backups/mlflow/team-a-19700101T000000Z.dump"
    assert backup_file("/b", "a", "sqlite:////x/mlflow.db", now=0) == "/b/a-19700101T000000Z.db"


# systemd states, URLs, versions

@pytest.mark.parametrize("active,sub,expected", [
    ("active", "running", "running"), ("inactive", "dead", "stopped"), ("failed", "failed", "failed"),
    ("activating", "auto-restart", "failed"), ("activating", "start", "running"),
])
def test_service_state(active, sub, expected):
    assert service_state(dict(active_state=active, sub_state=sub)) == expected


def test_urls():
    assert internal_url("127.0.0.1", 5001) == "http://127.0.0.1:5001"
    assert internal_url("::1", 5001) == "http://[::1]:5001"
    assert probe_host("0.0.0.0") == "127.0.0.1" and probe_host("::1") == "[::1]" and probe_host("10.0.0.5") == "10.0.0.5"


def test_mlflow_version_reads_the_dist_info(tmp_path):
    site = tmp_path / "lib" / "python3.11" / "site-packages"
    (site / "mlflow_skinny-3.9.0.dist-info").mkdir(parents=True)
    assert mlflow_version(str(tmp_path)) is None
    (site / "mlflow-3.17.2.dist-info").mkdir()
    assert mlflow_version(str(tmp_path)) == "3.17.2"
    metadata = "Metadata-Version: 2.1\nName: mlflow\nVersion: 3.17.2.post1\n\nVersion: body\n"
    (site / "mlflow-3.17.2.dist-info" / "METADATA").write_text(metadata)
    assert mlflow_version(str(tmp_path)) == "3.17.2.post1"
    assert mlflow_version(str(tmp_path / "missing")) is None


def test_port_owner_names_the_other_service_on_that_port(tmp_path):
    for name, port in (("team-a", 5001), ("team-b", 5002)):
        managed, extra = desired_environment(params(name=name, port=port))
        (tmp_path / (name + ".env")).write_text(render_env(name, managed, extra))
    (tmp_path / "Not_A_Service.env").write_text("MLFLOW_PORT=5003\n")
    client = TrackingServiceHost(None, str(tmp_path))
    assert client.port_owner(5001, "team-c") == "team-a"
    assert client.port_owner(5001, "team-a") is None
    assert client.port_owner(5003, "team-c") is None


def unit(active_state, sub_state):
    return {"active_state": active_state, "sub_state": sub_state}


@pytest.mark.parametrize("status,expired,reason", [
    (unit("activating", "start"), False, None),
    (unit("active", "running"), False, None),
    (unit("active", "running"), True, "no OK within 30 s"),
    (unit("failed", "failed"), False, "the unit failed"),
    # Exited, and Restart=on-failure will start it again: waiting longer only repeats the failure.
    (unit("activating", "auto-restart"), False, "the server exited and systemd is about to restart it"),
])
def test_waiting_for_health_stops_when_the_server_failed_or_exited(status, expired, reason):
    assert not_healthy_reason(status, expired, 30) == reason
