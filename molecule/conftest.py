"""The fixtures of the scenarios' verify tests, and the order the tests run in.

Order: a test that leaves the hosts in a state that tests after it would notice carries a
marker of PHASES, and so does one that would leave such a state when it fails halfway
(injects_drift: drift put on the hosts by hand, then converged away). The unmarked tests
run first, then the marked ones phase by phase, each group in the order pytest collected
it (file name, then place in the file): renaming a file cannot move a test that changes
the platform before one that expects the platform as converge left it. The unmarked tests
only read the platform or put back what they change."""

import json
import subprocess
import sys
import tempfile

import pytest

from mlops_testing import client_env, run_tutorial, tracking_env

# (marker, what a test that carries it does), in the order the phases run.
PHASES = (
    ("injects_drift", "changes the platform by hand and converges it back (the reconcile playbook); runs after "
                      "the unmarked tests, which a failure halfway would disturb, and before the phases below, "
                      "since it ends asserting that the hosts as the tests left them report no change"),
    ("replaces_host", "replaces a host by a new one and restores the platform there from a backup; "
                      "runs after the unmarked tests, which it needs to have logged their runs"),
    ("changes_platform", "leaves the platform changed (a service deleted, another binary, a newer package)"),
    ("rebuilds_host", "redeploys a host as another platform, with other credentials: the scenario's last tests"),
)


def pytest_configure(config):
    for name, description in PHASES:
        config.addinivalue_line("markers", "%s: %s" % (name, description))


# What the fault tests measured (how long a service took to serve again, how many
# requests failed meanwhile), one line each, printed at the end of the run.
FAULT_FIGURES = []


@pytest.fixture(scope="session")
def fault_figures():
    """The list a test appends its measured fault figures to (lines of text)."""
    return FAULT_FIGURES


def pytest_terminal_summary(terminalreporter):
    if FAULT_FIGURES:
        terminalreporter.section("fault figures")
        for line in FAULT_FIGURES:
            terminalreporter.write_line(line)


def phase(item):
    """0 for an unmarked test, else the place of its marker in PHASES (from 1)."""
    marked = [place for place, (name, _description) in enumerate(PHASES, 1) if item.get_closest_marker(name)]
    if len(marked) > 1:
        names = ", ".join(name for name, _description in PHASES)
        raise pytest.UsageError("%s: one marker of %s at most" % (item.nodeid, names))
    return marked[0] if marked else 0


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    items[:] = sorted(items, key=phase)  # stable: collection order within a phase


@pytest.fixture(scope="session")
def tutorial_run():
    """The seed tutorial through the gateway as alice of team-a: its JSON line (run_id,
    status, metrics, artifact_uri, predictions)."""
    # Not one server error on the way: the client's retries of a 500 would otherwise hide
    # it (and take minutes; see test_a_missing_artifact_answers_404_at_once).
    done = run_tutorial(client_env("team-a", "alice", MLFLOW_HTTP_REQUEST_MAX_RETRIES="0"), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# Logs a 2 GiB file (1 MiB blocks, not all zeros) as an artifact and downloads it back:
# prints True when size and sha256 match.
BIG_ARTIFACT = r"""
import hashlib, os, sys, tempfile, mlflow
size = 2 * 1024 ** 3
with tempfile.TemporaryDirectory(dir=os.environ.get("MLOPS_BIG_TMP")) as tmp:
    src = os.path.join(tmp, "big.bin")
    block = hashlib.sha256(b"mlops").digest() * 32768  # 1 MiB, not all zeros
    digest = hashlib.sha256()
    with open(src, "wb") as f:
        for _ in range(size // len(block)):
            f.write(block); digest.update(block)
    with mlflow.start_run() as run:
        mlflow.log_artifact(src)
    back = mlflow.artifacts.download_artifacts("runs:/%s/big.bin" % run.info.run_id, dst_path=os.path.join(tmp, "down"))
    check = hashlib.sha256()
    with open(back, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            check.update(chunk)
    print(os.path.getsize(back) == size and check.hexdigest() == digest.hexdigest())
"""


@pytest.fixture(scope="session")
def big_artifact():
    """BIG_ARTIFACT through the gateway as ci-bot of team-a: its CompletedProcess."""
    with tempfile.TemporaryDirectory() as tmp:
        env = client_env("team-a", "ci-bot", MLOPS_BIG_TMP=tmp)
        return subprocess.run([sys.executable, "-c", BIG_ARTIFACT], env=env, capture_output=True, text=True,
                              timeout=1200, check=False)


@pytest.fixture
def mlflow_env(monkeypatch):
    """MLflow's client in this process, and the subprocesses it starts, reach team-a
    through the gateway as alice; returns those variables."""
    env = tracking_env("team-a", "alice")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env
