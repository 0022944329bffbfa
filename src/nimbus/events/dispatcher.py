"""The async path: durable queue -> invoker, with retries, max age, destinations and
dead letters.

The dispatcher leases events from the queue, runs each through the invoker, and only
acknowledges an event once its outcome is settled: success delivered to OnSuccess,
or failure delivered to OnFailure / the function's DeadLetterConfig / the built-in
dead-letter store. A crash at any point leaves the event leased, and it is delivered
again when the lease lapses (or at start-up): at-least-once, never lost.

Throttled events (over reserved or account concurrency) wait in the queue without
spending an attempt, as on Lambda.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import Counter, deque
from typing import Literal

import httpx

from nimbus import ids
from nimbus.clock import Clock, now_ms
from nimbus.config import Config
from nimbus.errors import NimbusError, ResourceConflict, ResourceNotFound, TooManyRequests
from nimbus.events.async_hop import AsyncHop
from nimbus.events.destinations import (
    Destination,
    invocation_record,
    parse_destination,
    post_webhook,
)
from nimbus.invocation.cache import Cache
from nimbus.invocation.invoker import Invoker, InvokeResult
from nimbus.models import LATEST, DeadLetter, EventInvokeConfig
from nimbus.net_policy import EgressRefused
from nimbus.observe.hooks import (
    AsyncEventDeadLettered,
    AsyncEventDropped,
    AsyncEventReceived,
    AsyncEventRetried,
    AsyncEventStarted,
    DestinationDelivered,
    Hooks,
)
from nimbus.observe.tracing import Tracer
from nimbus.queue.backend import Lease, QueueBackend, QueuedEvent
from nimbus.sns.notifications import check_publication
from nimbus.sns.topics import Topics
from nimbus.sqs.queues import Queues
from nimbus.store.dead_letters import DeadLetterStore
from nimbus.store.event_configs import EventConfigStore
from nimbus.store.functions import FunctionStore
from nimbus.threads import blocking

log = logging.getLogger("nimbus.events.dispatcher")
BUILTIN_QUEUE = "nimbus"
# Webhook posts in flight at once. More wait their turn here, not in httpx's connection
# pool, where hundreds of waiters time out (PoolTimeout) and cost quadratic CPU.
WEBHOOK_CONNECTIONS = 32
READY_RENEW_S = 30.0  # a leased-ahead event that waited longer renews its lease first
# Events leased ahead of the free slots, in multiples of the parallelism: at least one
# (a freed slot never waits for a lease), at most this many (what one consumer may hold
# back from the others), and never more than MAX_AHEAD_EVENTS beyond that first one (each
# holds its payload, up to 256 KB, in memory).
MAX_AHEAD = 8
MAX_AHEAD_EVENTS = 1024


class TooOld(NimbusError):
    """The event outlived MaximumEventAgeInSeconds before it could run."""

    def __init__(self) -> None:
        super().__init__("event older than MaximumEventAgeInSeconds")


class Dispatcher:
    """Consumes the async queue with bounded parallelism."""

    def __init__(
        self,
        config: Config,
        queue: QueueBackend,
        invoker: Invoker,
        functions: FunctionStore,
        event_configs: EventConfigStore,
        dead_letters: DeadLetterStore,
        clock: Clock = now_ms,
        sqs: Queues | None = None,
        hooks: Hooks | None = None,
        tracer: Tracer | None = None,
        sns: Topics | None = None,
    ) -> None:
        self.config = config
        self.sns = sns  # SNS destinations and dead-letter topics (None: none deliverable)
        # Each attempt's AWS::Lambda segment (queue dwell, attempt, destination): see AsyncHop.
        self.tracer = tracer if tracer is not None else Tracer()
        self._hops: dict[int, AsyncHop] = {}  # id(event) -> its attempt's hop, while it settles
        self.sqs = sqs  # SQS destinations and dead-letter queues (None: none deliverable)
        self.clock = clock  # stamps events and judges their age (tests move it)
        self.queue = queue
        self.invoker = invoker
        # The process's lifecycle hooks (observe/hooks.py), the invoker's too.
        self.hooks = hooks if hooks is not None else Hooks()
        self.functions = functions
        self.event_configs = event_configs
        self.dead_letters = dead_letters
        self.parallelism = config.async_parallelism
        # When saturated, lease once this many slots are free rather than one by one:
        # each lease is a queue round trip (a cross-process one for async workers).
        self.lease_batch = max(1, self.parallelism // 8)
        # How many events to hold leased beyond the busy slots: enough to cover what the
        # slots consume during one lease round trip (see _adapt).
        self.ahead = self.parallelism
        self._running: set[asyncio.Task[None]] = set()
        # Slots bound the invocations in flight, not the tasks: a task gives its slot back
        # once the function has run, and settles (destination, ack) without holding it,
        # so the wait for a commit never idles an environment.
        self._busy_slots = 0
        self._ready: deque[tuple[Lease, float]] = deque()  # leased (at), waiting for a slot
        self._freed = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop  # set by start()
        self._configs: Cache[tuple[str, str], EventInvokeConfig] = Cache(
            lambda key: event_configs.find(*key) or EventInvokeConfig(*key),
            lambda: functions.generation,
        )
        self._http: httpx.AsyncClient | None = None
        self._webhooks = asyncio.Semaphore(WEBHOOK_CONNECTIONS)
        # succeeded / retried / throttled / requeued / failed / dead_lettered / delivered,
        # since start
        self.counters: Counter[str] = Counter()
        functions.on_change(self._forget)

    def _forget(self, name: str) -> None:
        self._configs.drop(lambda key, _: key[0] == name)

    async def enqueue(
        self,
        function: str,
        qualifier: str | None,
        payload: bytes,
        trace_id: str | None = None,
        request_id: str | None = None,
    ) -> str:
        """Durably queue an invocation; returns its request id once committed."""
        request_id = request_id or ids.request_id()
        # Stored with the event, so its attempts (and retries) continue the caller's
        # trace, or a trigger's (a schedule), or one root of its own.
        trace_id = str(self.tracer.incoming(trace_id))
        await self.queue.put(
            QueuedEvent(
                function_name=function,
                qualifier=qualifier,
                payload=payload,
                request_id=request_id,
                trace_id=trace_id,
                enqueued_ms=self.clock(),
            )
        )
        if self.hooks.wants(AsyncEventReceived):
            self.hooks.emit(AsyncEventReceived(function, qualifier, request_id))
        return request_id

    async def recover(self) -> None:
        """Make the events that were leased when the last owner stopped visible again
        (the queue's owner does it once, before anyone leases)."""
        recovered = await self.queue.recover()
        if recovered:
            log.warning("re-delivering %d events that were in flight at the last stop", recovered)

    async def start(self) -> None:
        await self.recover()
        self._http = httpx.AsyncClient(
            timeout=10, limits=httpx.Limits(max_connections=WEBHOOK_CONNECTIONS)
        )
        # Kept: on Python 3.11 each get_running_loop() is a getpid() syscall.
        self._loop = asyncio.get_running_loop()
        self._loop_task = self._loop.create_task(self._consume())

    async def close(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        # Leased ahead but never started: visible again now, not after their timeout.
        ready, self._ready = list(self._ready), deque()
        await asyncio.gather(
            *(self.queue.retry(lease, 0, lease.event.attempts) for lease, _ in ready),
            return_exceptions=True,
        )
        for task in list(self._running):
            task.cancel()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()

    async def _consume(self) -> None:
        while True:
            # Lease ahead: events wait here beyond the busy slots, so a slot that frees
            # starts the next one at once instead of waiting for a lease round trip. That
            # round trip is slow exactly when the queue is busiest (its owner is answering
            # a flood of puts), so the reserve adapts (see _adapt): short functions
            # drained by the thousand per second keep their slots fed, slow ones hold few
            # events back from other consumers.
            want = self.parallelism + self.ahead - self._busy_slots - len(self._ready)
            if want < self.lease_batch:
                self._freed.clear()
                await self._freed.wait()
                continue
            in_hand = self._busy_slots + len(self._ready)
            try:
                leases = await self.queue.lease(want, self.config.async_visibility_seconds)
            except Exception:
                log.exception("leasing from the queue failed; retrying")
                await asyncio.sleep(1)
                continue
            self._adapt(in_hand, want, len(leases))
            if not leases:
                await self.queue.wait_for_work(1.0)
                continue
            leased_at = time.monotonic()
            self._ready.extend((lease, leased_at) for lease in leases)
            self._start_ready()

    def _adapt(self, in_hand: int, asked: int, got: int) -> None:
        """Size the reserve from how the last lease went. If the events in hand when it
        was asked for all ran out before it came back (slots sat idle) while the queue
        had more (it filled the request), the reserve was too small for the round trip
        and doubles; if events were still waiting, it shrinks a step."""
        starved = in_hand > 0 and not self._ready and self._busy_slots < self.parallelism
        if starved and got == asked:
            cap = min(MAX_AHEAD * self.parallelism, self.parallelism + MAX_AHEAD_EVENTS)
            self.ahead = min(cap, 2 * self.ahead)
        elif not starved:
            self.ahead = max(self.parallelism, self.ahead - self.lease_batch)

    def _start_ready(self) -> None:
        while self._ready and self._busy_slots < self.parallelism:
            lease, leased_at = self._ready.popleft()
            self._busy_slots += 1
            waited = time.monotonic() - leased_at
            task = self._loop.create_task(self._handle(lease, waited))
            self._running.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("dispatching an event failed", exc_info=task.exception())

    async def _config(self, function: str, qualifier: str) -> EventInvokeConfig:
        return await self._configs.get((function, qualifier))

    def _free_slot(self) -> None:
        self._busy_slots -= 1
        self._start_ready()
        self._freed.set()

    async def _handle(self, lease: Lease, waited: float = 0.0) -> None:
        event = lease.event
        outcome: InvokeResult | NimbusError
        hop = self._hops[id(event)] = AsyncHop(event, self.clock())
        try:
            # A lease that waited behind slow invocations has used part of its visibility
            # timeout; renew it so the run cannot outlive it and be delivered twice.
            if waited > READY_RENEW_S and not await self.queue.extend(
                lease, self.config.async_visibility_seconds
            ):
                self._hops.pop(id(event), None)
                return  # stale: another consumer holds the event now
            cfg = await self._config(event.function_name, event.qualifier or LATEST)
            age_ms = self.clock() - event.enqueued_ms
            if age_ms > cfg.max_age_seconds * 1000:
                outcome = TooOld()
            else:
                # Lambda's AsyncEventAge is measured when the function is invoked: once
                # the attempt is admitted (a throttled one invoked nothing).
                def invoked(age_ms: int = age_ms) -> None:
                    if self.hooks.wants(AsyncEventStarted):
                        self.hooks.emit(AsyncEventStarted(
                            event.function_name, event.qualifier, event.request_id,
                            event.attempts, age_ms,
                        ))

                try:
                    outcome = await self.invoker.invoke(
                        event.function_name,
                        event.qualifier,
                        event.payload,
                        trace_id=hop.header(),
                        request_id=event.request_id,
                        on_run=invoked,
                    )
                except NimbusError as exc:
                    outcome = exc
                hop.ran(outcome, self.clock())
        finally:
            self._free_slot()
        try:
            await self._settle(lease, cfg, outcome)
        finally:
            del self._hops[id(event)]
            # Built only for a sampled trace: the tracer would drop anything else.
            if self.tracer.enabled and self.tracer.sampled(hop.trace.root):
                self.tracer.record(hop.document(self.config.function_arn(
                    event.function_name, event.qualifier or LATEST), self.clock()))

    async def _settle(
        self, lease: Lease, cfg: EventInvokeConfig, outcome: InvokeResult | NimbusError
    ) -> None:
        event = lease.event
        if isinstance(outcome, TooOld):
            await self._fail(lease, cfg, "EventAgeExceeded", None)
        elif isinstance(outcome, TooManyRequests):
            # Throttled: wait in the queue, without spending an attempt.
            delay = min(self.config.throttle_delay_seconds * (1 + random.random()), 60)
            self.counters["throttled"] += 1
            await self.queue.retry(lease, delay, event.attempts)
        elif isinstance(outcome, NimbusError) and outcome.transient:
            # nimbus's own passing trouble (a worker node lost mid-run, the database out
            # of reach): back to the queue, as Lambda retries its service errors, without
            # spending an attempt; the event's maximum age still bounds it.
            delay = min(self.config.throttle_delay_seconds * (1 + random.random()), 60)
            self.counters["requeued"] += 1
            await self.queue.retry(lease, delay, event.attempts)
        elif isinstance(outcome, NimbusError):
            condition = (
                "ResourceNotFound" if isinstance(outcome, ResourceNotFound) else outcome.type_name
            )
            await self._fail(lease, cfg, condition, None, error=outcome.message)
        elif outcome.function_error is None:
            await self._succeed(lease, cfg, outcome, event.attempts + 1)
        elif event.attempts + 1 <= cfg.retries:
            attempts = event.attempts + 1
            delay = self.config.retry_base_seconds * (2 ** (attempts - 1))
            self.counters["retried"] += 1
            if self.hooks.wants(AsyncEventRetried):
                self.hooks.emit(AsyncEventRetried(
                    event.function_name, event.qualifier, event.request_id, attempts, delay
                ))
            await self.queue.retry(lease, delay, attempts)
        else:
            await self._fail(lease, cfg, "RetriesExhausted", outcome, attempts=event.attempts + 1)

    def _record(
        self,
        lease: Lease,
        condition: str,
        result: InvokeResult | None,
        attempts: int,
    ) -> dict:
        event = lease.event
        return invocation_record(
            request_id=event.request_id,
            function_arn=self.config.function_arn(event.function_name, event.qualifier or LATEST),
            condition=condition,
            attempts=attempts,
            request_payload=event.payload,
            status_code=200 if result is not None else 500,
            executed_version=result.executed_version if result else None,
            function_error=result.function_error if result else None,
            response_payload=result.payload if result else None,
        )

    async def _succeed(
        self, lease: Lease, cfg: EventInvokeConfig, result: InvokeResult, attempts: int
    ) -> None:
        if cfg.on_success:
            record = self._record(lease, "Success", result, attempts)
            delivered = await self._deliver(cfg.on_success, record, lease.event)
            self._delivered(lease.event, "OnSuccess", cfg.on_success, delivered)
            if not delivered:
                await self._dead_letter(
                    lease,
                    BUILTIN_QUEUE,
                    "DestinationDeliveryFailed",
                    f"OnSuccess destination {cfg.on_success} could not be reached",
                    attempts,
                )
        await self.queue.ack(lease)
        self.counters["succeeded"] += 1

    async def _fail(
        self,
        lease: Lease,
        cfg: EventInvokeConfig,
        condition: str,
        result: InvokeResult | None,
        attempts: int | None = None,
        error: str | None = None,
    ) -> None:
        event = lease.event
        attempts = event.attempts if attempts is None else attempts
        detail = error or (result.payload.decode("utf-8", "replace") if result else None)
        if self.hooks.wants(AsyncEventDropped):
            self.hooks.emit(AsyncEventDropped(
                event.function_name, event.qualifier, event.request_id, condition,
                self.clock() - event.enqueued_ms,
            ))
        landed = False
        if cfg.on_failure:
            record = self._record(lease, condition, result, attempts)
            landed = await self._deliver(cfg.on_failure, record, event)
            self._delivered(event, "OnFailure", cfg.on_failure, landed)
        dlq = await self._function_dlq(event.function_name)
        if dlq is not None:
            status = 200 if result is not None else 500
            sent = await self._to_dead_letter_queue(dlq, event, status, detail or condition)
            if self.hooks.wants(AsyncEventDeadLettered):
                self.hooks.emit(AsyncEventDeadLettered(
                    event.function_name, event.qualifier, event.request_id, dlq, sent
                ))
            if not sent:
                # Not an SQS queue of this nimbus (or gone): kept in the built-in store,
                # under the target's name.
                await self._dead_letter(lease, dlq, condition, detail, attempts)
            landed = True
        if not landed:
            await self._dead_letter(lease, BUILTIN_QUEUE, condition, detail, attempts)
        await self.queue.ack(lease)
        self.counters["failed"] += 1

    def _delivered(self, event: QueuedEvent, condition: Literal["OnSuccess", "OnFailure"],
                   destination: str, ok: bool) -> None:
        if self.hooks.wants(DestinationDelivered):
            self.hooks.emit(DestinationDelivered(
                event.function_name, event.qualifier, event.request_id, condition,
                destination, ok, self.clock() - event.enqueued_ms,
            ))

    async def _function_dlq(self, function: str) -> str | None:
        """The queue or topic named by the function's DeadLetterConfig.TargetArn, if any."""
        try:
            resolution = await self.invoker.targets.resolve(function, None)
        except ResourceNotFound:
            return None
        target = resolution.pick().extra.get("DeadLetterConfig", {}).get("TargetArn")
        return target or None

    async def _to_dead_letter_queue(
        self, target: str, event: QueuedEvent, status: int, error: str
    ) -> bool:
        """Send the failed event to the function's DeadLetterConfig queue or topic as
        Lambda does: the event as the body (message), RequestID / ErrorCode / ErrorMessage
        as message attributes. False if ``target`` is no queue or topic of this nimbus."""
        attributes = {
            "RequestID": {"DataType": "String", "StringValue": event.request_id},
            "ErrorCode": {"DataType": "Number", "StringValue": str(status)},
            "ErrorMessage": {"DataType": "String", "StringValue": error[:1024] or "error"},
        }
        if self.sns is not None and self.sns.arns.is_topic(target):
            if await self.publish(target, event.payload, attributes, event.trace_id):
                self.counters["dead_lettered"] += 1
                return True
            return False
        name = self.sqs.name_of_arn(target) if self.sqs is not None else None
        if self.sqs is None or name is None:
            return False
        try:
            await self.sqs.send(
                name, event.payload.decode("utf-8", "replace"), message_attributes=attributes
            )
        except NimbusError as exc:
            log.warning("dead-letter queue %s refused the event: %s", target, exc.message)
            return False
        self.counters["dead_lettered"] += 1
        return True

    async def _dead_letter(
        self, lease: Lease, queue: str, condition: str, error: str | None, attempts: int
    ) -> None:
        event = lease.event
        letter = DeadLetter(
            queue=queue,
            function_name=event.function_name,
            qualifier=event.qualifier,
            request_id=event.request_id,
            payload=event.payload.decode("utf-8", "replace"),
            condition=condition,
            error=error,
            attempts=attempts,
            enqueued_ms=event.enqueued_ms,
            failed_ms=self.clock(),
        )
        await blocking(self.dead_letters.add, letter)
        self.counters["dead_lettered"] += 1

    async def _deliver(self, target: str, record: dict, event: QueuedEvent) -> bool:
        """Send an invocation record; True once it is durably handed over."""
        try:
            destination: Destination = parse_destination(target, self.config)
        except NimbusError:
            return False
        body = json.dumps(record).encode()
        # The destination is a hop of the trace: the next one's Parent.
        hop = self._hops.get(id(event))
        trace = hop.destination(destination, record) if hop is not None else event.trace_id
        if destination.queue is not None:
            if self.sqs is None:
                return False
            try:
                await self.sqs.send(destination.queue, body.decode(), trace_header=trace)
            except NimbusError as exc:
                log.warning("destination queue %s refused: %s", destination.raw, exc.message)
                return False
            return True
        if destination.topic is not None:
            return await self.publish(destination.topic, body, {}, trace)
        if destination.function is not None:
            await self.enqueue(
                destination.function,
                destination.qualifier,
                body,
                trace_id=trace,
            )
            return True
        assert self._http is not None and destination.url is not None
        for attempt in range(3):
            try:
                async with self._webhooks:
                    response = await post_webhook(
                        self._http,
                        destination.url,
                        body,
                        {
                            "Content-Type": "application/json",
                            "X-Amz-Request-Id": event.request_id,
                            **({"X-Amzn-Trace-Id": trace} if trace else {}),
                        },
                        self.config,
                    )
                if response.status_code < 300:
                    return True
                log.warning("webhook %s answered %d", destination.url, response.status_code)
            except EgressRefused as exc:  # the same answer on every try
                log.warning("webhook destination not delivered: %s", exc)
                return False
            except httpx.HTTPError as exc:
                log.warning("webhook %s failed: %r", destination.url, exc)
            await asyncio.sleep(0.2 * (2**attempt))
        return False

    async def publish(
        self, topic_arn: str, payload: bytes, attributes: dict[str, dict], trace: str | None
    ) -> bool:
        """Publish ``payload`` to a topic of this nimbus; True once it is stored."""
        if self.sns is None:
            return False
        try:
            publication = check_publication(
                payload.decode("utf-8", "replace") or "{}", None, None, attributes,
                trace_header=trace,
            )
            await self.sns.publish(topic_arn, [publication])
        except NimbusError as exc:
            log.warning("topic %s refused a message: %s", topic_arn, exc.message)
            return False
        return True

    async def redrive(self, letter_id: int) -> str:
        """Queue a dead letter's event again (as a new invocation); returns its id."""
        letter = await blocking(self.dead_letters.get, letter_id)
        if letter.redriven_ms is not None:
            raise ResourceConflict(f"Dead letter {letter_id} was already re-driven.")
        # Queue first, then mark: a crash in between re-drives twice, never zero times.
        request_id = await self.enqueue(
            letter.function_name,
            letter.qualifier,
            letter.payload.encode(),
        )
        await blocking(self.dead_letters.mark_redriven, letter_id, self.clock())
        return request_id
