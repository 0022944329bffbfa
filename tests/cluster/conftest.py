"""Fixtures the cluster tests share: a migrated PostgreSQL schema of the test's own,
test hosts (network namespaces, tests/cluster/hosts.py) with a webhook sink on their
gateway, and a server with worker nodes (``cluster``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from nimbus.store.database import Database
from tests.cluster.hosts import HostSink, Network, network
from tests.cluster.servers import Cluster, front_end, serving, shared_installation
from tests.conftest import migrated_postgres


@pytest.fixture
def db(postgres_admin: sa.Engine) -> Iterator[Database]:
    yield from migrated_postgres(postgres_admin)


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


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """One server and two worker nodes (``workers(n)`` marks ask for ``n``)."""
    marked = request.node.get_closest_marker("workers")
    n = marked.args[0] if marked else 2
    extra = {"NIMBUS_CLUSTER": "1", "NIMBUS_ASYNC_WORKERS": "0"}
    with shared_installation(tmp_path, extra=extra) as env:
        server = front_end(tmp_path, "server", env)
        workers = [front_end(tmp_path, f"w{i}", env) for i in range(1, n + 1)]
        for worker in workers:
            worker.command = "worker"
        with serving([server, *workers]):
            found = Cluster(server, workers)
            found.until(lambda nodes: len(nodes) == n, "every worker announced")
            yield found
