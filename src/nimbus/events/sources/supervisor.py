"""Runs the poller of every enabled event source mapping, each in exactly one process
of the installation, and settles the mappings' states.

Each poller runs under the lease ``mapping:<uuid>`` in the store (``LeaseStore``): the
supervisor takes it before starting the poller, renews it every tick, stops the poller
at once if the lease was lost (another process took it over after this one stalled)
and releases it on stop, so another server takes over without waiting for expiry.

The supervisor reads the mappings table every tick, and at once when this process
changed a mapping (``MappingStore.listen``); it settles the API's transitional states:
Creating / Enabling / Updating become Enabled once the poller has opened its source,
Disabling becomes Disabled once it stopped, Deleting removes the row.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid as uuidlib
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from nimbus.clock import Clock, now_ms
from nimbus.config import Config
from nimbus.errors import NimbusError, ResourceNotFound
from nimbus.events.destinations import parse_destination, post_webhook
from nimbus.events.sources.kinds import KINDS, SQS_ARN, build_source, retire_source
from nimbus.events.sources.poller import Deliver, MappingStats, Poller
from nimbus.events.sources.source import Source, SourceOptions
from nimbus.invocation.invoker import InvokeResult
from nimbus.store.database import Database
from nimbus.store.event_source_mappings import EventSourceMapping, MappingStore
from nimbus.store.leases import LeaseStore
from nimbus.threads import blocking

log = logging.getLogger("nimbus.events.sources")

TICK_S = 2.0
LEASE_TTL_MS = 15_000
STOP_GRACE_S = 10.0  # a stopping poller finishes its batches in flight for this long
DEFAULT_QUEUE_CONCURRENCY = 5  # batch loops of a queue mapping without ScalingConfig

InvokeFn = Callable[[str, str | None, bytes], Awaitable[InvokeResult]]
SourceFactory = Callable[[EventSourceMapping], Source]
ReservedFn = Callable[[str], Awaitable[int | None]]

_supervisors: weakref.WeakKeyDictionary[Database, MappingSupervisor] = (
    weakref.WeakKeyDictionary()
)


def supervisor_for(db: Database) -> MappingSupervisor | None:
    """The supervisor running in this process over ``db``, if any (for stats)."""
    return _supervisors.get(db)


@dataclass
class _Running:
    poller: Poller
    task: asyncio.Task[None]
    revision: int


class MappingSupervisor:
    """Owns this process's pollers."""

    def __init__(
        self,
        db: Database,
        config: Config,
        invoke: InvokeFn,
        *,
        queues: Any = None,
        deliver: Deliver | None = None,
        reserved: ReservedFn | None = None,
        source_factory: SourceFactory | None = None,
        clock: Clock = now_ms,
        tick_s: float = TICK_S,
        lease_ttl_ms: int = LEASE_TTL_MS,
        owner: str | None = None,
    ) -> None:
        self.db = db
        self.config = config
        self.store = MappingStore(db)
        self.leases = LeaseStore(db, clock)
        self.invoke = invoke
        self.queues = queues
        self.deliver = deliver
        self.reserved = reserved
        self.source_factory = source_factory or self._build_source
        self.clock = clock
        self.tick_s = tick_s
        self.lease_ttl_ms = lease_ttl_ms
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuidlib.uuid4().hex[:8]}"
        self.stats: dict[str, MappingStats] = {}
        self._running: dict[str, _Running] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._reconciling = asyncio.Lock()
        self._settlers: set[asyncio.Task[None]] = set()
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def for_engine(cls, engine: Any, **kwargs: Any) -> MappingSupervisor:
        """The server's supervisor over ``engine`` (a ``nimbus.engine.Engine``, which
        sits above this layer): invokes through the engine's invoker, reads
        ``engine.sqs`` queues, delivers on-failure records to queues, functions (the
        durable async queue) and webhooks."""
        queues = getattr(engine, "sqs", None)
        http = httpx.AsyncClient(timeout=10)

        async def invoke(name: str, qualifier: str | None, payload: bytes) -> InvokeResult:
            return await engine.invoker.invoke(name, qualifier, payload)

        async def deliver(target: str, record: dict[str, Any]) -> bool:
            body = json.dumps(record)
            if SQS_ARN.fullmatch(target):
                if queues is None:
                    return False
                info = await queues.get_by_arn(target)
                await queues.send(info.name, body)
                return True
            destination = parse_destination(target, engine.config)
            if destination.function is not None:
                await engine.dispatcher.enqueue(
                    destination.function, destination.qualifier, body.encode()
                )
                return True
            if destination.topic is not None:
                return bool(
                    await engine.dispatcher.publish(destination.topic, body.encode(), {}, None)
                )
            assert destination.url is not None
            # Through the egress policy, as every webhook: a refusal (EgressRefused) is
            # the mapping's LastProcessingResult until the destination is fixed; the
            # records wait, none is dropped.
            response = await post_webhook(
                http, destination.url, body.encode(), {"Content-Type": "application/json"},
                engine.config,
            )
            return response.status_code < 300

        async def reserved(name: str) -> int | None:
            try:
                record = await blocking(engine.functions.get_record, name)
            except ResourceNotFound:
                return None
            return record.reserved_concurrency

        supervisor = cls(
            engine.db,
            engine.config,
            invoke,
            queues=queues,
            deliver=deliver,
            reserved=reserved,
            **kwargs,
        )
        supervisor._http = http
        return supervisor

    _http: httpx.AsyncClient | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        _supervisors[self.db] = self
        MappingStore.listen(self.db, self._changed)
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run())

    async def close(self) -> None:
        MappingStore.unlisten(self.db, self._changed)
        if _supervisors.get(self.db) is self:
            del _supervisors[self.db]
        if self._task is not None:
            # Let a reconciliation in progress finish (it may be stopping a poller).
            self._closing = True
            self._wake.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        async with self._reconciling:
            await asyncio.gather(
                *(self._stop(uuid, release=True) for uuid in list(self._running)),
                return_exceptions=True,
            )
        if self._http is not None:
            await self._http.aclose()

    def _changed(self, _uuid: str) -> None:
        # Called from the API's worker thread: hand the wake-up to the loop.
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while not self._closing:
            self._wake.clear()
            try:
                await self.reconcile()
            except Exception:
                log.exception("reconciling event source mappings failed; retrying")
            if self._closing:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.tick_s)

    # -- reconciliation --------------------------------------------------------------

    async def reconcile(self) -> None:
        """One pass: start, renew, restart, stop and settle every mapping's poller."""
        async with self._reconciling:
            mappings = await blocking(self.store.all)
            present = {m.uuid for m in mappings}
            # Every running poller's lease first, and again whenever a pass runs long
            # (stopping pollers waits up to STOP_GRACE_S each): a lease must never lapse
            # while its poller still runs here, or another process would poll it too.
            renewed = await self._renew_running()
            for mapping in mappings:
                if time.monotonic() - renewed > self.lease_ttl_ms / 3000:
                    renewed = await self._renew_running()
                try:
                    await self._reconcile_one(mapping)
                except Exception:
                    log.exception("event source mapping %s: reconciling failed", mapping.uuid)
            for uuid in [u for u in self._running if u not in present]:
                await self._stop(uuid, release=True)

    async def _reconcile_one(self, mapping: EventSourceMapping) -> None:
        uuid = mapping.uuid
        running = self._running.get(uuid)
        if running is not None and running.task.done():
            await self._stop(uuid, release=True)  # it ended by itself (stopped or crashed)
            running = None
        if mapping.state == "Deleting":
            if running is not None:
                await self._stop(uuid, release=True)
            if await self._take(uuid):
                if await self._retired(mapping):
                    await blocking(self.store.remove, uuid, mapping.revision)
                await self._release(uuid)
            self.stats.pop(uuid, None)
            return
        if not mapping.should_run:
            if running is not None:
                await self._stop(uuid, release=False)
            if mapping.state != "Disabled":
                if await self._take(uuid):
                    await blocking(self.store.settle, uuid, mapping.revision, "Disabled")
                    await self._release(uuid)
            elif running is not None:
                await self._release(uuid)
            return
        if running is not None and running.revision != mapping.revision:
            await self._stop(uuid, release=False)  # a new configuration: restart
            running = None
        if running is None:
            if await self._take(uuid):
                await self._start(mapping)
            return
        if not await self._take(uuid):
            log.warning("event source mapping %s: lease lost; stopping its poller", uuid)
            await self._stop(uuid, release=False)
            return
        poller = running.poller
        if poller.opened.is_set() and mapping.state != "Enabled":
            await blocking(self.store.settle, uuid, mapping.revision, "Enabled")
        if poller.last_result != mapping.last_processing_result:
            await blocking(self.store.note_result, uuid, poller.last_result)

    async def _retired(self, mapping: EventSourceMapping) -> bool:
        """What the source keeps for a deleted mapping (a PostgreSQL replication slot) is
        gone; if not yet, the mapping stays Deleting, saying why, and is tried again."""
        try:
            await retire_source(mapping.kind, mapping.uuid, mapping.event_source_arn)
        except NimbusError as exc:
            await blocking(self.store.note_result, mapping.uuid, f"PROBLEM: {exc.message}"[:256])
            return False
        return True

    async def _renew_running(self) -> float:
        """Renew the leases of the pollers running here; stop those whose lease was lost.
        Returns when (time.monotonic) it renewed."""
        for uuid in list(self._running):
            if not await self._take(uuid):
                log.warning("event source mapping %s: lease lost; stopping its poller", uuid)
                await self._stop(uuid, release=False)
        return time.monotonic()

    async def _take(self, uuid: str) -> bool:
        return bool(
            await blocking(self.leases.acquire, f"mapping:{uuid}", self.owner, self.lease_ttl_ms)
        )

    async def _release(self, uuid: str) -> None:
        await blocking(self.leases.release, f"mapping:{uuid}", self.owner)

    def owns(self, uuid: str) -> bool:
        return uuid in self._running

    async def _start(self, mapping: EventSourceMapping) -> None:
        try:
            source = self.source_factory(mapping)
        except NimbusError as exc:
            log.warning("event source mapping %s: cannot build its source: %s", mapping.uuid,
                        exc.message)
            await blocking(self.store.note_result, mapping.uuid, f"PROBLEM: {exc.message}"[:256])
            await self._release(mapping.uuid)
            return
        stats = self.stats.setdefault(mapping.uuid, MappingStats())
        poller = Poller(
            mapping,
            source,
            lambda payload: self.invoke(mapping.function_name, mapping.qualifier, payload),
            self.config.function_arn(mapping.function_name, mapping.qualifier),
            deliver=self.deliver,
            max_loops=await self._max_loops(mapping),
            clock=self.clock,
            stats=stats,
        )
        loop = asyncio.get_running_loop()
        task = loop.create_task(poller.run())
        self._running[mapping.uuid] = _Running(poller, task, mapping.revision)
        self._settlers.add(loop.create_task(self._settle_when_open(mapping, poller)))
        self._settlers = {t for t in self._settlers if not t.done()}

    async def _settle_when_open(self, mapping: EventSourceMapping, poller: Poller) -> None:
        opened = asyncio.get_running_loop().create_task(poller.opened.wait())
        stopped = self._running[mapping.uuid].task
        await asyncio.wait({opened, stopped}, return_when=asyncio.FIRST_COMPLETED)
        opened.cancel()
        if poller.opened.is_set() and mapping.state != "Enabled":
            await blocking(self.store.settle, mapping.uuid, mapping.revision, "Enabled")

    async def _max_loops(self, mapping: EventSourceMapping) -> int:
        kind = KINDS.get(mapping.kind)
        if kind is None or not kind.queue_like:
            return 1
        loops = mapping.settings.maximum_concurrency or DEFAULT_QUEUE_CONCURRENCY
        if self.reserved is not None:
            reserved = await self.reserved(mapping.function_name)
            if reserved:
                loops = min(loops, reserved)
        return max(1, loops)

    async def _stop(self, uuid: str, *, release: bool) -> None:
        running = self._running.pop(uuid, None)
        if running is not None:
            running.poller.stop()
            try:
                await asyncio.wait_for(asyncio.shield(running.task), STOP_GRACE_S)
            except TimeoutError:
                running.task.cancel()
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await running.task
            except asyncio.CancelledError:
                running.task.cancel()  # we are being cancelled: so is the poller
                raise
            except Exception:
                log.exception("event source mapping %s: its poller failed", uuid)
        if release:
            with contextlib.suppress(Exception):
                await self._release(uuid)

    def _build_source(self, mapping: EventSourceMapping) -> Source:
        kind = KINDS[mapping.kind]
        settings = mapping.settings
        timestamp = settings.starting_position_timestamp
        options = SourceOptions(
            mapping_uuid=mapping.uuid,
            event_source_arn=mapping.event_source_arn,
            function_arn=self.config.function_arn(mapping.function_name, mapping.qualifier),
            region=self.config.region,
            batch_size=settings.batch_size,
            starting_position=settings.starting_position,
            starting_position_timestamp_ms=int(timestamp * 1000) if timestamp else None,
        )
        return build_source(kind, options, self.queues)

    # -- observability ---------------------------------------------------------------

    def stats_of(self, uuid: str) -> dict[str, Any] | None:
        stats = self.stats.get(uuid)
        if stats is None:
            return None
        body = stats.as_json()
        body["RunningHere"] = uuid in self._running
        return body
