"""``ProvisionedSlots`` on the machine's PostgreSQL: live nodes counted per role and per
installation, slots never held twice in a cluster, given back on request, on a lowered
limit and when a node's session ends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from nimbus.store.cluster_slots import lock_key
from nimbus.store.database import Database
from nimbus.store.provisioned_slots import ProvisionedSlots
from tests.conftest import postgres_schema_url

pytestmark = pytest.mark.postgres


@pytest.fixture
def other_db(postgres_admin: sa.Engine) -> Iterator[Database]:
    """A second installation in the same database (another schema)."""
    for url in postgres_schema_url(postgres_admin):
        yield Database(url)


async def test_nodes_are_counted_per_role_and_installation(
    db: Database, other_db: Database
) -> None:
    nodes = [ProvisionedSlots(db.url, role) for role in ("server", "worker", "worker")]
    elsewhere = ProvisionedSlots(other_db.url, "worker")
    try:
        for node in nodes:
            await node.count("warm-up")  # connects: counted from now on
        assert (await elsewhere.members()).counts == {"server": 0, "worker": 1}
        assert (await nodes[0].members()).counts == {"server": 1, "worker": 2}
        # The two workers rank 0 and 1 (by their lock ids), the server 0 among servers.
        assert sorted([(await nodes[1].members()).rank, (await nodes[2].members()).rank]) == [0, 1]
        assert (await nodes[0].members()).rank == 0
        await nodes[2].close()
        assert (await nodes[0].members()).counts == {"server": 1, "worker": 1}
        assert (await nodes[1].members()).rank == 0
    finally:
        for node in [*nodes, elsewhere]:
            await node.close()


async def test_slots_are_held_once_in_the_cluster(db: Database) -> None:
    a, b = ProvisionedSlots(db.url, "worker"), ProvisionedSlots(db.url, "worker")
    try:
        assert len(await a.hold("config:f:1", 3, 2)) == 2
        assert len(await a.hold("config:f:1", 3, 2)) == 2  # held already: none taken twice
        assert len(await b.hold("config:f:1", 3, 3)) == 1  # one left
        assert await a.count("config:f:1") == 3
        assert await a.hold("config:f:1", 3, 1) == a.holding("config:f:1")
        assert len(a.holding("config:f:1")) == 1
        assert len(await b.hold("config:f:1", 3, 3)) == 2  # the one a gave back
        # A lowered limit: slots beyond it go, even below the count asked.
        kept = await b.hold("config:f:1", 1, 1)
        assert kept <= {0} and await b.count("config:f:1") == len(kept) + 1
        await a.close()  # a's session ends: its slot is free
        assert await b.hold("config:f:1", 3, 3) == {0, 1, 2}
        assert await b.count("config:g:1") == 0
        assert await b.hold("config:f:1", 0, 0) == set()
        assert await b.count("config:f:1") == 0
    finally:
        await a.close()
        await b.close()


def test_a_role_must_be_known(db: Database) -> None:
    with pytest.raises(ValueError, match="role"):
        ProvisionedSlots(db.url, "front")


async def test_a_scope_at_the_top_of_a_32_bit_half_is_counted(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The low 32 bits 0xFFF00000: the range's end is 2^32, past an oid.
    top = (12345 << 32) | 0xFFF00000
    node = ProvisionedSlots(db.url, "worker")
    monkeypatch.setattr(node, "_key", lambda scope: top if scope == "config:f:1" else
                        lock_key("other", scope))
    try:
        assert len(await node.hold("config:f:1", 5, 3)) == 3
        assert await node.count("config:f:1") == 3
        assert (await node.members()).counts["worker"] == 1
    finally:
        await node.close()
