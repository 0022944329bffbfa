"""One event source mapping's poller: batches from its source, filtered, handed to the
function synchronously, and settled as Lambda settles them.

A queue source (``retries_in_source``) runs up to ``max_loops`` batch loops at once,
scaled with its backlog; what succeeded is acked, what failed is released for the source
to redeliver (SQS: after the visibility timeout, up to the redrive policy). A stream
source runs one loop, in order: a failed batch is retried (MaximumRetryAttempts,
BisectBatchOnFunctionError, MaximumRecordAgeInSeconds) and what still fails goes to
the OnFailure destination, then is acked so the stream moves on. A throttled invoke
waits and tries again without spending an attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from nimbus import ids
from nimbus.clock import Clock, now_ms
from nimbus.errors import NimbusError, SourceUnavailable, TooManyRequests
from nimbus.events.sources.batch import Batcher
from nimbus.events.sources.failures import (
    REPORT_BATCH_ITEM_FAILURES,
    BatchOutcome,
    bisect,
    judge,
    on_failure_record,
    retries_exhausted,
    stream_split,
    too_old,
)
from nimbus.events.sources.filters import FilterSet
from nimbus.events.sources.kinds import shown
from nimbus.events.sources.source import Source, SourceRecord
from nimbus.invocation.invoker import InvokeResult
from nimbus.observe.tracing import BROKER_ORIGIN, QUEUE_ORIGIN, Caller, TraceHeader, calling
from nimbus.store.event_source_mappings import EventSourceMapping

log = logging.getLogger("nimbus.events.sources")

Invoke = Callable[[bytes], Awaitable[InvokeResult]]
# Sends an on-failure record to a destination; True once it is durably handed over.
Deliver = Callable[[str, dict[str, Any]], Awaitable[bool]]
Sleep = Callable[[float], Awaitable[None]]

THROTTLE_BASE_S = 0.2
THROTTLE_MAX_S = 5.0
RETRY_BASE_S = 0.5  # a stream batch's retries wait base * 2^n, capped
RETRY_MAX_S = 30.0
OPEN_RETRY_MAX_S = 30.0
SCALE_EVERY_S = 1.0


@dataclass
class MappingStats:
    """What one mapping's poller did since it started in this process."""

    counters: Counter[str] = field(default_factory=Counter)
    oldest_age_ms: int = 0  # the oldest record of the last batch, when it was taken
    max_record_age_ms: int = 0  # the oldest record seen since start
    loops: int = 0
    backlog: int | None = None
    last_error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "Received": self.counters["received"],
            "BatchesDelivered": self.counters["batches"],
            "RecordsSucceeded": self.counters["succeeded"],
            "FailedItems": self.counters["failed"],
            "DroppedByFilter": self.counters["filtered"],
            "SentToOnFailure": self.counters["on_failure"],
            "Discarded": self.counters["discarded"],
            "Throttled": self.counters["throttled"],
            "OldestRecordAgeMs": self.oldest_age_ms,
            "MaxRecordAgeMs": self.max_record_age_ms,
            "BatchLoops": self.loops,
            "Backlog": self.backlog,
            "LastError": self.last_error,
        }


async def _sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


class Poller:
    """Runs one mapping until ``stop``; ``run`` returns when it has stopped."""

    def __init__(
        self,
        mapping: EventSourceMapping,
        source: Source,
        invoke: Invoke,
        function_arn: str,
        deliver: Deliver | None = None,
        max_loops: int = 1,
        clock: Clock = now_ms,
        sleep: Sleep = _sleep,
        stats: MappingStats | None = None,
        retry_base_s: float = RETRY_BASE_S,
    ) -> None:
        self.mapping = mapping
        self.retry_base_s = retry_base_s
        self.settings = mapping.settings
        self.source = source
        self.invoke = invoke
        self.function_arn = function_arn
        self.deliver = deliver
        self.clock = clock
        self.sleep = sleep
        self.stats = stats or MappingStats()
        self.filters = FilterSet.parse(self.settings.filters)
        self.report_items = REPORT_BATCH_ITEM_FAILURES in self.settings.function_response_types
        self.queue_like = source.retries_in_source
        self.max_loops = max(1, max_loops) if self.queue_like else 1
        self.desired = 1
        self.opened = asyncio.Event()  # set once the source is open (the mapping is Enabled)
        self._stopping = asyncio.Event()
        self._loops: dict[int, asyncio.Task[None]] = {}
        self._batchers: dict[int, Batcher] = {}
        self.last_result = "No records processed"

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        try:
            if not await self._open():
                return
            self.opened.set()
            self._spawn(0)
            while not self.stopping:
                await self._rescale()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), SCALE_EVERY_S)
            await asyncio.gather(*self._loops.values(), return_exceptions=True)
        finally:
            for task in self._loops.values():
                task.cancel()
            await asyncio.gather(*self._loops.values(), return_exceptions=True)
            await self._hand_back()

    async def _open(self) -> bool:
        delay = 1.0
        while not self.stopping:
            try:
                await self.source.open()
                self.stats.last_error = None
                return True
            except (SourceUnavailable, NimbusError, OSError) as exc:
                message = exc.message if isinstance(exc, NimbusError) else str(exc)
                self.stats.last_error = message
                self.last_result = f"PROBLEM: {message}"[:256]
                log.warning("mapping %s: source unavailable: %s", self.mapping.uuid, message)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            delay = min(OPEN_RETRY_MAX_S, delay * 2)
        return False

    async def _hand_back(self) -> None:
        carried = [r for b in self._batchers.values() for r in b.drain_carry()]
        try:
            if carried and self.queue_like:
                await self.source.release(carried)
        except Exception:
            log.exception("mapping %s: handing back records failed", self.mapping.uuid)
        with contextlib.suppress(Exception):
            await self.source.close()

    async def _rescale(self) -> None:
        if not self.queue_like:
            return
        try:
            backlog = await self.source.backlog()
        except Exception:
            backlog = None
        self.stats.backlog = backlog
        if backlog is None:
            want = self.max_loops
        else:
            want = max(1, min(self.max_loops, math.ceil(backlog / self.settings.batch_size)))
        self.desired = want
        for index in range(want):
            if index not in self._loops or self._loops[index].done():
                self._spawn(index)
        self.stats.loops = sum(1 for t in self._loops.values() if not t.done())

    def _spawn(self, index: int) -> None:
        batcher = Batcher(
            self.source, self.settings.batch_size, float(self.settings.maximum_batching_window)
        )
        self._batchers[index] = batcher
        task = asyncio.get_running_loop().create_task(self._loop(index, batcher))
        self._loops[index] = task
        self.stats.loops = sum(1 for t in self._loops.values() if not t.done())

    async def _loop(self, index: int, batcher: Batcher) -> None:
        while not self.stopping:
            try:
                batch = await batcher.next_batch()
            except Exception as exc:
                self.stats.last_error = f"receiving failed: {exc}"
                log.warning("mapping %s: receive failed: %s", self.mapping.uuid, exc)
                await self._pause(1.0)
                continue
            if batch.records:
                failed_before = self.stats.counters["failed"]
                try:
                    await self.process(batch.records)
                    if self.stats.counters["failed"] > failed_before:
                        await self._hand_back_ordered(batcher)
                except Exception as exc:  # a failed ack, a store error: not the loop's end
                    self.stats.last_error = f"processing a batch failed: {exc}"
                    log.exception("mapping %s: processing a batch failed", self.mapping.uuid)
                    await self._give_back(batcher, batch.records)
                    await self._pause(1.0)
            elif index > 0 and index >= self.desired:
                return  # idle and no longer needed: scale in

    async def _hand_back_ordered(self, batcher: Batcher) -> None:
        """A batch of an ordered queue (FIFO) failed: what was received after it and
        waits in the batcher goes back too, or it would run before the failed records
        come again."""
        if getattr(self.source, "ordered", False):
            carried = batcher.drain_carry()
            if carried:
                await self.source.release(carried)

    async def _give_back(self, batcher: Batcher, records: list[SourceRecord]) -> None:
        """A batch whose processing failed half-way: a queue source redelivers it later
        (as it would after a crash); a stream's records go first into the next batch, so
        the stream keeps its order and nothing is skipped."""
        if not self.queue_like:
            batcher.carry.extendleft(reversed(records))
            return
        try:
            await self.source.release(records)
        except Exception:  # the source's own redelivery (visibility, requeue) still holds
            log.exception("mapping %s: handing a failed batch back failed", self.mapping.uuid)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def process(self, records: list[SourceRecord]) -> None:
        """Filter, invoke and settle one batch as received."""
        now = self.clock()
        self.stats.counters["received"] += len(records)
        oldest = max(0, now - min(r.timestamp_ms for r in records))
        self.stats.oldest_age_ms = oldest
        self.stats.max_record_age_ms = max(self.stats.max_record_age_ms, oldest)
        if self.filters:
            passed = [r for r in records if self.filters.matches(r.record)]
            dropped = [r for r in records if not self.filters.matches(r.record)]
            if dropped:
                await self.source.ack(dropped)
                self.stats.counters["filtered"] += len(dropped)
            records = passed
        if not records:
            return
        if self.queue_like:
            await self._queue_batch(records)
        else:
            await self._stream_batch(records)

    async def _call(self, records: list[SourceRecord]) -> tuple[BatchOutcome, InvokeResult | None]:
        """Invoke the function with ``records``; throttles wait and retry unspent."""
        # Most sources' events are {"Records": [...]}; RabbitMQ's is Lambda's aws:rmq event.
        build = getattr(self.source, "build_event", None)
        event = build(records) if build is not None else {"Records": [r.record for r in records]}
        payload = json.dumps(event).encode()
        delay = THROTTLE_BASE_S
        while True:
            try:
                with calling(self._trace_caller(records)):
                    result = await self.invoke(payload)
            except TooManyRequests:
                self.stats.counters["throttled"] += 1
                await self.sleep(delay)
                delay = min(THROTTLE_MAX_S, delay * 2)
                continue
            except NimbusError as exc:
                self.stats.last_error = exc.message
                self.last_result = "PROBLEM: Function call failed"
                return BatchOutcome(list(records), exc.type_name), None
            self.stats.counters["batches"] += 1
            outcome = judge(records, result.payload, result.function_error, self.report_items)
            self.last_result = "OK" if outcome.ok else "PROBLEM: Function call failed"
            return outcome, result

    def _trace_caller(self, records: list[SourceRecord]) -> Caller:
        """The source as the invocation's caller in its trace: an SQS queue continues the
        trace of the batch's first message that carries one (its AWSTraceHeader, as
        Lambda does), a broker starts a new one."""
        arn = self.mapping.event_source_arn
        if self.mapping.kind == "sqs":
            incoming = None
            for r in records:
                attributes = r.record.get("attributes")
                if isinstance(attributes, dict) and attributes.get("AWSTraceHeader"):
                    incoming = TraceHeader.parse(attributes["AWSTraceHeader"])
                    if incoming is not None:
                        break
            return Caller(QUEUE_ORIGIN, arn.rsplit(":", 1)[-1], incoming,
                          {"resource_type": QUEUE_ORIGIN, "queue_arn": arn})
        parts = urlsplit(arn)  # the broker's address, never its credentials
        port = f":{parts.port}" if parts.port else ""
        return Caller(BROKER_ORIGIN, f"{parts.scheme}://{parts.hostname}{port}{parts.path}")

    async def _queue_batch(self, records: list[SourceRecord]) -> None:
        outcome, _ = await self._call(records)
        failed = {id(r) for r in outcome.failed}
        done = [r for r in records if id(r) not in failed]
        if done:
            await self.source.ack(done)
            self.stats.counters["succeeded"] += len(done)
        if outcome.failed:
            self.stats.counters["failed"] += len(outcome.failed)
            await self.source.release(outcome.failed)
        if outcome.function_error is not None:
            # A failing function is not hammered: its batch loop backs off a little.
            await self._pause(0.1)

    async def _stream_batch(self, records: list[SourceRecord]) -> None:
        settings = self.settings
        pending: deque[tuple[list[SourceRecord], int]] = deque([(records, 0)])
        while pending:
            batch, attempts = pending.popleft()
            if self.stopping:
                return  # unsettled: the source delivers them again after a restart
            now = self.clock()
            expired = [r for r in batch if too_old(r, now, settings.maximum_record_age)]
            if expired:
                await self._give_up(expired, "RecordAgeExceeded", attempts, None)
                batch = [r for r in batch if not too_old(r, now, settings.maximum_record_age)]
                if not batch:
                    continue
            outcome, result = await self._call(batch)
            attempts += 1
            done, retry = stream_split(batch, outcome)
            if done:
                await self.source.ack(done)
                self.stats.counters["succeeded"] += len(done)
            if not retry:
                continue
            self.stats.counters["failed"] += len(retry)
            if retries_exhausted(attempts, settings.maximum_retry_attempts):
                await self._give_up(retry, "RetryAttemptsExhausted", attempts, result)
                continue
            await self._pause(min(RETRY_MAX_S, self.retry_base_s * 2 ** (attempts - 1)))
            if settings.bisect_batch_on_function_error and len(retry) > 1:
                for half in reversed(bisect(retry)):
                    pending.appendleft((half, attempts))
            else:
                pending.appendleft((retry, attempts))

    async def _give_up(
        self,
        records: list[SourceRecord],
        condition: str,
        attempts: int,
        result: InvokeResult | None,
    ) -> None:
        """Records a stream source will not retry: to OnFailure (until it takes them),
        then acked so the stream moves on; with no destination they are discarded, as
        Lambda discards them."""
        target = self.settings.on_failure
        if target and self.deliver is not None:
            record = on_failure_record(
                request_id=result.request_id if result else ids.request_id(),
                function_arn=self.function_arn,
                condition=condition,
                attempts=attempts,
                records=records,
                event_source_arn=shown(self.mapping.event_source_arn),
                now_ms=self.clock(),
                executed_version=result.executed_version if result else None,
                function_error=result.function_error if result else None,
            )
            delay = self.retry_base_s
            while not await self._try_deliver(target, record):
                if self.stopping:
                    return  # unsettled: delivered again after a restart
                await self._pause(delay)
                delay = min(RETRY_MAX_S, delay * 2)
            self.stats.counters["on_failure"] += len(records)
        else:
            self.stats.counters["discarded"] += len(records)
        await self.source.ack(records)

    async def _try_deliver(self, target: str, record: dict[str, Any]) -> bool:
        assert self.deliver is not None
        try:
            return await self.deliver(target, record)
        except Exception as exc:
            self.stats.last_error = f"OnFailure destination {target}: {exc}"
            return False
