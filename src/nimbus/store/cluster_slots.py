"""Concurrency slots counted across every server of one installation, in PostgreSQL.

In cluster mode the account and reserved concurrency limits hold for all front ends
and their async workers together: a reservation of 2 means two executions in the
cluster, not two per server. A limit of ``n`` is ``n`` slots; an invocation holds one
for as long as it runs, as a session-level advisory lock taken on this process's own
connection, and lets it go when it ends. Slot ``i`` of a scope is the bigint lock
``lock_key(scope) + i``: a 43-bit hash of the installation and the scope above 20 bits of
slot number, so two of ``n`` scopes share locks with odds of about n²/2^44 (one in
several million for 10,000 functions).

Why advisory locks rather than a counter row: a lock belongs to its session, so when a
server dies, is killed or loses its network, PostgreSQL frees its slots by itself once
the connection is gone (at once for a dead process; after the TCP keepalive below for a
partition), and no heartbeat, lease expiry or clean-up job is needed.

Bounds, documented in the README:

- A process that loses its connection forfeits the slots it held while those
  invocations finish on it (it cannot release them any more, and PostgreSQL already has);
  during that time the cluster can admit up to that many executions more than the limit.
  With the keepalive settings below a partitioned session is dropped within ~15 s.
- Lowering a limit (a reservation put or deleted changes the account pool) does not stop
  executions holding slots above the new count; they end as they would.

A session's advisory locks are re-entrant (``pg_try_advisory_lock`` on a lock the same
session holds succeeds again), so the slots this process holds are skipped explicitly.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
from dataclasses import dataclass

import psycopg
from psycopg.conninfo import make_conninfo

from nimbus.errors import ClusterUnavailable
from nimbus.store.database import PG_TIMEOUTS, libpq_url

log = logging.getLogger("nimbus.store.cluster_slots")

# Per scope, up to ``want`` slots tried in order from a random point, so two servers
# rarely race for the same one; the executor stops at the ``want``-th lock taken (a Limit
# over a function scan pulls row by row), so no lock is taken and then thrown away. The
# CASE fixes the order: PostgreSQL orders plain AND-ed conditions by cost, and would try
# (and, re-entrantly, take again) a slot this session already holds before the "not
# held" test threw it away, leaking it.
_TAKE = (
    "(SELECT {i} AS i, slot FROM (SELECT ((s + %(start{i})s) %% %(n{i})s)::int AS slot "
    "FROM generate_series(0, %(n{i})s - 1) AS s) AS candidates "
    "WHERE CASE WHEN slot = ANY(%(held{i})s) THEN false "
    "ELSE pg_try_advisory_lock(%(key{i})s::bigint + slot) END "
    "LIMIT %(want{i})s)"
)
_GIVE = ("SELECT count(*) FROM unnest(%(keys)s::bigint[], %(slots)s::int[]) AS u(k, s) "
         "WHERE pg_advisory_unlock(k + s)")
_TIMEOUT_S = 10.0


SLOT_BITS = 20
MAX_SLOTS = 1 << SLOT_BITS  # slots per scope (config.concurrency_limit stays below it)


def lock_key(namespace: str, scope: str) -> int:
    """The advisory lock of slot 0 of ``scope`` in the installation whose schema is
    ``namespace`` (slot ``i`` is this plus ``i``): a positive bigint."""
    digest = hashlib.blake2b(f"{namespace}\0{scope}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> (64 - 63 + SLOT_BITS)) << SLOT_BITS


class AdvisorySession:
    """What ``ClusterSlots`` and ``provisioned_slots.ProvisionedSlots`` share: one
    PostgreSQL session whose advisory locks are this process's slots, dropped whole
    (PostgreSQL then frees every lock it held) when its state is in doubt."""

    _conn: psycopg.AsyncConnection | None
    _held: dict

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._held.clear()
        if conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()


@dataclass(frozen=True, slots=True)
class Slot:
    """One held slot: released only on the session (``generation``) that took it."""

    key: int
    slot: int
    generation: int



class ClusterSlots(AdvisorySession):
    """This process's connection to the cluster's slots; used from one event loop.

    Takes and gives that arrive while a round trip is under way wait for the next one,
    which carries all of them (one statement per batch of gives, one for every scope's
    takes): under load an invocation costs a fraction of a round trip, not two."""

    def __init__(self, url: str) -> None:
        self._conninfo = make_conninfo(libpq_url(url), **PG_TIMEOUTS)
        self._conn: psycopg.AsyncConnection | None = None
        self._namespace = ""  # the installation's schema: two share a database in tests
        self._generation = 0
        self._held: dict[int, set[int]] = {}
        self._takes: list[tuple[str, int, asyncio.Future[Slot | None]]] = []
        self._gives: list[Slot] = []
        self._wake: asyncio.Event | None = None
        self._runner: asyncio.Task[None] | None = None

    def key(self, scope: str) -> int:
        """The advisory lock's first half for ``scope`` in this installation."""
        return lock_key(self._namespace, scope)

    async def take(self, scope: str, limit: int) -> Slot | None:
        """A free slot of ``scope``'s ``limit``, held until ``give``; None: all taken."""
        if limit <= 0:
            return None
        if limit > MAX_SLOTS:
            raise ValueError(f"a limit of {limit} is more than the {MAX_SLOTS} slots of a scope")
        future: asyncio.Future[Slot | None] = asyncio.get_running_loop().create_future()
        self._takes.append((scope, limit, future))
        self._kick()
        try:
            # Shielded: a caller cancelled meanwhile must not leak the slot it got.
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(self._give_back)
            raise

    def give(self, slot: Slot) -> None:
        """Let ``slot`` go (with the next round trip: the caller's answer does not wait)."""
        if slot.generation == self._generation and slot.slot in self._held.get(slot.key, ()):
            self._gives.append(slot)
            self._kick()

    async def close(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await self._conn.close()
        self._conn = None

    # -- the round trips -----------------------------------------------------------------

    def _kick(self) -> None:
        if self._runner is None or self._runner.done():
            self._wake = asyncio.Event()
            self._runner = asyncio.ensure_future(self._run())
        assert self._wake is not None
        self._wake.set()

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._exchange_now()

    async def _exchange_now(self) -> None:
        gives, self._gives = self._gives, []
        takes, self._takes = self._takes, []
        try:
            conn = await self._connection()
            async with asyncio.timeout(_TIMEOUT_S):
                await self._exchange(conn, gives, takes)
        except Exception as exc:  # every waiter must hear of it
            # The session's state is unknown: drop it (PostgreSQL frees what it held).
            await self._drop()
            failure = self._unavailable(exc)
            for _, _, future in takes:
                if not future.done():
                    future.set_exception(failure)
            if not takes:
                log.warning("releasing cluster concurrency slots failed: %s", exc)

    async def _exchange(self, conn: psycopg.AsyncConnection,
                        gives: list[Slot],
                        takes: list[tuple[str, int, asyncio.Future[Slot | None]]]) -> None:
        gives = [g for g in gives if g.generation == self._generation]
        for given in gives:
            self._held.get(given.key, set()).discard(given.slot)
        # One branch per scope: two branches of one statement for the same key would
        # both be granted the same slot (the session's locks are re-entrant). Takes
        # asking different limits of one scope (a reservation just changed) get the
        # least of them, which never admits beyond either.
        groups: dict[int, list[asyncio.Future[Slot | None]]] = {}
        limits: dict[int, int] = {}
        for scope, limit, future in takes:  # keyed now: the key needs the session's schema
            key = self.key(scope)
            groups.setdefault(key, []).append(future)
            limits[key] = min(limit, limits.get(key, limit))
        parts: list[str] = []
        params: dict[str, object] = {}
        for i, (key, futures) in enumerate(groups.items()):
            limit = limits[key]
            parts.append(_TAKE.format(i=i))
            params |= {f"key{i}": key, f"n{i}": limit, f"start{i}": random.randrange(limit),
                       f"held{i}": list(self._held.get(key, ())), f"want{i}": len(futures)}
        async with conn.pipeline():
            if gives:
                await conn.execute(_GIVE, {"keys": [g.key for g in gives],
                                           "slots": [g.slot for g in gives]})
            cur = await conn.execute(" UNION ALL ".join(parts), params) if parts else None
        got: dict[int, list[int]] = {}
        for i, slot in await cur.fetchall() if cur is not None else ():
            got.setdefault(i, []).append(slot)
        for i, (key, futures) in enumerate(groups.items()):
            slots = got.get(i, [])
            self._held.setdefault(key, set()).update(slots)
            for n, future in enumerate(futures):
                result = Slot(key, slots[n], self._generation) if n < len(slots) else None
                if future.done():  # cannot be: the caller only shields it
                    continue
                future.set_result(result)

    def _give_back(self, future: asyncio.Future[Slot | None]) -> None:
        if not future.cancelled() and future.exception() is None and (slot := future.result()):
            self.give(slot)

    async def _connection(self) -> psycopg.AsyncConnection:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        async with asyncio.timeout(_TIMEOUT_S):
            conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
            cur = await conn.execute("SELECT current_database() || '.' || current_schema()")
            namespace = (await cur.fetchone() or ("",))[0]
        self._conn, self._namespace = conn, namespace
        self._generation += 1
        self._held.clear()  # a new session holds nothing
        return conn

    @staticmethod
    def _unavailable(exc: BaseException) -> ClusterUnavailable:
        return ClusterUnavailable(
            "The cluster's concurrency is counted in its PostgreSQL database, which this "
            f"server cannot reach now ({type(exc).__name__}: {exc}); retry, or check the "
            "database and this server's network")
