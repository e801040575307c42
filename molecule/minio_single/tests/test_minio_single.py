"""Verify a single MinIO node: systemd, TLS, health, objects, secrets."""

import io
import os
import subprocess

from mlops_testing import CREDENTIALS, host, listening, minio_client, minio_root

HOST = "minio-single"
MINIO_CREDENTIALS = CREDENTIALS / HOST / "minio"
node = host(HOST)


def client():
    import urllib3
    http = urllib3.PoolManager(ca_certs=str(MINIO_CREDENTIALS / "ca.crt"), cert_reqs="CERT_REQUIRED")
    return minio_client(HOST, *minio_root(HOST), secure=True, http_client=http)


def test_runs_under_systemd_as_its_own_user():
    service = node.service("minio")
    assert service.is_running and service.is_enabled
    assert node.check_output("systemctl show -p Type --value minio") == "notify"
    assert "minio-user" in node.check_output("ps -o user= -C minio")


def test_binary_is_the_pinned_build():
    local = subprocess.check_output(["sha256sum", os.environ["MLOPS_MINIO_BINARY"]], text=True).split()[0]
    assert node.check_output("sha256sum /usr/local/bin/minio").split()[0] == local
    assert "commit-id=" in node.check_output("/usr/local/bin/minio --version")


def test_secrets_file_is_private_and_no_secret_is_on_a_command_line():
    secrets = node.file("/etc/minio/root.env")
    assert secrets.mode == 0o600 and secrets.user == "minio-user"
    password = minio_root(HOST)[1]
    assert password in secrets.content_string
    assert password not in node.check_output("cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
    assert password not in node.file("/etc/default/minio").content_string
    assert (MINIO_CREDENTIALS / "root_password").stat().st_mode & 0o777 == 0o600


def test_health_over_tls_with_the_private_ca():
    for path in ("live", "ready"):
        code = node.check_output(
            "python3 -c \"import ssl,urllib.request;"
            "print(urllib.request.urlopen('https://localhost:9000/minio/health/%s',"
            "context=ssl.create_default_context(cafile='/etc/minio/certs/CAs/ca.crt')).status)\"" % path)
        assert code == "200"
    assert node.file("/etc/minio/certs/private.key").mode == 0o600


def test_object_round_trip_from_the_controller():
    c = client()
    if not c.bucket_exists("verify-single"):
        c.make_bucket("verify-single")
    c.put_object("verify-single", "hello.txt", io.BytesIO(b"hello minio"), 11)
    assert c.get_object("verify-single", "hello.txt").read() == b"hello minio"
    # Two drives, erasure coded: the object's parts are on both.
    assert node.run("ls /srv/minio/disk1/verify-single/hello.txt").rc == 0
    assert node.run("ls /srv/minio/disk2/verify-single/hello.txt").rc == 0


def test_the_console_is_off_unless_enabled():
    # minio_console_enabled defaults to false: MinIO is told so and nothing listens on
    # minio_console_port; the API port is served.
    assert "MINIO_BROWSER=off" in node.file("/etc/default/minio").content_string
    assert "--console-address" not in node.file("/etc/default/minio").content_string
    ports = {port for _address, port in listening(node)}
    assert 9000 in ports and 9001 not in ports, ports
