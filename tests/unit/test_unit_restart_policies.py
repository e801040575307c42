"""Every systemd unit and drop-in the roles write carries the platform's restart policy
(docs/resilience.md): restarted one second after it dies, never given up on. The
policy is written in each template; this is where it is checked once for all of them."""

import configparser
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
# The long-running services' units and the drop-ins for the distribution's, with the
# Restart= each takes: always for the platform's own servers, on-failure where a stop by
# the operator (nginx -s stop, pg_ctlcluster, a drained runner) must stay a stop.
UNITS = {
    "roles/mlflow/templates/mlflow@.service.j2": "always",
    "roles/minio/templates/minio.service.j2": "always",
    "roles/jobs/templates/mlops-jobs-api.service.j2": "always",
    "roles/watchdog/templates/mlops-watchdog.service.j2": "always",
    "roles/runner/templates/mlops-runner.service.j2": "on-failure",
    "roles/postgresql/templates/postgresql-unit.conf.j2": "on-failure",
    "roles/gateway/templates/nginx-unit.conf.j2": "on-failure",
}


def settings(path):
    """(section, key) -> value of a unit template, Jinja lines left out."""
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str
    lines = [line for line in (REPO / path).read_text().splitlines() if not line.lstrip().startswith("{%")]
    parser.read_string("\n".join(lines))
    return {(section, key): value for section in parser.sections() for key, value in parser[section].items()}


def test_every_long_running_unit_of_the_roles_is_listed():
    texts = {str(p.relative_to(REPO)): p.read_text() for p in REPO.glob("roles/*/templates/*.j2")}
    written = {path for path, text in texts.items() if "Type=oneshot" not in text and "[Service]" in text}
    assert written == set(UNITS)


@pytest.mark.parametrize("path", sorted(UNITS))
def test_the_unit_restarts_one_second_after_it_dies_and_never_gives_up(path):
    found = settings(path)
    assert found[("Service", "Restart")] == UNITS[path]
    assert found[("Service", "RestartSec")] == "1"
    assert found[("Unit", "StartLimitIntervalSec")] == "0"
