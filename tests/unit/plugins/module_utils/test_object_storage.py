import pytest

from ansible_collections.mlops.platform.plugins.module_utils.object_storage import (
    ObjectStorageError,
    bucket_name_problem,
    normalize_policy,
    parse_endpoint_url,
)


@pytest.mark.parametrize("name", ["abc", "mlflow-team-a", "a.b.c", "a" * 63, "0bucket9"])
def test_valid_bucket_names(name):
    assert bucket_name_problem(name) is None


@pytest.mark.parametrize("name", ["ab", "a" * 64, "Upper", "under_score", "-start", "end-", "a..b", "10.0.0.1",
                                  "with space"])
def test_invalid_bucket_names_name_the_value_and_the_rules(name):
    problem = bucket_name_problem(name)
    assert problem and repr(name) in problem and "lowercase letters" in problem


@pytest.mark.parametrize("url,expected", [
    ("http://127.0.0.1:9000", ("127.0.0.1:9000", False)),
    ("https://minio.example.com", ("minio.example.com", True)),
    ("https://minio.example.com:9000/", ("minio.example.com:9000", True)),
])
def test_endpoint_urls(url, expected):
    assert parse_endpoint_url(url) == expected


@pytest.mark.parametrize("url,message", [
    ("minio.example.com:9000", "must look like"),
    ("ftp://minio.example.com", "must look like"),
    ("https://minio.example.com/bucket", "must not have a path"),
    ("https://user:pw@minio.example.com", "must not carry credentials"),
])
def test_bad_endpoint_urls(url, message):
    with pytest.raises(ObjectStorageError) as exc:
        parse_endpoint_url(url)
    assert message in str(exc.value)


def test_policies_that_grant_the_same_normalize_equal():
    written = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject"], "Resource": ["arn:aws:s3:::b/*"]},
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b"},
    ]}
    rewritten = {"Statement": [
        {"Resource": "arn:aws:s3:::b", "Action": ["s3:ListBucket"], "Effect": "Allow"},
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:GetObject"], "Resource": "arn:aws:s3:::b/*"},
    ]}
    assert normalize_policy(written) == normalize_policy(rewritten)


def test_policies_that_grant_differently_normalize_apart():
    base = {"Statement": [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::b/*"]}]}
    other = {"Statement": [{"Effect": "Deny", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::b/*"]}]}
    more = {"Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
                           "Resource": ["arn:aws:s3:::b/*"]}]}
    assert normalize_policy(base) != normalize_policy(other)
    assert normalize_policy(base) != normalize_policy(more)


def test_single_statement_mapping_and_conditions():
    doc = {"Statement": {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*",
                         "Condition": {"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "192.0.2.0/24"]}}}}
    same = {"Statement": [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::b/*"],
                           "Condition": {"IpAddress": {"aws:SourceIp": ["192.0.2.0/24", "10.0.0.0/8"]}}}]}
    assert normalize_policy(doc) == normalize_policy(same)
    assert normalize_policy(doc)["Version"] == "2012-10-17"


@pytest.mark.parametrize("doc", [None, [], {"Version": "2012-10-17"}, {"Statement": []}, {"Statement": ["x"]}])
def test_malformed_policies_are_refused(doc):
    with pytest.raises(ValueError):
        normalize_policy(doc)
