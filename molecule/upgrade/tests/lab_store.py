"""The lab's storage (prepare.yml) on its own host with its own CA, which the platform does
not run: a MinIO, as the tests reach it with the key the lab gave the platform (or
another), and a managed-like PostgreSQL."""

from urllib.parse import urlsplit

import urllib3
from minio import Minio

from mlops_testing import EPHEMERAL, group_vars

HOST = "mlops-upgrade-store"
GROUP_VARS = group_vars("all")
URL = GROUP_VARS["lab_store_url"]
ACCESS_KEY = GROUP_VARS["lab_store_access_key"]
SECRET_KEY = GROUP_VARS["lab_store_secret_key"]
BUCKET = "lab-artifacts"
# The lab's CA, and another CA that signs nothing the store serves.
CA = EPHEMERAL / "external-store" / "ca.crt"
OTHER_CA = EPHEMERAL / "external-store" / "other-ca.crt"


def client(access_key=ACCESS_KEY, secret_key=SECRET_KEY):
    """A client of the store's S3 API, its certificate checked with the lab's CA."""
    return Minio(urlsplit(URL).netloc, access_key, secret_key, secure=True,
                 http_client=urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=str(CA)))
