"""The submission API: jobs of a tracking service over HTTP, behind that service's gateway.

The gateway authenticates the user (basic auth, as for MLflow) and sets the
X-Mlops-Service header to the service the request came to; this server listens on
loopback only and trusts nothing else: a request without a known service is refused.
Data scientists never hold database credentials; this server holds the API role's.

Settings come from the environment (the unit's EnvironmentFile):
  MLOPS_JOBS_DATABASE  libpq connection string of the API role (a secret)
  MLOPS_JOBS_SERVICES  comma-separated names of the tracking services it serves

  uvicorn --factory mlops_jobs.api:app_from_environment --host 127.0.0.1 --port 5080
"""

import base64
import binascii
import datetime
import os
import re
import time

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mlops_jobs.queue import Queue, QueueError

PREFIX = "/api/mlops/jobs"
SERVICE_HEADER = "x-mlops-service"
# Asked by the gateway's password checker for a user it does not know: whether the
# request's credential is a running job's (user job-<id>). Never forwarded to users.
CREDENTIAL_PATH = "/internal/job-credential"
JOB_USER = re.compile(r"^job-([0-9]{1,18})$")
# An accepted credential is remembered this long: it stops working at most this long
# after its job ended. A refusal is not remembered (a job's first request may come a
# moment after its runner recorded the credential).
CREDENTIAL_CACHE_SECONDS = 5.0


def job_document(row):
    """A job row as JSON: timestamps in ISO 8601, nothing of the runner's lease."""
    return {key: value.isoformat() if isinstance(value, datetime.datetime) else value
            for key, value in row.items() if key not in ("lease_until", "credential_sha256")}


def _error(status, message):
    return JSONResponse({"error": message}, status_code=status)


def _basic(request):
    """(user, password) of the request's basic-auth header, or (None, None)."""
    scheme, _sep, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        user, _sep, password = base64.b64decode(token, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    return user or None, password


def _user(request):
    """The basic-auth user name the gateway has checked."""
    return _basic(request)[0]


def create_app(database, services):
    services = frozenset(services)

    def authorized(handler):
        """The handler, called with (request, service, user) for requests the gateway
        forwarded for a known service with a basic-auth user."""
        async def checked(request):
            service = request.headers.get(SERVICE_HEADER, "")
            if service not in services:
                return _error(403, "this API answers through a tracking service's gateway only")
            user = _user(request)
            if user is None:
                return _error(401, "basic-auth credentials are required")
            return await handler(request, service, user)
        return checked

    async def body(request):
        try:
            data = await request.json()
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def with_queue_blocking(action):
        queue = Queue(database)
        try:
            return action(queue)
        except QueueError as exc:
            return _error(404 if str(exc).startswith("no job ") else 400, str(exc))
        finally:
            queue.close()

    async def with_queue(action):
        # psycopg blocks: off the event loop.
        return await run_in_threadpool(with_queue_blocking, action)

    def job_id(request):
        return int(request.path_params["job_id"])

    @authorized
    async def submit(request, service, user):
        spec = await body(request)
        if spec is None:
            return _error(400, "the request body must be a JSON object: the job's request")
        return await with_queue(lambda q: JSONResponse(job_document(q.submit(service, user, spec)), status_code=201))

    @authorized
    async def listing(request, service, _user_name):
        try:
            limit = min(max(int(request.query_params.get("limit", "50")), 1), 1000)
        except ValueError:
            return _error(400, "limit must be an integer")
        status = request.query_params.get("status") or None
        return await with_queue(lambda q: JSONResponse(
            {"jobs": [job_document(j) for j in q.jobs(service, limit=limit, status=status)]}))

    @authorized
    async def show(request, service, _user_name):
        return await with_queue(lambda q: JSONResponse(job_document(q.get(job_id(request), service))))

    @authorized
    async def cancel(request, service, _user_name):
        return await with_queue(lambda q: JSONResponse(job_document(q.cancel(job_id(request), service))))

    @authorized
    async def copy(request, service, user):
        overrides = await body(request)
        if overrides is None:
            return _error(400, "the request body must be a JSON object: the fields to change")
        return await with_queue(lambda q: JSONResponse(
            job_document(q.copy(job_id(request), service, user, overrides)), status_code=201))

    async def health(_request):
        return JSONResponse({"status": "ok"})

    remembered = {}

    async def credential(request):
        """204 when the basic-auth credential is that of a job of the service in
        X-Mlops-Service its runner holds now, else 401 with the service's challenge."""
        service = request.headers.get(SERVICE_HEADER, "")
        user, password = _basic(request)
        match = JOB_USER.match(user or "")
        valid = False
        if service in services and match and password:
            key = (service, request.headers.get("authorization"))
            now = time.monotonic()
            valid = remembered.get(key, 0.0) > now
            if not valid:
                found = await with_queue(lambda q: q.credential_valid(service, int(match.group(1)), password))
                valid = found is True
                if valid:
                    if len(remembered) > 10000:
                        remembered.clear()
                    remembered[key] = now + CREDENTIAL_CACHE_SECONDS
        if valid:
            return Response(status_code=204)
        return Response(status_code=401, headers={"WWW-Authenticate": 'Basic realm="%s"' % service})

    return Starlette(routes=[
        Route(PREFIX + "/health", health),
        Route(CREDENTIAL_PATH, credential, methods=["GET"]),
        Route(PREFIX, submit, methods=["POST"]),
        Route(PREFIX, listing, methods=["GET"]),
        Route(PREFIX + "/{job_id:int}", show, methods=["GET"]),
        Route(PREFIX + "/{job_id:int}/cancel", cancel, methods=["POST"]),
        Route(PREFIX + "/{job_id:int}/copy", copy, methods=["POST"]),
    ])


def app_from_environment():
    database = os.environ.get("MLOPS_JOBS_DATABASE", "")
    services = [s for s in os.environ.get("MLOPS_JOBS_SERVICES", "").split(",") if s]
    if not database or not services:
        raise SystemExit("MLOPS_JOBS_DATABASE and MLOPS_JOBS_SERVICES must be set")
    return create_app(database, services)
