"""Provisioned concurrency counted across the nodes of a cluster, in PostgreSQL.

A config asking for ``n`` environments is ``n`` slots; a node keeps one initialised
environment per slot it holds, each a session-level advisory lock (the config's
``lock_key`` plus the slot number) on this node's own connection (as
``cluster_slots.py`` does for executions), so the cluster never keeps more than ``n``
and a node that dies or loses its connection gives its slots back by itself
(PostgreSQL ends its session), for the others to take. Once an environment of a held
slot is initialised, the node also holds a slot of the config's "ready" scope: the
number of those locks in the cluster is what GetProvisionedConcurrencyConfig reports
as allocated, whichever server is asked.

Each node also holds one lock of its role's "members" key for as long as it is
connected, so every node can count the live servers and workers (``members``) and take
its share of each config (``nimbus.invocation.cluster_provisioner``).

Everything here runs on one connection, one statement at a time (an asyncio lock):
it is a background reconciliation, a few statements every couple of seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass

import psycopg
from psycopg.conninfo import make_conninfo

from nimbus.errors import ClusterUnavailable
from nimbus.store.cluster_slots import MAX_SLOTS, AdvisorySession, lock_key
from nimbus.store.database import PG_TIMEOUTS, libpq_url

log = logging.getLogger("nimbus.store.provisioned_slots")

ROLES = ("server", "worker")
_TIMEOUT_S = 10.0
# Granted advisory locks of this database among a scope's slots (below ``before``):
# pg_locks shows a bigint lock (objsubid 1) as its high and low 32 bits, classid and
# objid; a scope's slots share the high half (lock_key leaves the low 20 bits to the slot
# number). Compared as bigints: the range's end may be 2^32, beyond an oid.
_COUNT = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
    "AND objsubid = 1 AND classid::bigint = %(high)s "
    "AND objid::bigint >= %(low)s AND objid::bigint < %(end)s "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
# Up to ``want`` free slots of 0..n-1, tried from a random point, in one statement (as
# cluster_slots._TAKE, whose comment says why the CASE).
_TAKE = (
    "SELECT slot FROM (SELECT ((s + %(start)s) %% %(n)s)::int AS slot "
    "FROM generate_series(0, %(n)s - 1) AS s) AS candidates "
    "WHERE CASE WHEN slot = ANY(%(held)s) THEN false "
    "ELSE pg_try_advisory_lock(%(key)s::bigint + slot) END LIMIT %(want)s"
)
_GIVE = "SELECT count(*) FROM unnest(%s::bigint[]) AS u(k) WHERE pg_advisory_unlock(k)"


def _range(key: int, before: int = MAX_SLOTS) -> dict[str, int]:
    low = key & 0xFFFFFFFF
    return {"high": key >> 32, "low": low, "end": low + before}


@dataclass(frozen=True)
class Members:
    """Live nodes per role, and where this one ranks among those of its role (0: first,
    by their lock ids), so that shares can add up exactly."""

    counts: dict[str, int]
    rank: int


class ProvisionedSlots(AdvisorySession):
    """This node's connection to the cluster's provisioned slots (see the module
    docstring); used from one event loop."""

    def __init__(self, url: str, role: str) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {role!r}")
        self.role = role
        self._conninfo = make_conninfo(libpq_url(url), **PG_TIMEOUTS)
        self._conn: psycopg.AsyncConnection | None = None
        self._namespace = ""
        self._held: dict[str, set[int]] = {}  # scope -> slots this session holds
        self._member = 0  # this session's slot of its role's members scope
        self._lock = asyncio.Lock()

    async def members(self) -> Members:
        """Live nodes per role (those connected to the database now), this one included."""
        async with self._session() as conn:
            counts = {}
            for role in ROLES:
                cur = await conn.execute(_COUNT, _range(self._key(f"members:{role}")))
                counts[role] = int((await cur.fetchone() or (0,))[0])
            cur = await conn.execute(
                _COUNT, _range(self._key(f"members:{self.role}"), self._member))
            return Members(counts, int((await cur.fetchone() or (0,))[0]))

    async def hold(self, scope: str, limit: int, count: int) -> set[int]:
        """Hold ``count`` of ``scope``'s slots ``0..limit-1`` (fewer if the cluster holds
        the rest): extra ones are given back (those beyond ``limit`` first), missing ones
        taken from a random point. Returns the slots this node holds now."""
        if limit > MAX_SLOTS:
            raise ValueError(f"a limit of {limit} is more than the {MAX_SLOTS} slots of a scope")
        count = max(0, min(count, limit))
        async with self._session() as conn:
            key = self._key(scope)  # once connected: the key needs the session's schema
            held = self._held.setdefault(scope, set())
            beyond = {s for s in held if s >= limit}  # the limit was lowered
            extra = beyond | set(sorted(held - beyond)[count:])
            if extra:
                await conn.execute(_GIVE, ([key + slot for slot in extra],))
                held -= extra
            if len(held) < count:
                cur = await conn.execute(_TAKE, {
                    "start": random.randrange(limit), "n": limit, "held": sorted(held),
                    "key": key, "want": count - len(held)})
                held.update(int(row[0]) for row in await cur.fetchall())
            if not held:
                self._held.pop(scope, None)
            return set(held)

    async def count(self, scope: str) -> int:
        """How many of ``scope``'s slots the whole cluster holds now."""
        async with self._session() as conn:
            cur = await conn.execute(_COUNT, _range(self._key(scope)))
            return int((await cur.fetchone() or (0,))[0])

    def holding(self, scope: str) -> set[int]:
        """The slots of ``scope`` this node holds (as of its last call)."""
        return set(self._held.get(scope, ()))

    async def close(self) -> None:
        async with self._lock:
            await self._drop()

    # -- the session ---------------------------------------------------------------------

    def _key(self, scope: str) -> int:
        return lock_key(self._namespace, f"provisioned\0{scope}")

    @contextlib.asynccontextmanager
    async def _session(self):  # type: ignore[no-untyped-def]
        async with self._lock:
            try:
                async with asyncio.timeout(_TIMEOUT_S):
                    conn = await self._connection()
                    yield conn
            except (psycopg.Error, OSError, TimeoutError) as exc:
                # The session's state is unknown: drop it (PostgreSQL frees its locks).
                await self._drop()
                raise ClusterUnavailable(
                    "Provisioned concurrency is counted in the cluster's PostgreSQL "
                    f"database, which this node cannot reach now ({type(exc).__name__}: "
                    f"{exc})") from exc

    async def _connection(self) -> psycopg.AsyncConnection:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        conn = self._conn = await psycopg.AsyncConnection.connect(self._conninfo,
                                                                  autocommit=True)
        self._held.clear()  # a new session holds nothing
        cur = await conn.execute("SELECT current_database() || '.' || current_schema()")
        self._namespace = (await cur.fetchone() or ("",))[0]
        # Counted among the live nodes of its role while this session lasts (a random
        # second half another node may have drawn too: then another one).
        member = self._key(f"members:{self.role}")
        while True:
            self._member = random.randrange(MAX_SLOTS)
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (member + self._member,))
            if (await cur.fetchone() or (False,))[0]:
                return conn
