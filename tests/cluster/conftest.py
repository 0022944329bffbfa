"""Fixtures the cluster tests share: a migrated PostgreSQL schema of the test's own, and
test hosts (network namespaces, tests/cluster/hosts.py) with a webhook sink on their
gateway."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from nimbus.store.database import Database
from tests.cluster.hosts import HostSink, Network, network
from tests.conftest import postgres_schema_url


@pytest.fixture
def db(postgres_admin: sa.Engine) -> Iterator[Database]:
    for url in postgres_schema_url(postgres_admin):
        database = Database(url)
        database.migrate()
        yield database
        database.dispose()


@pytest.fixture
def net(request: pytest.FixtureRequest) -> Iterator[Network]:
    """Test hosts: those a ``hosts(*names)`` mark names, else ``a`` and ``b``."""
    marked = request.node.get_closest_marker("hosts")
    with network(list(marked.args) if marked else ["a", "b"]) as found:
        yield found


@pytest.fixture
def host_sink(net: Network) -> Iterator[HostSink]:
    """A sink on the hosts' gateway (tests/conftest.py's ``sink`` is on loopback)."""
    found = net.sink()
    yield found
    found.close()
