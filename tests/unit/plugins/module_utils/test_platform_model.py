"""The platform's one model: records of tracking services and the endpoints of its services."""

import pathlib
import re

import pytest
import yaml

from ansible_collections.mlops.platform.plugins.module_utils import platform_model as model

REPO = pathlib.Path(__file__).resolve().parents[4]
HOSTVARS = {
    "gw": {"ansible_facts": {"default_ipv4": {"address": "192.0.2.1"}}},
    "ml1": {"mlops_address": "10.0.0.11", "jobs_api_port": 5090},
    "ml2": {"ansible_host": "10.0.0.12"},
    "db": {"postgresql_port": 5433},
    "s3": {"minio_port": 9100, "minio_tls_enabled": True, "mlops_address": "10.0.0.20"},
    "r1": {},
    "r2": {"runner_services": ["team-b"]},
}
GROUPS = {"gateway": ["gw"], "mlflow": ["ml1", "ml2"], "postgresql": ["db"], "minio": ["s3"], "runners": ["r1", "r2"]}
ENTRIES = [
    {"name": "team-a", "mlflow_port": 5001, "gateway_port": 8443,
     "users": [{"user_name": "alice", "pass": "Alice-pass-2026"}, {"user_name": "ci-bot"}]},
    {"name": "team-b", "mlflow_port": 5002, "bucket": "tenant-b", "workers": 3},
    {"name": "old", "mlflow_port": 5003, "gateway_port": 8443, "state": "absent"},
]


def records(entries=None, hostvars=None, local="gw"):
    return model.tracking_services(ENTRIES if entries is None else entries, HOSTVARS if hostvars is None else hostvars,
                                   GROUPS, local=local, credentials_dir="/creds")


def test_one_record_per_entry_with_every_name_written_once():
    team_a, team_b, old = records()
    names = (team_a["database"], team_a["bucket"], team_a["unit"])
    assert names == ("mlflow_team_a", "mlflow-team-a", "mlflow@team-a.service")
    assert team_b["bucket"] == "tenant-b" and team_b["workers"] == 3 and "workers" not in team_a
    assert team_a["secrets_dir"] == "/creds/tracking-services/team-a"
    assert team_a["database_password_file"] == "/creds/tracking-services/team-a/database.password"
    assert team_a["users_dir"] == "/creds/tracking-services/team-a/users"
    assert (team_a["present"], old["present"], old["state"], team_b["state"]) == (True, False, "absent", "started")


def test_records_carry_no_password():
    assert "Alice-pass-2026" not in repr(records())
    team_a = records()[0]
    assert team_a["users"] == ["alice", "ci-bot"] and team_a["generated_users"] == ["ci-bot"]


def test_public_url_from_the_gateway_hosts_facts_or_its_public_host():
    team_a, team_b = records()[:2]
    assert team_a["public_url"] == "https://192.0.2.1:8443" and team_b["public_url"] == "https://192.0.2.1"
    assert team_b["allowed_hosts"][:2] == ["192.0.2.1:443", "192.0.2.1"]
    named = dict(HOSTVARS, gw={"gateway_public_host": "mlflow.example.com", "gateway_tls_enabled": False})
    team_a, team_b = records(hostvars=named)[:2]
    assert team_a["public_url"] == "http://mlflow.example.com:8443" and team_b["public_url"] == "http://mlflow.example.com"
    assert team_a["allowed_hosts"][0] == "mlflow.example.com:8443"
    assert team_a["cors_origins"] == ["http://mlflow.example.com:8443"]
    given = dict(HOSTVARS, gw={"mlops_public_host": "platform.example.com"})
    assert records(hostvars=given)[0]["public_url"] == "https://platform.example.com:8443"


def test_upstreams_are_every_mlflow_host_and_runner_users_follow_runner_services():
    team_a, team_b, old = records()
    assert team_a["upstreams"] == ["10.0.0.11:5001", "10.0.0.12:5001"]
    # MLflow listens on its platform address when the gateway reaches it across hosts,
    # so a gateway on an MLflow host does not use loopback either; on one host it does.
    assert records(local="ml1")[0]["upstreams"] == ["10.0.0.11:5001", "10.0.0.12:5001"]
    one_host = model.tracking_services(ENTRIES[:1], {}, {"gateway": ["vm"], "mlflow": ["vm"]}, local="vm")
    assert one_host[0]["upstreams"] == ["127.0.0.1:5001"]
    assert team_a["runner_users"] == ["runner-r1"] and team_b["runner_users"] == ["runner-r1", "runner-r2"]
    assert old["runner_users"] == []
    assert team_a["logins"] == ["alice", "ci-bot", "runner-r1"]
    assert team_a["generated_logins"] == ["ci-bot", "runner-r1"]


def test_endpoints_follow_the_providing_hosts_inventory():
    endpoints = model.platform_endpoints(HOSTVARS, GROUPS, local="ml2")
    assert endpoints["postgresql"] == {"host": "db", "address": "db", "port": 5433, "tls": True, "verify": True,
                                       "ca_file": "/etc/mlops-platform/postgresql-ca.crt", "ca_host": "db",
                                       "standbys": []}
    assert endpoints["s3"]["url"] == "https://10.0.0.20:9100" and endpoints["s3"]["tls"]
    assert endpoints["jobs_api"] == {"host": "ml1", "address": "10.0.0.11", "port": 5090, "tls": True,
                                     "scheme": "https"}
    assert endpoints["mlflow"] == {"host": "ml1", "across_hosts": True, "tls": True, "scheme": "https",
                                   "ca_file": "/etc/mlops-platform/mlflow-ca.crt", "ca_dir": "ml1/mlflow-tls",
                                   "tls_name": "mlops-mlflow"}
    # The first MLflow host's jobs API is not loopback even from itself across hosts.
    assert model.platform_endpoints(HOSTVARS, GROUPS, local="ml1")["jobs_api"]["address"] == "10.0.0.11"
    untls = model.platform_endpoints(dict(HOSTVARS, ml1={"mlflow_tls_enabled": False}), GROUPS, local="gw")
    assert untls["mlflow"]["scheme"] == "http" and not untls["jobs_api"]["tls"]
    alone = model.platform_endpoints({}, {}, local="vm")
    assert alone["s3"]["url"] == "http://127.0.0.1:9000"
    assert (alone["postgresql"]["address"], alone["postgresql"]["port"]) == ("127.0.0.1", 5432)
    # On loopback a client needs no TLS; a server without it is not verified either.
    assert alone["postgresql"]["tls"] and not alone["postgresql"]["verify"]
    plain = model.platform_endpoints(dict(HOSTVARS, db={"postgresql_tls_enabled": False}), GROUPS, local="ml2")
    assert not plain["postgresql"]["tls"] and not plain["postgresql"]["verify"]
    assert alone["jobs_api"]["port"] == 5080 and alone["gateway"]["scheme"] == "https"
    assert not alone["mlflow"]["tls"] and alone["s3"]["loopback"]
    one_host = {"gateway": ["vm"], "mlflow": ["vm"], "minio": ["vm"], "postgresql": ["vm"]}
    together = model.platform_endpoints({"vm": {"ansible_host": "10.0.0.5"}}, one_host, local="vm")
    assert not together["mlflow"]["across_hosts"] and not together["mlflow"]["tls"]
    assert together["s3"]["url"] == "http://127.0.0.1:9000" and together["jobs_api"]["address"] == "127.0.0.1"


def test_the_postgresql_primary_is_the_first_host_until_the_inventory_names_another():
    groups = dict(GROUPS, postgresql=["db", "db2"])
    first = model.platform_endpoints(HOSTVARS, groups, local="ml2")["postgresql"]
    assert (first["host"], first["standbys"], first["ca_host"]) == ("db", ["db2"], "db")
    # After a failover: the clients reach db2 with its own port, and keep the first host's CA.
    moved = dict(HOSTVARS, db={"postgresql_primary": "db2"}, db2={"postgresql_port": 5434})
    second = model.platform_endpoints(moved, groups, local="ml2")["postgresql"]
    assert (second["host"], second["port"], second["standbys"], second["ca_host"]) == ("db2", 5434, ["db"], "db")
    with pytest.raises(model.ModelError, match="postgresql_primary must name a host of the postgresql group"):
        model.platform_endpoints(dict(HOSTVARS, db={"postgresql_primary": "db3"}), groups, local="ml2")


def test_minio_is_on_loopback_only_for_its_one_mlflow_host_and_otherwise_at_its_platform_address():
    hostvars = {"ml1": {"ansible_host": "10.0.0.11"}, "ml2": {}}
    shared = model.platform_endpoints(hostvars, {"minio": ["ml1"], "mlflow": ["ml1", "ml2"]}, local="ml1")
    assert shared["s3"]["url"] == "http://10.0.0.11:9000" and not shared["s3"]["loopback"]
    cluster = model.platform_endpoints(dict(hostvars, ml1={"ansible_host": "10.0.0.11", "minio_nodes": ["ml1"]}),
                                       {"minio": ["ml1"], "mlflow": ["ml1"]}, local="ml1")
    assert not cluster["s3"]["loopback"]
    alone = model.platform_endpoints(hostvars, {"minio": ["ml1"], "mlflow": ["ml1"]}, local="ml1")
    assert alone["s3"]["url"] == "http://127.0.0.1:9000" and alone["s3"]["loopback"]


@pytest.mark.parametrize("change,words", [
    ({"name": "Team-A"}, ['entry "Team-A"', "lowercase letters, digits and hyphens"]),
    ({"name": "-a"}, ["lowercase letters"]),
    ({"mlflow_port": 80}, ["mlflow_port must be an integer from 1024"]),
    ({"state": "running"}, ["state must be one of"]),
    ({"server_name": "https://mlflow.example.com"}, ["server_name", "no scheme"]),
    ({"bucket": "s3://b"}, ["bucket", "lowercase"]),
    ({"cors_origins": ["example.com"]}, ["cors_origins"]),
    ({"allow": ["10.0.0.0/33"]}, ["allow"]),
    ({"upstreams": ["host"]}, ["upstreams must list host:port"]),
    ({"workers": 0}, ["workers must be 1 to 99"]),
    ({"environment": ["A=1"]}, ["environment must be a mapping"]),
    ({"users": [{"user_name": "a:b"}]}, ["user_name", '"a:b"']),
    ({"users": [{"user_name": "a"}, {"user_name": "a"}]}, ["unique user names"]),
    ({"gatway_port": 1}, ["unknown keys", "gatway_port"]),
    ({"features": ["webhook"]}, ["features must list some of", "ai_gateway", '"webhook"']),
    ({"features": "webhooks"}, ["features must be a list"]),
], ids=lambda value: str(value)[:30])
def test_every_rule_names_the_variable_the_entry_and_the_rule(change, words):
    entry = dict(ENTRIES[0], **change)
    with pytest.raises(model.ModelError) as raised:
        records([entry])
    assert str(raised.value).startswith("mlops_tracking_services")
    for word in words:
        assert word in str(raised.value)


@pytest.mark.parametrize("credential,words", [
    ({"url": "https://git.example/team/", "token": "s3cret tok"}, ["without spaces", "https://git.example/team/"]),
    ({"url": "https://git.example/team/", "token": ""}, ["token of git_credentials must be a non-empty"]),
    ({"url": "https://bot:s3cret@git.example/team/", "token": "abc"}, ["without a user or password"]),
    ({"url": "git@git.example:team/m.git", "token": "s3cret"}, ["http(s):// URL prefix"]),
    ({"url": "https://git.example/", "token": "s3cret", "password": "x"}, ["{url, token, username}"]),
    ({"url": "https://git.example/", "token": "s3cret", "username": "a b"}, ["username of git_credentials"]),
], ids=lambda value: str(value)[:40])
def test_a_bad_git_credential_is_named_by_its_url_never_shown(credential, words):
    entry = dict(ENTRIES[0], git_credentials=[credential])
    with pytest.raises(model.ModelError) as raised:
        records([entry])
    assert "s3cret" not in str(raised.value)
    for word in words:
        assert word in str(raised.value)


def test_git_credentials_leave_only_their_urls_in_the_record():
    entry = dict(ENTRIES[0], git_credentials=[{"url": "https://git.example/team/", "token": "s3cret-tok"}])
    record = records([entry])[0]
    assert record["git_urls"] == ["https://git.example/team/"] and "s3cret-tok" not in str(record)


def test_a_bad_password_is_named_by_its_user_never_shown():
    entry = dict(ENTRIES[0], users=[{"user_name": "bob", "pass": "short1"}])
    with pytest.raises(model.ModelError) as raised:
        records([entry])
    assert '"bob"' in str(raised.value) and "short1" not in str(raised.value)


LAB_S3 = {"endpoint_url": "https://s3.lab.example:9000", "access_key": "lab-key", "secret_key": "lab-s3cret-key",
          "ca_file": "/etc/lab/ca.pem"}


def test_an_external_store_is_the_entrys_s3_over_mlops_s3_and_its_secret_stays_out():
    own = dict(ENTRIES[1], s3=dict(LAB_S3, region="eu-west-1"))
    team_a, team_b = records([ENTRIES[0], own])
    assert team_a["s3"] == {"external": False, "access_key": "mlflow-team-a"}
    assert team_b["s3"] == {"external": True, "endpoint_url": "https://s3.lab.example:9000", "access_key": "lab-key",
                            "region": "eu-west-1", "addressing_style": "path", "ca_file": "/etc/lab/ca.pem",
                            "ca_host_file": "/etc/mlflow/s3-ca/team-b.crt", "create_bucket": False}
    assert team_b["bucket"] == "tenant-b" and "lab-s3cret-key" not in repr(team_b)
    # Platform-wide: every service on it, an entry's own keys over it.
    wide = {host: dict(values, mlops_s3={"endpoint_url": "http://rgw.example", "access_key": "platform",
                                         "secret_key": "platform-s3cret", "addressing_style": "virtual"})
            for host, values in HOSTVARS.items()}
    team_a, team_b = records([ENTRIES[0], dict(ENTRIES[1], s3={"access_key": "b-key", "secret_key": "b-s3cret-1"})],
                             hostvars=wide)
    assert (team_a["s3"]["endpoint_url"], team_a["s3"]["access_key"], team_a["s3"]["addressing_style"]) == (
        "http://rgw.example", "platform", "virtual")
    assert (team_b["s3"]["endpoint_url"], team_b["s3"]["access_key"], team_b["s3"]["ca_host_file"]) == (
        "http://rgw.example", "b-key", "")


@pytest.mark.parametrize("change,words", [
    ({"endpoint_url": "s3.lab.example"}, ["s3.endpoint_url must be http(s)://host[:port]"]),
    ({"endpoint_url": "https://key:lab-s3cret-key@s3.lab.example"}, ["s3.endpoint_url", "(not shown)"]),
    ({"endpoint_url": "https://s3.lab.example/bucket"}, ["without a path"]),
    ({"access_key": ""}, ["s3.access_key must be"]),
    ({"secret_key": "short"}, ["s3.secret_key must be", "(not shown)"]),
    ({"region": "EU West"}, ["s3.region"]),
    ({"addressing_style": "dns"}, ["s3.addressing_style must be path or virtual"]),
    ({"ca_file": "ca.pem"}, ["s3.ca_file must be an absolute path on the controller"]),
    ({"endpoint_url": "http://s3.lab.example"}, ["s3.ca_file needs an https:// endpoint_url"]),
    ({"create_bucket": "yes"}, ["s3.create_bucket must be true or false"]),
    ({"secret": "x"}, ["s3 may have", "secret"]),
], ids=lambda value: str(value)[:40])
def test_every_s3_rule_names_the_entry_and_the_key_never_the_secret(change, words):
    entry = dict(ENTRIES[0], s3=dict(LAB_S3, **change))
    with pytest.raises(model.ModelError) as raised:
        records([entry])
    assert str(raised.value).startswith('mlops_tracking_services entry "team-a"')
    assert "lab-s3cret-key" not in str(raised.value) and "short" not in str(raised.value).split(":", 1)[0]
    for word in words:
        assert word in str(raised.value)


MANAGED = {"host": "pg.lab.example", "ca_file": "/etc/lab/pg-ca.pem", "admin_user": "lab_admin",
           "admin_password": "lab-admin-pw"}


def test_an_external_database_server_is_the_entrys_postgresql_over_mlops_postgresql_without_its_password():
    team_a, team_b = records([ENTRIES[0], dict(ENTRIES[1], postgresql=dict(MANAGED, port=6432))])
    assert team_a["postgresql"] == {"external": False}
    assert team_b["postgresql"] == {"external": True, "host": "pg.lab.example", "port": 6432,
                                    "ca_file": "/etc/lab/pg-ca.pem", "admin_user": "lab_admin",
                                    "admin_database": "postgres"}
    assert "lab-admin-pw" not in repr(team_b) and team_b["database"] == "mlflow_team_b"
    wide = {host: dict(values, mlops_postgresql=MANAGED) for host, values in HOSTVARS.items()}
    team_a, team_b = records([ENTRIES[0], dict(ENTRIES[1], postgresql={"admin_database": "defaultdb"})], hostvars=wide)
    assert (team_a["postgresql"]["host"], team_a["postgresql"]["port"], team_b["postgresql"]["admin_database"]) == (
        "pg.lab.example", 5432, "defaultdb")


@pytest.mark.parametrize("change,words", [
    ({"host": "pg.lab.example:5432"}, ["postgresql.host must be"]),
    ({"port": 70000}, ["postgresql.port must be an integer"]),
    ({"ca_file": ""}, ["postgresql.ca_file must be an absolute path", "verify-full"]),
    ({"admin_user": "lab-admin"}, ["postgresql.admin_user must be a PostgreSQL name"]),
    ({"admin_password": "lab admin pw"}, ["postgresql.admin_password must be", "(not shown)"]),
    ({"sslmode": "disable"}, ["postgresql may have", "sslmode"]),
], ids=lambda value: str(value)[:40])
def test_every_postgresql_rule_names_the_entry_and_the_key_never_the_password(change, words):
    with pytest.raises(model.ModelError) as raised:
        records([dict(ENTRIES[0], postgresql=dict(MANAGED, **change))])
    assert str(raised.value).startswith('mlops_tracking_services entry "team-a"')
    assert "lab-admin-pw" not in str(raised.value) and "lab admin pw" not in str(raised.value)
    for word in words:
        assert word in str(raised.value)


@pytest.mark.parametrize("entries", [
    [dict(ENTRIES[0]), dict(ENTRIES[1], mlflow_port=5001)],
    [dict(ENTRIES[0]), dict(ENTRIES[1], gateway_port=8443)],
    [dict(ENTRIES[0]), dict(ENTRIES[1], gateway_port=5001)],
    [dict(ENTRIES[0]), dict(ENTRIES[1], name="team-a", mlflow_port=5009, gateway_port=8449)],
])
def test_names_and_ports_are_unique(entries):
    with pytest.raises(model.ModelError, match="unique|no two services may share a port"):
        records(entries)


def test_an_absent_service_gives_up_its_gateway_port():
    """"old" (absent) has team-a's gateway_port: no conflict."""
    assert [r["name"] for r in records()] == ["team-a", "team-b", "old"]


def test_the_published_defaults_are_the_roles_defaults():
    for key, value in model.PUBLISHED_DEFAULTS.items():
        role = key.split("_", maxsplit=1)[0]
        defaults = yaml.safe_load((REPO / "roles" / role / "defaults" / "main.yml").read_text())
        if key == "gateway_public_host":
            assert defaults[key] == "{{ mlops_public_host | default('', true) }}"
        else:
            assert defaults[key] == value, key


def test_the_name_rule_is_written_once_in_the_code():
    pattern = model.NAME_PATTERN.replace("\\", "")
    hits = [str(path.relative_to(REPO)) for folder in ("plugins", "roles", "playbooks")
            for path in (REPO / folder).rglob("*") if path.is_file() and path.suffix in (".py", ".yml", ".j2")
            and pattern in path.read_text().replace("\\", "")]
    assert hits == ["plugins/module_utils/platform_model.py"]


def mlflow_routes():
    """Every route of the MLflow server the roles install, as nginx sees the URI."""
    import mlflow
    defaults = yaml.safe_load((REPO / "roles/mlflow/defaults/main.yml").read_text())
    assert mlflow.__version__ == defaults["mlflow_version"], "the controller's MLflow is not the roles' version"
    from mlflow.server import app
    from mlflow.server.fastapi_app import create_fastapi_app

    flask = [rule.rule for rule in app.url_map.iter_rules()]
    # The routers FastAPI serves before the Flask app (each route's path has its prefix).
    included = [getattr(route, "original_router", None) for route in create_fastapi_app(app).routes]
    fastapi = [route.path for router in included if router for route in router.routes]
    assert fastapi, "found none of MLflow's FastAPI routes"
    return sorted(set(re.sub(r"<[^>]+>|{[^}]+}", "X", path) for path in flask + fastapi))


def test_the_refused_routes_are_the_optional_features_and_nothing_else():
    routes = mlflow_routes()
    refused = {feature: [r for r in routes if any(re.search(p, r) for p in patterns)]
               for feature, patterns in model.OPTIONAL_FEATURES.items()}
    # Each feature's routes, as MLflow names them.
    assert refused["webhooks"] and all("/mlflow/webhooks" in r for r in refused["webhooks"])
    assert "/api/2.0/mlflow/webhooks/X/test" in refused["webhooks"]
    assert all("/mlflow/gateway" in r or r.startswith("/gateway/") for r in refused["ai_gateway"])
    assert {"/api/3.0/mlflow/gateway/secrets/create",
            "/ajax-api/2.0/mlflow/gateway-proxy"} <= set(refused["ai_gateway"])
    assert any(r.startswith("/gateway/") for r in refused["ai_gateway"])
    assert refused["scorer_invocation"] == ["/ajax-api/3.0/mlflow/scorer/invoke"]
    # Tracking, the registry, artifacts, traces and the UI stay served.
    for kept in ("/api/2.0/mlflow/runs/create", "/api/2.0/mlflow/experiments/search",
                 "/api/2.0/mlflow/registered-models/create", "/api/2.0/mlflow-artifacts/artifacts/X",
                 "/api/3.0/mlflow/server-info", "/ajax-api/3.0/mlflow/scorers/list", "/"):
        assert kept in routes and not any(kept in found for found in refused.values()), kept


def test_a_service_refuses_the_features_its_entry_does_not_list():
    default, webhooks = records([ENTRIES[0], dict(ENTRIES[1], features=["webhooks"])])
    assert default["features"] == [] and len(default["refused_routes"]) == 5
    assert webhooks["features"] == ["webhooks"]
    assert model.OPTIONAL_FEATURES["webhooks"][0] not in webhooks["refused_routes"]
    assert model.OPTIONAL_FEATURES["ai_gateway"][0] in webhooks["refused_routes"]


def test_each_port_opens_only_to_the_hosts_that_use_it():
    services = records([ENTRIES[0], dict(ENTRIES[1], allow=["10.9.0.0/16"]), ENTRIES[2]], local=None)

    def openings(host, **options):
        return {o["port"]: (o["service"], o["sources"])
                for o in model.firewall_openings(services, HOSTVARS, GROUPS, host, **options)}

    assert openings("db") == {5433: ("postgresql", ["10.0.0.11", "10.0.0.12", "r1", "r2"])}
    assert openings("s3") == {9100: ("minio", ["10.0.0.11", "10.0.0.12", "10.0.0.20"])}
    # The absent service's port is not opened; the job API on the host's own port.
    assert openings("ml1") == {5001: ("mlflow@team-a.service", ["gw"]), 5002: ("mlflow@team-b.service", ["gw"]),
                               5090: ("job API", ["gw"])}
    assert openings("gw") == {8443: ("gateway of team-a", None), 443: ("gateway of team-b", ["10.9.0.0/16"])}
    assert openings("r1") == {}
    # The operator's sources join a platform port's; trusted ones reach every port but the open ones.
    extra = openings("gw", extra=[{"port": 443, "sources": ["bastion"]}, {"port": 22, "sources": ["10.1.0.0/24"]}],
                     trusted=["192.0.2.9"])
    assert extra[443] == ("gateway of team-b, firewall_allow", ["10.9.0.0/16", "192.0.2.9", "bastion"])
    assert extra[22] == ("firewall_allow", ["10.1.0.0/24", "192.0.2.9"]) and extra[8443][1] is None
