"""The submission API served by uvicorn on loopback against the real queue database,
spoken to over HTTP as the gateway forwards requests (X-Mlops-Service, basic auth)."""

import contextlib
import threading
import time

import pytest
import requests
import uvicorn

import servers

from mlops_jobs.api import create_app
from mlops_jobs.queue import Queue

SPEC = {"repository": "https://git.example/team/model.git", "commit": "1" * 40, "command": "python train.py"}


@contextlib.contextmanager
def serve(app):
    """app served by uvicorn on a free loopback port; yields its base URL."""
    port = servers.free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    try:
        yield "http://127.0.0.1:%d" % port
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def api_url(database):
    with serve(create_app(database["api"], ["team-a", "team-b"])) as base:
        yield base + "/api/mlops/jobs"


def call(method, url, service="team-a", user="alice", **kwargs):
    headers = {"X-Mlops-Service": service} if service else {}
    auth = (user, "checked-by-the-gateway") if user else None
    return requests.request(method, url, headers=headers, auth=auth, timeout=10, **kwargs)


def test_submit_show_list_cancel_and_copy(api_url):
    created = call("POST", api_url, json=dict(SPEC, gpus=1, env={"EPOCHS": "2"}))
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["status"] == "QUEUED" and job["service"] == "team-a" and job["submitted_by"] == "alice"
    assert "lease_until" not in job and job["created_at"].startswith("20")

    assert call("GET", "%s/%d" % (api_url, job["id"])).json()["env"] == {"EPOCHS": "2"}
    assert [j["id"] for j in call("GET", api_url).json()["jobs"]] == [job["id"]]
    assert call("GET", api_url, params={"status": "RUNNING"}).json()["jobs"] == []

    copied = call("POST", "%s/%d/copy" % (api_url, job["id"]), user="carol", json={"gpus": 0})
    assert copied.status_code == 201
    assert copied.json()["copied_from"] == job["id"] and copied.json()["gpus"] == 0
    assert copied.json()["submitted_by"] == "carol"

    cancelled = call("POST", "%s/%d/cancel" % (api_url, job["id"]))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELLED"


def test_a_service_sees_only_its_own_jobs(api_url):
    job = call("POST", api_url, json=SPEC).json()
    other = call("GET", "%s/%d" % (api_url, job["id"]), service="team-b", user="bob")
    assert other.status_code == 404 and "no job %d in tracking service team-b" % job["id"] in other.json()["error"]
    assert call("POST", "%s/%d/cancel" % (api_url, job["id"]), service="team-b").status_code == 404
    assert call("GET", api_url, service="team-b").json()["jobs"] == []


@pytest.mark.parametrize("service,user,status", [(None, "alice", 403), ("team-z", "alice", 403), ("team-a", None, 401)])
def test_requests_not_forwarded_by_a_gateway_are_refused(api_url, service, user, status):
    answer = call("POST", api_url, service=service, user=user, json=SPEC)
    assert answer.status_code == status


@pytest.mark.parametrize("payload,message", [
    ({"repository": "r", "commit": "c"}, "command is required"),
    (dict(SPEC, gpus="two"), "gpus must be an integer"),
    ([SPEC], "must be a JSON object"),
])
def test_bad_requests_get_400_with_the_reason(api_url, payload, message):
    answer = call("POST", api_url, json=payload)
    assert answer.status_code == 400 and message in answer.json()["error"]


def test_a_submission_is_a_queued_job_a_runner_can_claim(database, api_url):
    job = call("POST", api_url, json=dict(SPEC, gpus=1)).json()
    runner = Queue(database["runner"])
    runner.register("gpu-1", ["GPU-0"], cpus=4, memory_mb=4096)
    assert runner.claim("gpu-1")["id"] == job["id"]
    assert call("GET", "%s/%d" % (api_url, job["id"])).json()["status"] == "CLAIMED"
    runner.close()


def test_a_jobs_credential_is_accepted_only_while_its_runner_holds_it(database, api_url):
    base = api_url.rsplit("/api/", 1)[0] + "/internal/job-credential"
    job = call("POST", api_url, json=SPEC).json()
    runner = Queue(database["runner"])
    runner.register("cpu-1", [], cpus=4, memory_mb=4096)
    assert runner.claim("cpu-1")["id"] == job["id"]
    user = "job-%d" % job["id"]

    def check(service, name, secret):
        answer = requests.get(base, headers={"X-Mlops-Service": service}, auth=(name, secret), timeout=10)
        return answer.status_code, answer.headers.get("WWW-Authenticate")

    assert check("team-a", user, "the-secret") == (401, 'Basic realm="team-a"')  # none recorded yet
    assert runner.set_credential(job["id"], "cpu-1", "the-secret")
    assert check("team-a", user, "the-secret")[0] == 204
    assert runner.start(job["id"], "cpu-1", "run-1")
    for service, name, secret in (("team-a", user, "wrong"), ("team-b", user, "the-secret"),
                                  ("team-a", "job-%d" % (job["id"] + 1), "the-secret"), ("team-a", "alice", "x")):
        assert check(service, name, secret)[0] == 401, (service, name, secret)
    # The digest never leaves the queue.
    assert "credential_sha256" not in call("GET", "%s/%d" % (api_url, job["id"])).json()
    assert runner.finish(job["id"], "cpu-1", "SUCCEEDED", 0)
    # The API remembers an answer for a few seconds at most.
    deadline = time.monotonic() + 10
    while check("team-a", user, "the-secret")[0] != 401:
        assert time.monotonic() < deadline, "the credential still worked 10 s after the job ended"
        time.sleep(0.5)
    runner.close()
