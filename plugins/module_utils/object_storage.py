# -*- coding: utf-8 -*-
# Copyright: mlops.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one client of the object storage modules: connection, retries and errors.

Every call to the endpoint goes through ObjectStorageClient.call, which turns the
exceptions of minio-py and urllib3 into one-line messages an operator can act on
(unreachable endpoint, TLS failure, refused credentials, missing permission).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import json
import traceback

from ansible.module_utils.six.moves.urllib.parse import urlparse

try:
    import certifi
    import urllib3
    from minio import Minio, MinioAdmin
    from minio.credentials import StaticProvider
    from minio.error import MinioAdminException, S3Error, ServerError
    from minio.helpers import check_bucket_name
except ImportError:
    HAS_MINIO = False
    MINIO_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_MINIO = True
    MINIO_IMPORT_ERROR = None

CONNECTION_ARGUMENT_SPEC = dict(
    endpoint_url=dict(type="str", required=True),
    access_key=dict(type="str", required=True, no_log=False),
    secret_key=dict(type="str", required=True, no_log=True),
    region=dict(type="str", default="us-east-1"),
    addressing_style=dict(type="str", default="auto", choices=["auto", "path", "virtual"]),
    validate_certs=dict(type="bool", default=True),
    ca_path=dict(type="path"),
    ca_content=dict(type="str"),
    timeout=dict(type="int", default=15),
)

BUCKET_NAME_RULES = (
    "3 to 63 characters of lowercase letters, digits, dots and hyphens, starting and ending with a letter or "
    "digit, no two dots in a row, not formatted like an IP address"
)

# Admin API error codes that mean "there is no such thing".
NOT_FOUND_CODES = ("XMinioAdminNoSuchUser", "XMinioAdminNoSuchPolicy", "XMinioAdminNoSuchBucket", "NoSuchBucket")


class ObjectStorageError(Exception):
    """A failure already worded for the operator."""

    def __init__(self, message, code=None):
        super(ObjectStorageError, self).__init__(message)
        self.code = code


def argument_spec(**module_options):
    """The connection options plus the module's own."""
    spec = copy.deepcopy(CONNECTION_ARGUMENT_SPEC)
    spec.update(module_options)
    return spec


def bucket_name_problem(name):
    """Return why name is not a valid S3 bucket name, or None when it is."""
    if not HAS_MINIO:
        return None
    try:
        check_bucket_name(name, strict=True)
    except ValueError:
        return "bucket name %r breaks the S3 naming rules: %s" % (name, BUCKET_NAME_RULES)
    return None


def parse_endpoint_url(url):
    """Return (host[:port], secure) for an http(s) URL without a path."""
    parsed = urlparse(url or "")
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ObjectStorageError("endpoint_url must look like https://host[:port] or http://host[:port], got %r" % url)
    if parsed.path not in ("", "/") or parsed.query or parsed.params or parsed.fragment:
        raise ObjectStorageError("endpoint_url must not have a path or query, got %r" % url)
    if parsed.username or parsed.password:
        raise ObjectStorageError("endpoint_url must not carry credentials; use access_key and secret_key")
    return parsed.netloc, parsed.scheme == "https"


def admin_error_code(exc):
    """The Code of a MinIO admin API error body, or None."""
    body = getattr(exc, "_body", None) or ""
    try:
        return json.loads(body).get("Code")
    except (ValueError, AttributeError):
        return None


class ObjectStorageClient(object):
    """S3 and MinIO admin clients for one endpoint, with errors translated."""

    def __init__(self, params, access_key=None, secret_key=None):
        self.url = params["endpoint_url"]
        self.endpoint, self.secure = parse_endpoint_url(self.url)
        self.access_key = access_key or params["access_key"]
        self.timeout = params["timeout"]
        self._secret_key = secret_key or params["secret_key"]
        self._region = params["region"]
        verify = params["validate_certs"]
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout),
            # A refused connection or a 5xx is retried twice; a wrong answer is not.
            retries=urllib3.Retry(total=2, backoff_factor=0.5, status_forcelist=(500, 502, 503, 504)),
            cert_reqs="CERT_REQUIRED" if verify else "CERT_NONE",
            ca_certs=(params.get("ca_path") or (None if params.get("ca_content") else certifi.where()))
            if verify else None,
            ca_cert_data=params.get("ca_content") if verify else None,
        )
        if not verify:
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        self.s3 = Minio(
            self.endpoint, access_key=self.access_key, secret_key=self._secret_key, secure=self.secure,
            region=self._region, http_client=self._http,
        )
        # auto: minio-py's own choice (virtual-host style for AWS S3, path style elsewhere).
        style = params.get("addressing_style") or "auto"
        if style == "virtual":
            self.s3.enable_virtual_style_endpoint()
        elif style == "path":
            self.s3.disable_virtual_style_endpoint()
        self._admin = None

    @property
    def admin(self):
        if self._admin is None:
            self._admin = MinioAdmin(
                endpoint=self.endpoint, credentials=StaticProvider(self.access_key, self._secret_key),
                region=self._region, secure=self.secure, http_client=self._http,
            )
        return self._admin

    def sign_in(self):
        """Check that the endpoint answers and accepts the keys, with one GET.

        HEAD requests (bucket_exists) carry no error body, so a wrong secret would
        read as a mere AccessDenied there. A key without permission to list buckets
        still signs in: AccessDenied here means the keys are valid.
        """
        try:
            self.call("sign in to %s" % self.url, self.s3.list_buckets)
        except ObjectStorageError as exc:
            if exc.code != "AccessDenied":
                raise
        return True

    def as_user(self, access_key, secret_key, params):
        """A client of the same endpoint signing as another user."""
        return ObjectStorageClient(params, access_key=access_key, secret_key=secret_key)

    def call(self, what, func, *args, **kwargs):
        """Run func; translate failures into ObjectStorageError naming what was attempted."""
        try:
            return func(*args, **kwargs)
        except S3Error as exc:
            raise self._s3_error(what, exc.code, exc.message)
        except MinioAdminException as exc:
            code = admin_error_code(exc)
            message = exc._body
            try:
                message = json.loads(exc._body).get("Message", message)
            except (ValueError, AttributeError):
                pass
            raise self._s3_error(what, code or "HTTP %s" % getattr(exc, "_code", "?"), message)
        except ServerError as exc:
            raise ObjectStorageError(
                "%s: %s answered HTTP %s; is it an S3 endpoint? (%s)" % (what, self.url, exc.status_code, exc)
            )
        except urllib3.exceptions.MaxRetryError as exc:
            raise self._connection_error(what, exc.reason)
        except (urllib3.exceptions.SSLError, urllib3.exceptions.TimeoutError,
                urllib3.exceptions.ProtocolError, urllib3.exceptions.NewConnectionError) as exc:
            raise self._connection_error(what, exc)
        except ValueError as exc:
            raise ObjectStorageError("%s: %s" % (what, exc))

    def admin_json(self, what, func, *args, **kwargs):
        """Call an admin API method returning JSON; None when the thing does not exist."""
        try:
            text = self.call(what, func, *args, **kwargs)
        except ObjectStorageError as exc:
            if exc.code in NOT_FOUND_CODES:
                return None
            raise
        return json.loads(text) if text else {}

    def _s3_error(self, what, code, message):
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch"):
            text = "%s: %s refused the credentials of access key %r (%s: %s)" % (
                what, self.url, self.access_key, code, message)
        elif code in ("AccessDenied", "XMinioAdminAccessDenied"):
            text = "%s: access key %r is not allowed to do this on %s (%s: %s)" % (
                what, self.access_key, self.url, code, message)
        else:
            text = "%s: %s (%s)" % (what, message, code)
        return ObjectStorageError(text, code=code)

    def _connection_error(self, what, reason):
        if isinstance(reason, urllib3.exceptions.SSLError) or "SSL" in type(reason).__name__:
            return ObjectStorageError(
                "%s: TLS failure talking to %s: %s. Give ca_path for a private CA, or use http:// if the endpoint "
                "does not speak TLS." % (what, self.url, reason)
            )
        # NewConnectionError derives from ConnectTimeoutError: a refused connection is no timeout.
        if isinstance(reason, urllib3.exceptions.NewConnectionError):
            return ObjectStorageError("%s: cannot reach %s: %s" % (what, self.url, reason))
        if isinstance(reason, urllib3.exceptions.TimeoutError):
            return ObjectStorageError("%s: %s did not answer within %s s (%s)" % (what, self.url, self.timeout, reason))
        return ObjectStorageError("%s: cannot reach %s: %s" % (what, self.url, reason))


def connect(module):
    """The client for a module's connection options; fails the module when it cannot."""
    from ansible.module_utils.basic import missing_required_lib

    if not HAS_MINIO:
        module.fail_json(msg=missing_required_lib("minio"), exception=MINIO_IMPORT_ERROR)
    try:
        client = ObjectStorageClient(module.params)
        client.sign_in()
    except ObjectStorageError as exc:
        module.fail_json(msg=str(exc))
    return client


_POLICY_LIST_KEYS = ("Action", "NotAction", "Resource", "NotResource")


def _canonical(value):
    if isinstance(value, dict):
        return dict((k, _canonical(v)) for k, v in value.items())
    if isinstance(value, list):
        items = [_canonical(v) for v in value]
        if all(isinstance(v, str) for v in items):
            return sorted(set(items))
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    return value


def normalize_policy(document):
    """A canonical form of an IAM policy document, for comparison.

    Two documents that grant the same are equal after this: a missing Version is the
    current one, a single Statement or a single Action/Resource string is a list of
    one, and lists of strings are sets.
    """
    if not isinstance(document, dict):
        raise ValueError("a policy must be a mapping, got %s" % type(document).__name__)
    doc = dict(document)
    doc.setdefault("Version", "2012-10-17")
    statements = doc.get("Statement")
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list) or not statements:
        raise ValueError("a policy needs a non-empty Statement list")
    canonical_statements = []
    for statement in statements:
        if not isinstance(statement, dict):
            raise ValueError("each Statement must be a mapping")
        statement = dict(statement)
        for key in _POLICY_LIST_KEYS:
            if isinstance(statement.get(key), str):
                statement[key] = [statement[key]]
        canonical_statements.append(_canonical(statement))
    doc["Statement"] = sorted(canonical_statements, key=lambda s: json.dumps(s, sort_keys=True))
    return doc
