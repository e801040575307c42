"""Re-runs of mlops.platform.minio on the converged node: a given certificate, the binary from other sources,
secrets at -vvv, bad input."""

import hashlib
import os
import pathlib
import subprocess
import tempfile

from cryptography import x509

from mlops_testing import CREDENTIALS, apply_role, host, minio_root

HOST = "minio-single"
node = host(HOST)
BINARY = os.environ["MLOPS_MINIO_BINARY"]


def variables(**overrides):
    """The converge's variables with the binary from a file (as the build cache keeps it)."""
    base = {
        "mlops_credentials_dir": str(CREDENTIALS),
        "minio_binary_file": BINARY,
        "minio_drives": ["/srv/minio/disk1", "/srv/minio/disk2"],
        "minio_tls_enabled": True,
        "minio_limit_nofile": 16384,
    }
    base.update(overrides)
    return base


def changed_count(output):
    recap = [line for line in output.splitlines() if line.startswith(HOST) and "changed=" in line]
    assert recap, output[-2000:]
    return int(recap[-1].split("changed=")[1].split()[0])


def from_the_url():
    """The converge's own variables: the binary from a URL with its checksum."""
    with open(BINARY, "rb") as binary:
        digest = hashlib.file_digest(binary, "sha256").hexdigest()
    return variables(minio_binary_file="", minio_binary_url="file://" + BINARY, minio_binary_sha256=digest)


def test_given_certificate_is_served_then_private_ca_again():
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)

        def openssl(*args):
            subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp)

        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=operator test CA",
                "-keyout", "ca.key", "-out", "ca.crt", "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=" + HOST, "-keyout", "node.key", "-out", "node.csr")
        (tmp / "san.ext").write_text("subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1\n" % HOST)
        openssl("x509", "-req", "-in", "node.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-out", "node.crt", "-extfile", "san.ext")
        given = variables(minio_tls_cert_file=str(tmp / "node.crt"), minio_tls_key_file=str(tmp / "node.key"),
                          minio_tls_ca_file=str(tmp / "ca.crt"))
        result = apply_role("mlops.platform.minio", HOST, given)
        assert result.returncode == 0, result.stdout[-3000:]
        served_cert = x509.load_pem_x509_certificate(
            node.file("/etc/minio/certs/public.crt").content_string.encode())
        assert served_cert.issuer.rfc4514_string() == "CN=operator test CA"
        served = node.check_output(
            "python3 -c \"import ssl,urllib.request;"
            "print(urllib.request.urlopen('https://localhost:9000/minio/health/ready',"
            "context=ssl.create_default_context(cafile='/etc/minio/certs/CAs/ca.crt')).status)\"")
        assert served == "200"
        assert changed_count(apply_role("mlops.platform.minio", HOST, given).stdout) == 0

    # Back to the private CA; that this run left the node as converged (a run after it
    # changes nothing) is the next test's first assertion.
    restored = apply_role("mlops.platform.minio", HOST, variables())
    assert restored.returncode == 0, restored.stdout[-3000:]
    ca = (CREDENTIALS / HOST / "minio" / "ca.crt").read_text()
    assert node.file("/etc/minio/certs/CAs/ca.crt").content_string.strip() == ca.strip()


def test_the_same_binary_from_its_url_a_file_or_the_build_cache_changes_nothing():
    # The converged node got the binary from a URL: the role's second run from the same
    # URL (the scenario's idempotence step, steps-covered; the certificate test before it
    # ends back on the converge's private CA), then the same bytes from a
    # file, or from the controller's build cache by module version, change nothing. A new
    # binary, its one restart and the old one kept: minio_distributed's test_minio_upgrade.py.
    again = apply_role("mlops.platform.minio", HOST, from_the_url())
    assert again.returncode == 0, again.stdout[-3000:]
    assert changed_count(again.stdout) == 0
    same = apply_role("mlops.platform.minio", HOST, variables())
    assert same.returncode == 0, same.stdout[-3000:]
    assert changed_count(same.stdout) == 0
    version = pathlib.Path(BINARY).parent.name
    built = apply_role("mlops.platform.minio", HOST, variables(minio_binary_file="", minio_binary_module_version=version))
    assert built.returncode == 0, built.stdout[-3000:]
    assert changed_count(built.stdout) == 0
    assert node.service("minio").is_running


def test_no_root_password_at_vvv_in_check_mode():
    # Check mode on the converged node with its own variables: the scenario's check step
    # too (steps-covered).
    password = minio_root(HOST)[1]
    result = apply_role("mlops.platform.minio", HOST, from_the_url(), "--check", "--diff", "-vvv")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert changed_count(result.stdout) == 0
    assert password not in output


def test_bad_input_fails_before_any_change():
    cases = {
        "two sources": (dict(minio_binary_url="https://example.invalid/minio", minio_binary_sha256="0" * 64),
                        "exactly one of"),
        "url without checksum": (dict(minio_binary_file="", minio_binary_url="https://example.invalid/minio"),
                                 "no download without a checksum"),
        "unpinned module": (dict(minio_binary_file="", minio_binary_module_version="latest"), "pinned"),
        "relative drive": (dict(minio_drives=["data"]), "minio_drives"),
        "host not among nodes": (dict(minio_nodes=["other1", "other2"]), "minio_nodes"),
        "short root password": (dict(minio_root_password="short"), "minio_root_password"),
        "secret in environment": (dict(minio_environment={"MINIO_ROOT_PASSWORD": "x" * 12}), "minio_environment"),
        "console through environment": (dict(minio_environment={"MINIO_BROWSER": "on"}), "minio_console_enabled"),
        "console on the API port": (dict(minio_console_enabled=True, minio_console_port=9000), "minio_console_port"),
    }
    before = node.check_output("stat -c %Y /etc/default/minio /etc/minio/root.env /usr/local/bin/minio")
    for name, (overrides, message) in cases.items():
        result = apply_role("mlops.platform.minio", HOST, variables(**overrides))
        output = result.stdout + result.stderr
        assert result.returncode != 0, name
        assert message in output, "%s: %r not in output:\n%s" % (name, message, output[-2000:])
        assert changed_count(output) == 0, name
    assert node.check_output("stat -c %Y /etc/default/minio /etc/minio/root.env /usr/local/bin/minio") == before
