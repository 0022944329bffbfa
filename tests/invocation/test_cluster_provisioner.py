"""``ClusterProvisioner``'s share of each config, round by round, on real stores and the
fake sandbox manager, with the cluster's slots in memory (``ProvisionedSlots`` itself
is tested against PostgreSQL in tests/cluster/test_provisioned_slots.py).

Covers: a worker's share is ceil(n / workers); a server keeps none while a worker is
connected and all once none is; status counts the whole cluster's initialised
environments; a node that fails to start one gives its slots back for the others; a node
that loses the database lets its provisioned environments go.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nimbus.clock import now_ms
from nimbus.errors import ClusterUnavailable
from nimbus.invocation.cluster_provisioner import ClusterProvisioner
from nimbus.invocation.pool import PoolKey
from nimbus.invocation.provisioner import ProvisionedStatus
from nimbus.models import ProvisionedConfig
from nimbus.store.provisioned_slots import Members
from tests.fakes import (
    NOW,
    FakeSandboxManager,
    Invocations,
    create_function,
    init_error,
    make_invoker,
    open_stores,
    publish,
)


class FakeSlots:
    """The cluster's slots as one node sees them: its own, and what others hold."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.counts = {"server": 0, "worker": 0}  # live nodes per role, this one included
        self.counts[role] = 1
        self.rank = 0  # among the nodes of its role
        self.held: dict[str, set[int]] = {}
        self.others: dict[str, set[int]] = {}  # scope -> slots other nodes hold
        self.down = False

    def _check(self) -> None:
        if self.down:
            self.held.clear()  # the session ends with its locks
            raise ClusterUnavailable("the database is unreachable")

    async def members(self) -> Members:
        self._check()
        return Members(dict(self.counts), self.rank)

    async def hold(self, scope: str, limit: int, count: int) -> set[int]:
        self._check()
        mine = self.held.setdefault(scope, set())
        for slot in sorted(mine)[count:] + [s for s in mine if s >= limit]:
            mine.discard(slot)
        free = [s for s in range(limit) if s not in mine and s not in self.others.get(scope, ())]
        while len(mine) < count and free:
            mine.add(free.pop(0))
        return set(mine)

    async def count(self, scope: str) -> int:
        self._check()
        return len(self.held.get(scope, ())) + len(self.others.get(scope, ()))

    def holding(self, scope: str) -> set[int]:
        return set(self.held.get(scope, ()))

    async def close(self) -> None:
        self.held.clear()


class Node:
    def __init__(self, invocations: Invocations, role: str) -> None:
        self.inv = invocations
        self.stores = invocations.stores
        self.manager = invocations.manager
        self.pool = invocations.pool
        self.slots = FakeSlots(role)
        self.provisioner = ClusterProvisioner(self.stores.provisioned, invocations.invoker,
                                              self.slots)  # type: ignore[arg-type]
        self.v1 = PoolKey("fn", "1", self.stores.functions.get_version("fn", "1").deployment)

    def put(self, requested: int) -> ProvisionedConfig:
        config = ProvisionedConfig("fn", "1", requested, NOW)
        self.stores.provisioned.put(config, 1000, 100)
        return config

    async def round(self) -> None:
        """One reconciliation round, the starts it asked for, and the round their end
        wakes (which counts them initialised)."""
        await self.provisioner._rebalance()
        while self.provisioner._tasks:
            await asyncio.gather(*list(self.provisioner._tasks))
            await asyncio.sleep(0)
        await self.provisioner._rebalance()

    def kept(self) -> int:
        return self.pool.provisioned(self.v1)[0]


@pytest.fixture
async def make_node(tmp_path: Path) -> AsyncIterator:  # type: ignore[type-arg]
    made: list[tuple[Node, Invocations]] = []

    def make(role: str) -> Node:
        stores = open_stores(tmp_path / f"data-{len(made)}")
        create_function(stores.functions, "fn")
        publish(stores.functions, "fn")
        invocations = make_invoker(stores, FakeSandboxManager())
        node = Node(invocations, role)
        made.append((node, invocations))
        return node

    yield make
    for node, invocations in made:
        await node.provisioner.close()
        await invocations.close()
        invocations.stores.close()


async def test_a_worker_keeps_its_share_and_status_is_the_clusters(make_node) -> None:  # type: ignore[no-untyped-def]
    node = make_node("worker")
    counts = node.slots.counts
    counts["worker"] = 2
    config = node.put(3)
    await node.round()
    assert node.kept() == 2  # 3 // 2, and one more as the first of the two
    node.slots.rank = 1
    await node.round()
    assert node.kept() == 1  # the second of two: the shares add up to 3
    node.slots.rank = 0
    await node.round()
    assert await node.provisioner.status(config) == ProvisionedStatus(3, 2, "IN_PROGRESS", None)
    node.slots.others["ready:fn:1"] = {2}  # the other worker's one, initialised
    assert await node.provisioner.status(config) == ProvisionedStatus(3, 3, "READY", None)
    counts["worker"] = 1  # the other worker is gone
    node.slots.others.clear()
    await node.round()
    assert node.kept() == 3


async def test_a_server_keeps_none_while_a_worker_is_connected(make_node) -> None:  # type: ignore[no-untyped-def]
    node = make_node("server")
    counts = node.slots.counts
    counts.update(server=2, worker=1)
    node.put(3)
    await node.round()
    assert node.kept() == 0 and node.manager.cold_starts == 0
    counts["worker"] = 0
    await node.round()
    assert node.kept() == 2  # the first of two servers: 3 // 2 + 1
    counts["worker"] = 1
    await node.round()
    assert node.kept() == 0 and node.slots.holding("config:fn:1") == set()


async def test_a_node_that_cannot_start_them_gives_its_slots_back(make_node) -> None:  # type: ignore[no-untyped-def]
    node = make_node("worker")
    node.manager.init_error = init_error(message="boom")
    config = node.put(2)
    await node.round()
    assert node.kept() == 0
    await node.round()  # the failure seen: the slots go back, for another node to try
    assert node.slots.holding("config:fn:1") == set()
    status = await node.provisioner.status(config)  # noted for every server to read
    assert (status.allocated, status.status) == (0, "FAILED")
    assert status.reason == "InitError: Runtime.ImportModuleError: boom"


async def test_a_failure_before_the_pool_is_noted_too(make_node) -> None:  # type: ignore[no-untyped-def]
    node = make_node("worker")
    config = node.put(1)

    async def unreachable(version):  # type: ignore[no-untyped-def]
        raise OSError("code share unreachable")

    node.inv.invoker.ensure_code = unreachable
    await node.round()
    await node.round()
    assert node.kept() == 0 and node.slots.holding("config:fn:1") == set()
    status = await node.provisioner.status(config)
    assert (status.status, status.reason) == ("FAILED", "OSError: code share unreachable")
    # A new put starts afresh.
    config = node.put(1)
    assert (await node.provisioner.status(config)).status == "IN_PROGRESS"


async def test_a_node_cut_off_from_the_database_lets_its_environments_go(make_node) -> None:  # type: ignore[no-untyped-def]
    node = make_node("worker")
    node.put(2)
    await node.round()
    assert node.kept() == 2
    node.slots.down = True
    task = asyncio.ensure_future(node.provisioner._run())
    try:
        for _ in range(100):
            if node.kept() == 0:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert node.kept() == 0


async def test_deleting_a_config_gives_its_slots_back(make_node) -> None:  # type: ignore[no-untyped-def]
    node = make_node("worker")
    node.put(2)
    await node.round()
    node.stores.provisioned.delete("fn", "1")
    await node.round()
    assert node.kept() == 0 and node.slots.holding("config:fn:1") == set()
    assert node.slots.holding("ready:fn:1") == set()



async def test_the_others_take_over_what_a_failing_node_gave_back(make_node) -> None:  # type: ignore[no-untyped-def]
    node = make_node("worker")
    node.slots.counts["worker"] = 2
    node.slots.rank = 1  # its share of 3: one
    config = node.put(3)
    await node.round()
    assert node.kept() == 1
    # The other worker cannot start its two: it notes so and gives them back.
    node.stores.provisioned.record_failure(config, "InitError: no memory", now_ms())
    await node.round()
    assert node.kept() == 3  # this one takes them (none is held elsewhere)
    status = await node.provisioner.status(config)
    assert (status.allocated, status.status) == (3, "READY")


async def test_a_failure_noted_for_a_replaced_config_is_not_its_own(make_node) -> None:  # type: ignore[no-untyped-def]
    node = make_node("worker")
    old = node.put(2)
    replaced = ProvisionedConfig("fn", "1", 2, "2026-12-05T00:00:00.000+0000")
    node.stores.provisioned.put(replaced, 1000, 100)
    node.stores.provisioned.record_failure(old, "from the old config", now_ms())
    assert node.stores.provisioned.failure("fn", "1") is None
