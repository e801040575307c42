"""The CLI: its parsing, branch resolution against a real git repository, and a
round trip through the real API and queue."""

import io
import json
import subprocess

import pytest

from mlops_jobs import cli
from mlops_jobs.api import create_app
from test_api import serve


@pytest.mark.parametrize("text,mb", [("512M", 512), ("16G", 16384), ("2048", 2048), ("1T", 1048576), ("8GiB", 8192)])
def test_memory_sizes(text, mb):
    assert cli.memory_mb(text) == mb


@pytest.mark.parametrize("text,secs", [("90", 90), ("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400)])
def test_durations(text, secs):
    assert cli.seconds(text) == secs


@pytest.mark.parametrize("call,message", [
    (lambda: cli.memory_mb("lots"), "--memory takes a size"),
    (lambda: cli.seconds("1w"), "--timeout takes a duration"),
    (lambda: cli.environment(["EPOCHS"]), "--env takes NAME=VALUE"),
])
def test_bad_values_name_the_option(call, message):
    with pytest.raises(cli.UsageError, match=message):
        call()


@pytest.fixture
def repository(tmp_path):
    repo = tmp_path / "model"
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    (repo / "train.py").write_text("print('training')\n")
    subprocess.run(git + ["add", "train.py"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "first"], check=True)
    head = subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    return "file://%s" % repo, head


def test_a_branch_resolves_to_its_commit_and_a_missing_one_is_refused(repository):
    url, head = repository
    assert cli.resolve_commit(url, "main") == head
    with pytest.raises(cli.UsageError, match="cannot resolve branch nope"):
        cli.resolve_commit(url, "nope")


def behind_gateway(app, service):
    """The one thing the gateway adds that the API relies on: the service header."""
    async def forwarded(scope, receive, send):
        if scope["type"] == "http":
            scope = dict(scope, headers=[h for h in scope["headers"] if h[0] != b"x-mlops-service"]
                         + [(b"x-mlops-service", service.encode())])
        await app(scope, receive, send)
    return forwarded


def run(argv, url):
    out = io.StringIO()
    environ = {"MLFLOW_TRACKING_URI": url, "MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": "pw"}
    return cli.main(argv, environ=environ, out=out), out.getvalue()


def test_submit_list_show_copy_cancel_through_the_api(database, repository):
    url, head = repository
    with serve(behind_gateway(create_app(database["api"], ["team-a"]), "team-a")) as base:
        rc, out = run(["submit", "--repo", url, "--branch", "main", "--gpus", "1", "--memory", "2G", "--timeout",
                       "30m", "--env", "EPOCHS=3", "--input", "s3://mlflow-team-a/data/", "--", "python", "train.py"],
                      base)
        assert rc == 0, out
        job = json.loads(out)
        assert (job["commit"], job["gpus"], job["memory_mb"], job["timeout_s"]) == (head, 1, 2048, 1800)
        assert job["command"] == "python train.py" and job["env"] == {"EPOCHS": "3"}
        assert job["submitted_by"] == "alice"

        rc, out = run(["copy", str(job["id"]), "--gpus", "0"], base)
        assert rc == 0 and json.loads(out)["copied_from"] == job["id"] and json.loads(out)["gpus"] == 0
        rc, out = run(["list"], base)
        assert [j["id"] for j in json.loads(out)["jobs"]][1] == job["id"]
        rc, out = run(["cancel", str(job["id"])], base)
        assert rc == 0 and json.loads(out)["status"] == "CANCELLED"
        rc, out = run(["show", "999999"], base)
        assert rc == 2


def test_a_repository_url_with_a_token_is_refused_before_anything_is_sent(capsys):
    # Port 9 of loopback answers nothing: the refusal comes before any request or ls-remote.
    assert cli.main(["submit", "--repo", "https://deploy:s3cret-tok@git.example/m.git", "--branch", "main", "--",
                     "true"], environ={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}) == 2
    err = capsys.readouterr().err
    assert "--repo: a URL with credentials in it is refused" in err and "s3cret" not in err


def test_submit_without_a_command_or_with_both_commit_and_branch_fails(capsys):
    assert cli.main(["submit", "--repo", "file:///x", "--commit", "a" * 40],
                    environ={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}) == 2
    assert "give the command to run after --" in capsys.readouterr().err
    assert cli.main(["submit", "--repo", "file:///x", "--commit", "a" * 40, "--branch", "main", "--", "true"],
                    environ={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}) == 2
    assert "exactly one of --commit and --branch" in capsys.readouterr().err


def test_the_command_keeps_each_word_as_typed_and_one_word_is_a_shell_line():
    assert cli.shell_command(["python", "train.py", "--name", "two words"]) == "python train.py --name 'two words'"
    assert cli.shell_command(["sh", "-c", "echo a; sleep 1"]) == "sh -c 'echo a; sleep 1'"
    assert cli.shell_command(["python prep.py && python train.py"]) == "python prep.py && python train.py"
