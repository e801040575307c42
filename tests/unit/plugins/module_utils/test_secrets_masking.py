"""secrets_masking: secrets masked in diffs and scrubbed from logs."""

from ansible_collections.mlops.platform.plugins.module_utils.secrets_masking import (
    MASK,
    changed_secrets,
    mask_env_text,
    mask_uri,
    scrub,
    secret_strings,
)
from ansible_collections.mlops.platform.plugins.module_utils.tracking_service_env import parse_env, render_env
from ansible_collections.mlops.platform.tests.unit.plugins.module_utils.tracking_service_cases import URI


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
