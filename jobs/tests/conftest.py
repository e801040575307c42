"""Fixtures: a real PostgreSQL for the whole session (servers.postgres) and a fresh
queue database per test."""

import pytest

import servers


@pytest.fixture(scope="session")
def server():
    try:
        with servers.postgres() as conninfo:
            yield conninfo
    except servers.ServerError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def database(server):
    """A fresh queue database with its two roles; the conninfo of each (owner, api, runner)."""
    return servers.queue_database(server)
