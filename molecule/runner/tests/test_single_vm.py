"""The one-shot deploy of a single VM (playbooks/single_vm.yml), as cloud-init runs it:
no inventory, a few parameters, the URL and the credentials' place printed at the end.
It redeploys the host as a single-VM platform with its own, new credentials directory (a
new MinIO root password, a new gateway CA), and the gateway then serves only that
platform's service: rebuilds_host runs these tests last (molecule/conftest.py)."""

import os
import re
import subprocess

import pytest
import requests

from mlops_testing import address, platform_host, recap_changed, run_tutorial

pytestmark = pytest.mark.rebuilds_host
HOST = platform_host()

ADMIN_PASSWORD = "Vm-admin-2026"


def single_vm(*params, options=()):
    command = ["ansible-playbook", "mlops.platform.single_vm", "-e", "target=" + HOST,
               "-e", "target_connection=mlops_podman",
               "-e", "minio_binary_file=" + os.environ["MLOPS_MINIO_BINARY"], "-e", "minio_limit_nofile=16384",
               # nft needs NET_ADMIN, which this test host lacks (multi_host tests the firewall).
               "-e", "firewall_enabled=false"]
    for param in params:
        command += ["-e", param]
    command += list(options)
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False,
                          env=dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
                                   ANSIBLE_CALLBACK_RESULT_FORMAT="json"))
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("params,words", [
    (["public_host=https://mlflow.example.com"], ["public_host", "without scheme"]),
    ([], ["public_host", "give the DNS name"]),
    (["public_host=192.0.2.10", "admin_password=Sh0rt!"], ["admin_password", "8 to 30 characters"]),
    (["public_host=192.0.2.10", "admin_password=onlylower123"], ["admin_password", "at least 3 of the classes"]),
    (["public_host=192.0.2.10", "minio_root_password=" + "Aa1" * 11], ["minio_root_password", "8 to 30"]),
    (["public_host=192.0.2.10", "admin_user=al/ice"], ["admin_user", "letters, digits"]),
], ids=["scheme", "missing", "short-password", "two-classes", "long-root-password", "user-with-slash"])
def test_bad_parameters_fail_before_anything_changes(params, words, tmp_path):
    rc, output = single_vm("credentials_dir=%s" % (tmp_path / "credentials"), *params)
    assert rc != 0, output[-3000:]
    for word in words:
        assert word in output, output[-3000:]
    assert re.findall(r"^PLAY \[(.*?)\]", output, re.M) == ["Check the parameters before anything changes"]
    assert not (tmp_path / "credentials").exists()
    for param in params:
        if "password=" in param:
            assert param.split("=", 1)[1] not in output


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    credentials = tmp_path_factory.mktemp("single-vm") / "credentials"
    params = ["public_host=" + address(HOST), "admin_user=admin", "admin_password=" + ADMIN_PASSWORD,
              "credentials_dir=%s" % credentials]
    rc, output = single_vm(*params)
    assert rc == 0, output[-5000:]
    return {"credentials": credentials, "params": params, "output": output}


def test_prints_the_url_and_where_the_credentials_are(deployed):
    credentials, output = deployed["credentials"], deployed["output"]
    assert "MLflow: https://%s/ (user admin)" % address(HOST) in output
    password_file = credentials / "tracking-services" / "mlflow" / "users" / "admin.password"
    assert "Password: %s" % password_file in output
    assert password_file.read_text() == ADMIN_PASSWORD
    assert oct(password_file.stat().st_mode & 0o777) == "0o600"
    assert (credentials / address(HOST) / "gateway" / "ca.crt").exists()
    assert ADMIN_PASSWORD not in output


def test_the_service_answers_its_admin_on_443_and_logs_a_run(deployed):
    credentials = deployed["credentials"]
    ca = str(credentials / address(HOST) / "gateway" / "ca.crt")
    search = "https://%s/api/2.0/mlflow/experiments/search?max_results=1" % address(HOST)
    assert requests.get(search, verify=ca, timeout=30).status_code == 401
    assert requests.get(search, auth=("admin", "wrong-Pass-1"), verify=ca, timeout=30).status_code == 401
    assert requests.get(search, auth=("admin", ADMIN_PASSWORD), verify=ca, timeout=30).status_code == 200
    env = dict(os.environ, MLFLOW_TRACKING_URI="https://%s" % address(HOST), MLFLOW_TRACKING_USERNAME="admin",
               MLFLOW_TRACKING_PASSWORD=ADMIN_PASSWORD, MLFLOW_TRACKING_SERVER_CERT_PATH=ca)
    done = run_tutorial(env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]


def test_a_second_run_of_one_step_keeps_the_password_and_changes_nothing(deployed):
    """Again without the password, limited to one step by its tag (as an operator applies
    the gateway's configuration again): the parameters are checked, the kept password
    stays, nothing changes. A whole second run of these roles on Debian 13 is this
    scenario's reconcile apply run (steps-covered)."""
    credentials, params = deployed["credentials"], deployed["params"]
    without_password = [p for p in params if not p.startswith("admin_password=")]
    rc, output = single_vm(*without_password, options=["--tags", "gateway_configure"])
    assert rc == 0, output[-5000:]
    assert "mlops.platform.gateway : Write the server of every service" in output, output[-5000:]
    assert "MLflow: https://%s/ (user admin)" % address(HOST) in output
    password_file = credentials / "tracking-services" / "mlflow" / "users" / "admin.password"
    assert password_file.read_text() == ADMIN_PASSWORD
    changed = recap_changed(output)
    assert changed and set(changed) == {0}, output[-5000:]
