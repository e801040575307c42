# -*- coding: utf-8 -*-
# Copyright: mlops.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Connection options shared by the object storage modules.
    DOCUMENTATION = r"""
options:
  endpoint_url:
    description:
      - URL of the S3 or MinIO endpoint, such as V(https://minio.example.com:9000) or V(http://127.0.0.1:9000).
      - The scheme decides whether TLS is used; a path is not allowed.
    type: str
    required: true
  access_key:
    description:
      - Access key the module signs its requests with. For MinIO user and policy management and for bucket quotas
        this must be an administrator (such as the root user).
    type: str
    required: true
  secret_key:
    description:
      - Secret key belonging to O(access_key).
    type: str
    required: true
  region:
    description:
      - Region to sign requests for; MinIO ignores it unless configured with one.
    type: str
    default: us-east-1
  addressing_style:
    description:
      - How a bucket is addressed, V(path) (V(https://host/bucket/key), what S3-compatible stores usually take) or
        V(virtual) (V(https://bucket.host/key)).
      - V(auto) lets the client choose, virtual-host style for AWS S3 and path style elsewhere.
    type: str
    choices: [auto, path, virtual]
    default: auto
  validate_certs:
    description:
      - Verify the endpoint's TLS certificate. Turn off only for a test endpoint.
    type: bool
    default: true
  ca_path:
    description:
      - CA bundle (PEM) to verify the endpoint's certificate with, for a private CA or a self-signed certificate.
    type: path
  ca_content:
    description:
      - The same CA bundle given as its PEM text, for a CA that is not (yet) a file where the module runs. With
        O(ca_path) both are trusted.
    type: str
  timeout:
    description:
      - Seconds to wait for the endpoint to accept a connection and to answer a request.
    type: int
    default: 15
notes:
  - Set the connection once for all object storage modules with C(module_defaults) and the
    C(group/mlops.platform.object_storage) action group.
requirements:
  - minio >= 7.2.17, < 8 (minio-py, with argon2-cffi and pycryptodome for the admin API)
"""
