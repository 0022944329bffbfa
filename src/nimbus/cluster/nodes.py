"""Worker nodes' announcements: a NATS JetStream key-value bucket beside the async queue's
stream, one key per worker.

A worker puts its state (where to reach it, memory, warm environments per function
version) every ``BEAT_S`` and deletes its key when it stops; servers watch the bucket, so
they learn of a new worker, a changed state or a clean stop as it happens, and count a
worker out when it has said nothing for ``STALE_S`` (killed, hung, or cut off). Staleness
is judged on the watcher's own clock, so clocks that disagree between machines do not
matter, except for what a server finds in the bucket when it starts (dated by the
bucket's clock, so that a worker that died just before does not look alive). The
bucket's entries also expire by themselves (``_KEEP_S``), so a dead worker leaves
nothing behind for a server that starts later.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple
from urllib.parse import urlsplit

import nats
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NoStreamResponseError
from nats.js.kv import KeyValue

log = logging.getLogger("nimbus.cluster.nodes")

BEAT_S = 1.0
STALE_S = 3.0
_KEEP_S = 30.0
_REWATCH_S = 30.0
_CONFIRM_S = 1.0  # how long a server waits for the bucket to confirm a node's silence


@dataclass(frozen=True)
class NodeState:
    """What a worker announces: how to reach it and what room it has."""

    node_id: str
    url: str
    cpus: int
    memory_mb: int  # the machine's
    free_mb: int  # available for new environments now
    # Idle warm environments per "function:version": a sync invoke for one of those
    # starts without a cold start there.
    warm: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> NodeState:
        return cls(**json.loads(raw))


class _Heard(NamedTuple):
    state: NodeState
    at: float  # on this process's clock
    revision: int  # the bucket's revision of the announcement


def bucket_for(queue_url: str) -> tuple[str, str]:
    """The NATS server and the nodes' bucket of the installation queuing on ``queue_url``
    (nats://host:port/STREAM): one bucket per stream, so installations stay apart."""
    parts = urlsplit(queue_url)
    stream = parts.path.strip("/") or "NIMBUS_ASYNC"
    return f"nats://{parts.netloc}", f"{stream}_nodes"


class NodeBoard:
    """The bucket, opened once per process: ``announce`` (workers), ``watch`` (servers)."""

    def __init__(self, queue_url: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.server, self.bucket = bucket_for(queue_url)
        self.clock = clock
        self._nc: nats.NATS | None = None
        self._kv: KeyValue | None = None
        self._seen: dict[str, _Heard] = {}
        self._withdrawn: dict[str, float] = {}  # node -> when it said it stops
        self._connected_at = 0.0  # when this process's NATS connection was last (re)made
        self._watcher: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self._nc = await nats.connect(self.server, max_reconnect_attempts=-1,
                                      reconnect_time_wait=0.5,
                                      reconnected_cb=self._reconnected)
        self._connected_at = self.clock()
        await self._bucket()

    async def _bucket(self) -> None:
        assert self._nc is not None
        js = self._nc.jetstream()
        try:
            self._kv = await js.key_value(self.bucket)
        except BucketNotFoundError:
            self._kv = await js.create_key_value(bucket=self.bucket, history=1, ttl=_KEEP_S)

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()

    # -- workers -------------------------------------------------------------------------

    async def announce(self, state: NodeState) -> None:
        assert self._kv is not None
        try:
            await self._kv.put(state.node_id, state.encode())
        except NoStreamResponseError:
            # No bucket to answer (deleted by an operator, or NATS lost its state): make
            # it again rather than stay unannounced until this worker restarts.
            log.warning("the node bucket %s is gone: making it again", self.bucket)
            await self._bucket()
            await self._kv.put(state.node_id, state.encode())

    async def withdraw(self, node_id: str) -> None:
        """A clean stop: servers stop sending at once, not after ``STALE_S``."""
        if self._kv is not None:
            with contextlib.suppress(Exception):
                await self._kv.delete(node_id)

    # -- servers -------------------------------------------------------------------------

    async def watch(self) -> None:
        """Follow the bucket from now on (in the background)."""
        self._watcher = asyncio.ensure_future(self._keep_watching())

    async def _keep_watching(self) -> None:
        # A watch is started afresh every _REWATCH_S (it replays the bucket's last
        # values, so nothing is lost): a watch that went quiet when NATS restarted,
        # and that nats-py may not revive, is replaced within that time.
        while True:
            try:
                assert self._kv is not None
                watcher = await self._kv.watchall()
                try:
                    await asyncio.wait_for(self._follow(watcher), _REWATCH_S)
                except TimeoutError:
                    pass
                finally:
                    with contextlib.suppress(Exception):
                        await watcher.stop()
            except Exception as exc:  # NATS away: try again shortly
                log.warning("cannot follow the worker nodes' announcements: %s", exc)
                await asyncio.sleep(BEAT_S)

    def alive(self) -> list[NodeState]:
        """Workers heard from within ``STALE_S``."""
        now = self.clock()
        cutoff = now - STALE_S
        for gone in [k for k, heard in self._seen.items() if heard.at < now - _KEEP_S]:
            del self._seen[gone]  # a restarted worker is a new node: forget the old one
        for gone in [k for k, said in self._withdrawn.items() if said < now - _KEEP_S]:
            del self._withdrawn[gone]
        return [heard.state for heard in self._seen.values() if heard.at >= cutoff]

    def silent(self, node_ids: Iterable[str]) -> set[str]:
        """Those of ``node_ids`` that went silent: not heard within ``STALE_S`` and not
        stopping cleanly (a worker that withdrew still answers what it had)."""
        alive = {state.node_id for state in self.alive()}
        return {n for n in node_ids if n not in alive and n not in self._withdrawn}

    async def confirm_silent(self, node_ids: Iterable[str]) -> set[str]:
        """Those of ``silent(node_ids)`` whose announcement, read from the bucket now, is
        still the one last heard: a watch that fell behind (NATS restarted under it)
        cannot make a worker that speaks look silent. Empty when NATS does not answer:
        then the silence may be this process's own."""
        confirmed: set[str] = set()
        if self.clock() - self._connected_at < STALE_S + BEAT_S:
            # Back from an outage of its own: the workers' next announcements may not
            # have landed yet.
            return confirmed
        for node_id in self.silent(node_ids):
            known = self._seen.get(node_id)
            try:
                assert self._kv is not None
                entry = await asyncio.wait_for(self._kv.get(node_id), _CONFIRM_S)
            except KeyNotFoundError:  # deleted, or expired
                if known is not None and known.at > self.clock() - _KEEP_S:
                    # Too recent to have expired: a clean stop the watch missed.
                    self._withdrawn[node_id] = self.clock()
                else:
                    confirmed.add(node_id)  # long gone
                continue
            except Exception:
                return set()
            if known is not None and entry.revision == known.revision:
                confirmed.add(node_id)
            elif entry.value and entry.revision is not None:
                self._hear(node_id, entry.value, self.clock(), entry.revision)
        return confirmed

    def _hear(self, node_id: str, value: bytes, at: float, revision: int) -> None:
        try:
            self._seen[node_id] = _Heard(NodeState.decode(value), at, revision)
        except (ValueError, TypeError) as exc:
            log.warning("ignoring node %s's unreadable announcement: %s", node_id, exc)

    async def _reconnected(self) -> None:
        self._connected_at = self.clock()

    async def _follow(self, watcher: KeyValue.KeyWatcher) -> None:
        replaying = True  # what the bucket held when the watch began, then live updates
        async for entry in watcher:
            if entry is None:
                replaying = False
                continue
            heard = self.clock()
            if entry.operation in ("DEL", "PURGE") or not entry.value:
                if self._seen.pop(entry.key, None) is not None:
                    self._withdrawn[entry.key] = heard
                continue
            self._withdrawn.pop(entry.key, None)
            known = self._seen.get(entry.key)
            revision = entry.revision or 0
            if known is not None and known.revision == revision:
                continue  # a new watch replaying what was heard: keep when it was
            # (A lower revision is news too: the bucket was made again.)
            if replaying and known is None and entry.created is not None:
                # A worker that died shortly before this server started: not alive now.
                # (The bucket's clock: only ever for what this process never heard.)
                heard -= max(0.0, (datetime.now(UTC) - entry.created).total_seconds())
            self._hear(entry.key, entry.value, heard, revision)
