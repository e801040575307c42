"""A PostgreSQL minor update of the converged server (postgresql_update_packages).

The test images install from the release suite only; the distribution's security suite
(which the build machine's apt uses too) usually holds a newer minor release. The test
adds it to pg-server and pg-standby and runs the role again with the update on: both come back
on the new release with every row, after a dump taken before the update, and a second run
must change nothing. When the security suite has no newer release that day, the test says
so and skips rather than passing on nothing. The server runs the newer release after it
(changes_platform: it runs after the scenario's unmarked tests, see molecule/conftest.py)."""

import pathlib
import re

import pytest

from mlops_testing import DEBIAN_SUITE as SUITE
from mlops_testing import PG_VERSION, as_postgres, host, recap_changed, run_playbook

pytestmark = pytest.mark.changes_platform
HERE = pathlib.Path(__file__).parent
server = host("pg-server")
standby = host("pg-standby")


def security_mirror():
    """The security archive this machine's apt uses (the test images use its main mirror)."""
    for path in pathlib.Path("/etc/apt").glob("sources.list*"):
        for source in [path] if path.is_file() else sorted(path.iterdir()):
            # Only what apt uses: "URIs:" and "deb" lines, not comments.
            found = re.search(r"^(?:URIs:|deb)\s+(https?://\S+/debian-security)\b", source.read_text(errors="replace"),
                              re.M)
            if found:
                return found.group(1)
    return "http://deb.debian.org/debian-security"


def converge(**extra):
    return run_playbook(HERE.parent / "converge.yml", extra, timeout=900)


def package_version(node=server):
    return node.check_output("dpkg-query --show --showformat='${Version}' postgresql-%s", PG_VERSION)


@pytest.fixture(scope="module")
def candidate():
    # On the standby too: a standby on an older minor release than its primary can hold
    # what it cannot restore (seen here: a column option of a newer 15.x that an older
    # one's pg_restore refused, which failed the verified backups after a failover).
    for node in (server, standby):
        node.check_output("echo %s > /etc/apt/sources.list.d/security.list",
                          "deb %s %s-security main" % (security_mirror(), SUITE))
        node.check_output("apt-get update -qq")
    policy = server.check_output("apt-cache policy postgresql-%s", PG_VERSION)
    installed = re.search(r"Installed: (\S+)", policy).group(1)
    newest = re.search(r"Candidate: (\S+)", policy).group(1)
    if newest == installed:
        pytest.skip("%s-security offers no newer postgresql-%s than %s today" % (SUITE, PG_VERSION, installed))
    return {"installed": installed, "newest": newest}


def test_hosts_on_different_releases_are_refused_before_any_change(candidate):
    """pg-standby updated by hand, pg-server not: a run without postgresql_update_packages
    names both releases and changes nothing (the update below brings both to one)."""
    standby.check_output("DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --only-upgrade "
                         "postgresql-%s postgresql-client-%s", PG_VERSION, PG_VERSION)
    assert package_version(standby) == candidate["newest"]
    rc, output = converge()
    assert rc != 0, output[-3000:]
    assert "run different releases of postgresql-%s" % PG_VERSION in output, output[-3000:]
    assert candidate["installed"] in output and candidate["newest"] in output, output[-3000:]
    changed = recap_changed(output)
    assert changed and set(changed) == {0}, output[-3000:]


def test_a_minor_update_keeps_every_row_after_a_dump(candidate):
    as_postgres(server, "create table if not exists before_update (note text)", "tracking_alpha")
    as_postgres(server, "insert into before_update values ('written on %s')" % candidate["installed"], "tracking_alpha")
    assert candidate["installed"] in as_postgres(server, "show server_version")

    rc, output = converge(postgresql_update_packages=True)
    assert rc == 0, output[-3000:]
    assert package_version() == candidate["newest"] and package_version(standby) == candidate["newest"]
    assert candidate["newest"] in as_postgres(server, "show server_version")
    note = as_postgres(server, "select note from before_update", "tracking_alpha")
    assert note == "written on %s" % candidate["installed"]
    dumps = server.check_output("ls /var/backups/postgresql | grep '^before-update-' || true").split()
    assert len(dumps) == 1, dumps
    dump = server.file("/var/backups/postgresql/" + dumps[0])
    assert (dump.user, dump.mode) == ("postgres", 0o600)
    assert "written on %s" % candidate["installed"] in dump.content_string

    rc, output = converge(postgresql_update_packages=True)
    assert rc == 0, output[-3000:]
    assert recap_changed(output) and not any(recap_changed(output)), output[-3000:]
