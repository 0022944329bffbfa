"""The schedule runner: fires each due tick of every enabled schedule exactly once, by
queuing an asynchronous invocation of its target on nimbus' durable queue (EventBridge
Scheduler invokes Lambda asynchronously too).

Exactly once across processes, from two parts:

- one ownership lease (``scheduler``) for the whole runner: the process holding it scans
  and fires; the others stand by and take over within the lease's TTL when it dies. One
  lease rather than one per schedule: firing is one queue write (the invocations
  themselves spread over the dispatcher and its workers), and one lease costs one renewal
  per interval instead of one per schedule.
- a compare-and-set claim on the schedule's row (``ScheduleStore.claim``): a tick fires
  only for the process that moved ``last_tick_ms`` to it, so even two runners that both
  believe they hold the lease (a paused owner whose lease ran out) cannot both fire it.

A claimed tick stays ``pending`` until its event is queued; a runner that finds one
pending (its previous owner crashed in between) queues it again, with the same request
id: at least once, never lost. ``last_tick_ms`` survives restarts, so a restart neither
fires again nor bursts: however many ticks were missed while nimbus was down, the
schedule fires once, for the latest of them.

Scheduler's RetryPolicy and DeadLetterConfig govern *delivery* to the target, as on AWS
(where "delivered" means Lambda accepted the async invoke): here, queuing the event. A
target that cannot be queued (its function does not exist, or cannot run) is retried
with exponential backoff up to MaximumRetryAttempts within MaximumEventAgeInSeconds,
then sent to the DeadLetterConfig queue. Once queued, the function's own
EventInvokeConfig (retries, max age, destinations, its DLQ) applies, as on Lambda.

Time comes from an injectable clock; the runner sleeps until the next tick is due (or
its lease needs renewing) and wakes early when a schedule changes in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from nimbus.clock import Clock, now_ms
from nimbus.config import FUNCTION_ARN, Config
from nimbus.errors import NimbusError
from nimbus.events.dispatcher import Dispatcher
from nimbus.events.sources.schedule_expressions import Timing, parse, zone
from nimbus.invocation.invoker import Invoker
from nimbus.observe.tracing import SCHEDULE_ORIGIN, Caller, calling
from nimbus.sqs.queues import Queues
from nimbus.store.database import Database
from nimbus.store.leases import LeaseStore
from nimbus.store.schedules import Schedule, ScheduleStore
from nimbus.threads import blocking

log = logging.getLogger("nimbus.events.scheduler")

LEASE_KEY = "scheduler"
LEASE_TTL_MS = 30_000
# Scheduler's defaults when a target has no RetryPolicy (AWS: 185 attempts, 24 hours).
DEFAULT_RETRY_ATTEMPTS = 185
DEFAULT_EVENT_AGE_S = 86_400
MAX_RETRY_DELAY_MS = 5 * 60_000

# Queue an async invocation: (function, qualifier, payload, request id).
Deliver = Callable[[str, str | None, bytes, str], Awaitable[object]]
# Send a dead-letter event: (queue ARN, body, SQS message attributes).
DeadLetterSend = Callable[[str, str, dict[str, dict[str, str]]], Awaitable[object]]
# How far into its flexible window (ms, below the window) a tick fires.
Jitter = Callable[[Schedule, int, int], int]


def schedule_arn(region: str, account_id: str, group: str, name: str) -> str:
    return f"arn:aws:scheduler:{region}:{account_id}:schedule/{group}/{name}"


def timing_of(schedule: Schedule) -> Timing:
    """When ``schedule`` fires (its expression was validated when it was stored)."""
    return Timing(
        parse(schedule.expression),
        zone(schedule.timezone),
        schedule.anchor_ms,
        schedule.start_ms,
        schedule.end_ms,
    )


def seeded_jitter(schedule: Schedule, tick_ms: int, window_ms: int) -> int:
    """A point in the window that every process computes alike for one tick (so a
    restart or a takeover keeps it), spread over the window from tick to tick."""
    return random.Random(f"{schedule.key}@{tick_ms}").randrange(window_ms)


def render_input(template: str | None, arn: str, tick_ms: int, execution_id: str,
                 attempt: int) -> str:  # fmt: skip
    """The target's Input with Scheduler's context attributes filled in; ``{}`` when the
    target has no Input (what Scheduler passes a Lambda function then)."""
    if template is None:
        return "{}"
    scheduled = datetime.fromtimestamp(tick_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for key, value in (
        ("schedule-arn", arn),
        ("scheduled-time", scheduled),
        ("execution-id", execution_id),
        ("attempt-number", str(attempt)),
    ):
        template = template.replace(f"<aws.scheduler.{key}>", value)
    return template


@dataclass
class _Retry:
    tick_ms: int
    attempts: int  # deliveries tried so far
    next_ms: int
    error: NimbusError | Exception


class ScheduleRunner:
    """Fires due schedules in this process while it holds the scheduler lease."""

    def __init__(
        self,
        store: ScheduleStore,
        leases: LeaseStore,
        deliver: Deliver,
        *,
        region: str,
        account_id: str,
        clock: Clock = now_ms,
        dead_letter: DeadLetterSend | None = None,
        jitter: Jitter = seeded_jitter,
        owner: str | None = None,
        lease_ttl_ms: int = LEASE_TTL_MS,
        retry_base_ms: int = 1_000,
    ) -> None:
        self.store = store
        self.leases = leases
        self.deliver = deliver
        self.region, self.account_id = region, account_id
        self.clock = clock
        self.dead_letter = dead_letter
        self.jitter = jitter
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease_ttl_ms = lease_ttl_ms
        self.retry_base_ms = retry_base_ms
        self._retries: dict[str, _Retry] = {}
        self._wake = asyncio.Event()
        # One pass at a time: a pass takes a pending tick for a crashed owner's leftover,
        # which a pass running alongside it may be delivering right now.
        self._passing = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self.fired = 0  # ticks this runner queued, since start

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.store.on_change(self.wake)
        self._task = asyncio.create_task(self._run(), name="schedule-runner")

    async def close(self) -> None:
        self.store.off_change(self.wake)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        # Handed over now, so another process need not wait for the lease to expire.
        await blocking(self.leases.release, LEASE_KEY, self.owner)

    def wake(self) -> None:
        """Look at the schedules again now (from any thread): one changed, or a test
        moved the clock."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                delay_ms = await self.run_pass()
            except Exception:  # the store is unreachable for a moment: try again later
                log.exception("schedule runner pass failed")
                delay_ms = self.lease_ttl_ms // 3
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(delay_ms, 0) / 1000)

    # -- one pass --------------------------------------------------------------------------

    async def run_pass(self) -> int:
        """Fire what is due now (if this process holds the lease); the ms until the next
        pass is needed."""
        async with self._passing:
            return await self._pass()

    async def _pass(self) -> int:
        renew_ms = self.lease_ttl_ms // 3
        if not await blocking(self.leases.acquire, LEASE_KEY, self.owner, self.lease_ttl_ms):
            self._retries.clear()  # the new owner retries what is pending
            return renew_ms
        now = self.clock()
        wake_at = now + renew_ms
        renewed_at = now
        for schedule in await blocking(self.store.enabled):
            if self.clock() - renewed_at >= renew_ms:
                # A long pass: keep the lease before each further delivery, or stop,
                # so a process that took it over meanwhile is never doubled.
                if not await blocking(
                    self.leases.acquire, LEASE_KEY, self.owner, self.lease_ttl_ms
                ):
                    self._retries.clear()
                    return renew_ms
                renewed_at = self.clock()
            try:
                due = await self._visit(schedule, now)
            except Exception:
                log.exception("schedule %s failed", schedule.key)
                continue
            if due is not None:
                wake_at = min(wake_at, due)
        return max(wake_at - self.clock(), 0)

    async def _visit(self, schedule: Schedule, now: int) -> int | None:
        """Fire ``schedule`` if due; when it is due next (None: never again)."""
        if schedule.pending_tick_ms is not None:
            tick = schedule.pending_tick_ms
            return await self._attempt(schedule, tick, now) or self._due(schedule, tick)
        timing = timing_of(schedule)
        last = schedule.last_tick_ms
        first = timing.next_after(last)
        if first is None:
            return None  # no tick left (a one-time schedule that fired, an EndDate)
        window_ms = (schedule.flexible_window_minutes or 0) * 60_000
        # Ticks whose whole window closed unfired (nimbus was down): fire once, now, for
        # the latest tick so far, never one by one.
        overdue = timing.latest_due(last, now - window_ms)
        if overdue is not None and overdue != first:
            tick = timing.latest_due(last, now) or overdue
        else:
            tick = first
            fire_at = self._fire_at(schedule, tick)
            if fire_at > now:
                return fire_at
        if not await blocking(self.store.claim, schedule, tick):
            return now  # another process or an update moved it on: look again
        schedule.last_tick_ms = schedule.pending_tick_ms = tick
        return await self._attempt(schedule, tick, now) or self._due(schedule, tick)

    def _fire_at(self, schedule: Schedule, tick: int) -> int:
        """When a tick fires: at once, or at its point of a flexible window."""
        window_ms = (schedule.flexible_window_minutes or 0) * 60_000
        return tick + (self.jitter(schedule, tick, window_ms) if window_ms else 0)

    def _due(self, schedule: Schedule, after: int) -> int | None:
        tick = timing_of(schedule).next_after(after)
        return None if tick is None else self._fire_at(schedule, tick)

    def _arn(self, schedule: Schedule) -> str:
        return schedule_arn(self.region, self.account_id, schedule.group, schedule.name)

    async def _attempt(self, schedule: Schedule, tick: int, now: int) -> int | None:
        """Queue the event of a claimed tick (or wait for its next retry)."""
        retry = self._retries.get(schedule.key)
        if retry is not None and retry.tick_ms != tick:
            retry = None
        if retry is not None and retry.next_ms > now:
            return retry.next_ms
        attempts = retry.attempts if retry else 0
        target = schedule.target
        arn = self._arn(schedule)
        request_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{arn}@{tick}"))
        payload = render_input(target.get("Input"), arn, tick, request_id, attempts + 1)
        try:
            match = FUNCTION_ARN.fullmatch(target["Arn"])
            if match is None:  # the API accepts only function ARNs; an old row, say
                raise NimbusError(f"{target['Arn']} is not a Lambda function ARN")
            # Each tick starts a trace of its own, the schedule its first hop.
            with calling(Caller(SCHEDULE_ORIGIN, f"{schedule.group}/{schedule.name}",
                                detail={"schedule_arn": arn})):
                await self.deliver(match["name"], match["qualifier"], payload.encode(),
                                   request_id)
        except Exception as exc:  # any failure to queue is a failed delivery
            return await self._failed(schedule, tick, now, attempts + 1, payload, exc)
        self._retries.pop(schedule.key, None)
        self.fired += 1
        await self._settle(schedule, tick)
        return None

    async def _settle(self, schedule: Schedule, tick: int) -> None:
        # ActionAfterCompletion DELETE: once the last tick fired (an at() schedule's one,
        # or the last before EndDate), the schedule goes.
        delete_it = (
            schedule.action_after_completion == "DELETE"
            and timing_of(schedule).next_after(tick) is None
        )
        await blocking(self.store.settle, schedule, tick, delete_it)

    async def _failed(self, schedule: Schedule, tick: int, now: int, attempts: int,
                      payload: str, error: Exception) -> int | None:  # fmt: skip
        policy = schedule.target.get("RetryPolicy") or {}
        max_retries = policy.get("MaximumRetryAttempts", DEFAULT_RETRY_ATTEMPTS)
        max_age_ms = policy.get("MaximumEventAgeInSeconds", DEFAULT_EVENT_AGE_S) * 1000
        delay = min(self.retry_base_ms * 2 ** (attempts - 1), MAX_RETRY_DELAY_MS)
        exhausted = (
            "MaximumRetryAttempts" if attempts > max_retries
            else "MaximumEventAgeInSeconds" if now + delay - tick > max_age_ms
            else None
        )  # fmt: skip
        if exhausted is None:
            log.info("schedule %s: delivery failed (%s), retrying", schedule.key, error)
            self._retries[schedule.key] = _Retry(tick, attempts, now + delay, error)
            return now + delay
        self._retries.pop(schedule.key, None)
        await self._dead_letter(schedule, payload, error, exhausted, attempts - 1)
        await self._settle(schedule, tick)
        return None

    async def _dead_letter(self, schedule: Schedule, payload: str, error: Exception,
                           condition: str, retries: int) -> None:  # fmt: skip
        queue_arn = (schedule.target.get("DeadLetterConfig") or {}).get("Arn")
        code = getattr(error, "type_name", type(error).__name__)
        message = getattr(error, "message", str(error))
        if not queue_arn or self.dead_letter is None:
            log.warning(
                "schedule %s: event dropped after %s (%s: %s); give the target a "
                "DeadLetterConfig to keep such events", schedule.key, condition, code, message,
            )
            return
        attributes = {
            "ERROR_CODE": {"DataType": "String", "StringValue": str(code)},
            "ERROR_MESSAGE": {"DataType": "String", "StringValue": str(message)[:1000]},
            "EXHAUSTED_RETRY_CONDITION": {"DataType": "String", "StringValue": condition},
            "RETRY_ATTEMPTS": {"DataType": "Number", "StringValue": str(retries)},
            "SCHEDULE_ARN": {"DataType": "String", "StringValue": self._arn(schedule)},
            "TARGET_ARN": {"DataType": "String", "StringValue": schedule.target["Arn"]},
        }
        try:
            await self.dead_letter(queue_arn, payload, attributes)
        except Exception:
            log.exception("schedule %s: dead-letter queue %s refused the event",
                          schedule.key, queue_arn)  # fmt: skip


def sqs_dead_letter(queues: Queues) -> DeadLetterSend:
    """Send dead-letter events through nimbus' SQS queues (``engine.sqs``)."""

    async def send(queue_arn: str, body: str, attributes: dict[str, dict[str, str]]) -> None:
        info = await queues.get_by_arn(queue_arn)
        await queues.send(info.name, body, message_attributes=dict(attributes))

    return send


def lambda_delivery(invoker: Invoker, dispatcher: Dispatcher) -> Deliver:
    """Queue an async invocation as InvocationType=Event does: the function must exist
    and be able to run (else the delivery fails and is retried), then it is queued
    durably, with the tick's request id."""

    async def deliver(name: str, qualifier: str | None, payload: bytes, request_id: str) -> str:
        await invoker.dry_run(name, qualifier)
        return await dispatcher.enqueue(name, qualifier, payload, None, request_id)

    return deliver


def open_runner(config: Config, db: Database, invoker: Invoker, dispatcher: Dispatcher,
                queues: Queues) -> ScheduleRunner:  # fmt: skip
    """The runner of a nimbus server, over its store, queue and SQS queues."""
    return ScheduleRunner(
        ScheduleStore(db),
        LeaseStore(db),
        lambda_delivery(invoker, dispatcher),
        region=config.region,
        account_id=config.account_id,
        dead_letter=sqs_dead_letter(queues),
    )

