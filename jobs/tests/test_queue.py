"""The queue against a real PostgreSQL: claim by fit, leases, the reaper, retries,
cancelling, wake-ups and the two roles' privileges."""

import json
import threading
import time

import psycopg
import pytest

from mlops_jobs.queue import MAX_INFRA_FAILURES, Queue, QueueError, migrate, repository_problem

SPEC = {"repository": "https://git.example/team/model.git", "commit": "0" * 40, "command": "python train.py"}
GPUS = ["GPU-aaaa", "GPU-bbbb"]


@pytest.fixture
def api(database):
    q = Queue(database["api"])
    yield q
    q.close()


@pytest.fixture
def runner(database):
    q = Queue(database["runner"])
    q.register("gpu-1", GPUS, cpus=8, memory_mb=16384)
    yield q
    q.close()


def submit(api, **spec):
    return api.submit("team-a", "alice", dict(SPEC, **spec))


def test_migrate_runs_again_without_effect(database):
    with psycopg.connect(database["owner"], autocommit=True) as owner:
        migrate(owner)
        assert owner.execute("SELECT array_agg(version) FROM schema_version").fetchone()[0] == [1, 2]


@pytest.mark.parametrize("spec,message", [
    ({"command": ""}, "command is required"),
    ({"gpus": -1}, "gpus must be an integer of at least 0"),
    ({"cpus": True}, "cpus must be an integer"),
    ({"timeout_s": 0}, "timeout_s must be a positive integer"),
    ({"inputs": ["/data/train"]}, "neither an s3:// prefix nor a runs:/ URI"),
    ({"env": {"CUDA_VISIBLE_DEVICES": "0"}}, "are set by the runner"),
    ({"env": {"N": 1}}, "env must map names to string values"),
    ({"queue": "fast"}, "unknown job fields: queue"),
])
def test_bad_requests_are_refused_naming_the_field(api, spec, message):
    with pytest.raises(QueueError, match=message):
        submit(api, **spec)


@pytest.mark.parametrize("url", ["https://alice:s3cret-tok@git.example/m.git", "https://s3cret-tok@git.example/m.git",
                                 "http://x-token:s3cret-tok@git.example:8080/m.git",
                                 "ssh://git:s3cret-tok@git.example/m.git"])
def test_a_repository_url_carrying_a_secret_is_refused_without_repeating_it(api, url):
    with pytest.raises(QueueError, match="repository: a URL with credentials in it is refused") as refused:
        submit(api, repository=url)
    assert "s3cret" not in str(refused.value)
    assert api.jobs("team-a") == []


@pytest.mark.parametrize("url", ["https://git.example/team/m.git", "ssh://git@git.example/team/m.git",
                                 "git@git.example:team/m.git", "file:///srv/git/model"])
def test_a_repository_url_without_a_secret_is_taken(url):
    assert repository_problem(url) is None


def test_submit_get_and_list_per_service(api):
    job = submit(api, gpus=1, env={"EPOCHS": "3"}, inputs=["s3://mlflow-team-a/data/"])
    assert job["status"] == "QUEUED" and job["env"] == {"EPOCHS": "3"} and job["attempt"] == 1
    assert api.get(job["id"], "team-a")["command"] == "python train.py"
    with pytest.raises(QueueError, match="no job %d in tracking service team-b" % job["id"]):
        api.get(job["id"], "team-b")
    other = api.submit("team-b", "bob", SPEC)
    assert [j["id"] for j in api.jobs("team-a")] == [job["id"]]
    assert [j["id"] for j in api.jobs("team-b", status="QUEUED")] == [other["id"]]


def test_a_two_gpu_job_gets_both_devices_and_a_one_gpu_job_waits(api, runner):
    two = submit(api, gpus=2)
    one = submit(api, gpus=1)
    cpu_only = submit(api, gpus=0)
    claimed = runner.claim("gpu-1")
    assert claimed["id"] == two["id"] and sorted(claimed["gpu_ids"]) == GPUS
    # The 1-GPU job does not fit while both devices are held; the CPU job behind it does.
    assert runner.claim("gpu-1")["id"] == cpu_only["id"]
    assert runner.claim("gpu-1") is None
    assert runner.start(two["id"], "gpu-1", "run-1")
    assert runner.finish(two["id"], "gpu-1", "SUCCEEDED", exit_code=0)
    claimed = runner.claim("gpu-1")
    assert claimed["id"] == one["id"] and len(claimed["gpu_ids"]) == 1 and claimed["gpu_ids"][0] in GPUS


def test_cpu_and_memory_limit_what_a_runner_claims(api, runner):
    runner.register("small", [], cpus=2, memory_mb=4096)
    big = submit(api, cpus=4)
    fits = submit(api, cpus=2, memory_mb=4096)
    assert runner.claim("small")["id"] == fits["id"]
    assert runner.claim("small") is None
    assert api.get(big["id"], "team-a")["status"] == "QUEUED"


def test_a_draining_runner_claims_nothing(api, runner):
    submit(api)
    runner.set_draining("gpu-1")
    assert runner.claim("gpu-1") is None
    runner.set_draining("gpu-1", False)
    assert runner.claim("gpu-1") is not None


def test_concurrent_runners_never_claim_the_same_job(database, api):
    ids = [submit(api)["id"] for _job in range(30)]
    taken = {}

    def work(name):
        q = Queue(database["runner"])
        q.register(name, [], cpus=1, memory_mb=1024)
        while True:
            job = q.claim(name)
            if job is None:
                break
            taken.setdefault(job["id"], []).append(name)
            assert q.finish(job["id"], name, "SUCCEEDED", exit_code=0)
        q.close()

    threads = [threading.Thread(target=work, args=("cpu-%d" % i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(taken) == ids
    assert all(len(names) == 1 for names in taken.values())


def test_a_lost_runner_leaves_running_jobs_lost_and_claimed_ones_queued(database, api):
    dying = Queue(database["runner"], lease_seconds=1)
    dying.register("gone", [], cpus=4, memory_mb=8192)
    running, claimed = submit(api), submit(api)
    assert dying.claim("gone")["id"] == running["id"] and dying.start(running["id"], "gone", "run-1")
    assert dying.claim("gone")["id"] == claimed["id"]
    time.sleep(1.5)
    reaper = Queue(database["runner"])
    assert sorted(reaper.reap()) == [(running["id"], "LOST"), (claimed["id"], "QUEUED")]
    lost = api.get(running["id"], "team-a")
    assert lost["status"] == "LOST" and "stopped renewing its lease while the job ran" in lost["reason"]
    again = api.get(claimed["id"], "team-a")
    assert again["status"] == "QUEUED" and again["infra_failures"] == 1 and again["runner"] is None
    # Too late: the reaped runner cannot settle the job any more.
    assert not dying.finish(running["id"], "gone", "SUCCEEDED", exit_code=0)
    assert api.get(running["id"], "team-a")["status"] == "LOST"


def test_renewing_keeps_the_lease(database, api):
    q = Queue(database["runner"], lease_seconds=1)
    q.register("alive", [], cpus=1, memory_mb=1024)
    job = submit(api)
    q.claim("alive")
    q.start(job["id"], "alive", "run-1")
    for _round in range(4):
        time.sleep(0.4)
        q.renew("alive")
        assert q.reap() == []
    assert api.get(job["id"], "team-a")["status"] == "RUNNING"


def test_a_non_zero_exit_is_retried_only_when_the_job_asks(api, runner):
    once = submit(api)
    twice = submit(api, retries=1)
    for job in (once, twice):
        assert runner.claim("gpu-1")["id"] == job["id"]
        runner.start(job["id"], "gpu-1", "run")
    assert runner.retry(once["id"], "gpu-1", "exit code 1", infrastructure=False) == "FAILED"
    assert runner.retry(twice["id"], "gpu-1", "exit code 1", infrastructure=False) == "QUEUED"
    again = runner.claim("gpu-1")
    assert again["id"] == twice["id"] and again["attempt"] == 2
    assert runner.retry(twice["id"], "gpu-1", "exit code 1", infrastructure=False) == "FAILED"


def test_infrastructure_failures_requeue_a_bounded_number_of_times(api, runner):
    job = submit(api)
    statuses = []
    for _attempt in range(MAX_INFRA_FAILURES):
        assert runner.claim("gpu-1")["id"] == job["id"]
        statuses.append(runner.retry(job["id"], "gpu-1", "could not stage inputs", infrastructure=True))
    assert statuses == ["QUEUED"] * (MAX_INFRA_FAILURES - 1) + ["FAILED"]
    assert api.get(job["id"], "team-a")["reason"] == "could not stage inputs"


def test_cancel_a_queued_job_at_once_and_a_running_one_through_its_runner(database, api, runner):
    queued = submit(api)
    cancelled = api.cancel(queued["id"], "team-a")
    assert cancelled["status"] == "CANCELLED" and cancelled["finished_at"] is not None

    running = submit(api)
    assert runner.claim("gpu-1")["id"] == running["id"]
    runner.start(running["id"], "gpu-1", "run-1")
    listener = Queue(database["runner"])
    listener.listen()
    asked = api.cancel(running["id"], "team-a")
    assert asked["status"] == "RUNNING" and asked["cancel_requested"]
    assert ("mlops_jobs_cancel", str(running["id"])) in listener.wait(5)
    assert runner.renew("gpu-1") == [running["id"]]
    assert runner.finish(running["id"], "gpu-1", "CANCELLED", exit_code=-15, reason="cancelled by alice")
    # Cancelling a finished job changes nothing.
    assert api.cancel(running["id"], "team-a")["status"] == "CANCELLED"
    listener.close()


def test_a_job_asked_to_cancel_before_it_started_does_not_start(api, runner):
    job = submit(api)
    runner.claim("gpu-1")
    api.cancel(job["id"], "team-a")
    assert not runner.start(job["id"], "gpu-1", "run-1")


def test_a_submission_wakes_a_listening_runner(database, api):
    listener = Queue(database["runner"])
    listener.listen()
    assert listener.wait(0.2) == []
    started = time.monotonic()
    job = submit(api)
    assert listener.wait(5) == [("mlops_jobs", str(job["id"]))]
    assert time.monotonic() - started < 5
    listener.close()


def test_copy_takes_the_request_with_overrides(api):
    source = submit(api, gpus=1, env={"LR": "0.1"})
    copy = api.copy(source["id"], "team-a", "bob", {"env": {"LR": "0.01"}})
    assert copy["copied_from"] == source["id"] and copy["gpus"] == 1 and copy["env"] == {"LR": "0.01"}
    assert copy["submitted_by"] == "bob" and copy["status"] == "QUEUED"


@pytest.mark.parametrize("statement", [
    "UPDATE jobs SET status = 'SUCCEEDED'",
    "DELETE FROM jobs",
    "INSERT INTO jobs (service, submitted_by, repository, commit, command, status) "
    "VALUES ('team-a', 'mallory', 'r', 'c', 'x', 'SUCCEEDED')",
    "UPDATE runners SET draining = true",
    "DROP TABLE jobs",
])
def test_the_api_role_cannot_set_states_or_change_the_schema(database, api, statement):
    submit(api)
    with psycopg.connect(database["api"], autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


@pytest.mark.parametrize("statement", ["DELETE FROM jobs", "INSERT INTO jobs (service, submitted_by, repository, "
                                       "commit, command) VALUES ('team-a', 'r', 'r', 'c', 'x')",
                                       "UPDATE jobs SET command = 'rm -rf /'", "DROP TABLE runners"])
def test_the_runner_role_cannot_submit_rewrite_or_delete_jobs(database, runner, statement):
    with psycopg.connect(database["runner"], autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


def test_migrate_command_reports_a_change_only_when_there_is_one(server, tmp_path, capsys):
    from mlops_jobs import migrate as migrate_command  # pylint: disable=import-outside-toplevel
    from servers import queue_database  # pylint: disable=import-outside-toplevel

    conninfo = queue_database(server, migrated=False)
    prefix = conninfo["owner"].rsplit("user=", 1)[1][:-len("_owner")]
    settings = tmp_path / "migrate.json"
    settings.write_text(json.dumps({"database": conninfo["owner"], "api_role": prefix + "_api",
                                    "runner_role": prefix + "_runner"}))
    outputs = []
    for _round in range(2):
        assert migrate_command.main(["--settings", str(settings)]) == 0
        outputs.append(json.loads(capsys.readouterr().out))
    assert outputs == [{"changed": True}, {"changed": False}]
    # The grants are part of what it compares: one taken away is a change, put back.
    with psycopg.connect(conninfo["owner"], autocommit=True) as owner:
        owner.execute("REVOKE UPDATE (cancel_requested) ON jobs FROM %s_api" % prefix)
    assert migrate_command.main(["--settings", str(settings)]) == 0
    assert json.loads(capsys.readouterr().out) == {"changed": True}


def test_migrate_command_fails_with_the_reason(tmp_path, capsys):
    from mlops_jobs import migrate as migrate_command  # pylint: disable=import-outside-toplevel

    settings = tmp_path / "migrate.json"
    settings.write_text(json.dumps({"database": "host=/nonexistent dbname=x user=y password=secret-word"}))
    assert migrate_command.main(["--settings", str(settings)]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["failed"] and "migrating the job queue failed" in result["msg"]
    assert "secret-word" not in result["msg"]
