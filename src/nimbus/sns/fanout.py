"""The fan-out: hands what Publish stored to each endpoint, and deletes it once handed.

Runs in the server (``Node``). It claims due deliveries from the outbox, a bounded number
in flight, and sends each: to a function through the durable async queue (the same path
as an async Invoke: its retries, destinations and dead-letter config then apply), to an
SQS queue of this nimbus, or as an http(s) POST (through ``nimbus.net_policy``: this
host's loopback, link-local and private addresses only where ``webhook_allow`` lists them,
no redirects followed; a refused endpoint is a client-side failure). Publishes in this
process wake it at once; those of other processes (async workers publishing to
destinations) are seen at the next re-check.

Failures are sorted as SNS sorts them. A client-side one (the function or queue no
longer exists, the queue refuses the message) is not retried. A server-side one is
retried: for functions and queues with SNS's policy for AWS endpoints (3 at once, 2 after
a second, 10 backing off to 20 s, then every 20 s), for http(s) with the topic's or
subscription's DeliveryPolicy (SNS's default: 3 retries, 20 s apart). What is not
delivered in the end goes to the subscription's RedrivePolicy queue; without one, a
function's event goes to nimbus's dead-letter store (``nimbus dead-letters``, re-drivable)
and any other delivery stays in the outbox marked failed, with the reason, and is logged.
A crash mid-delivery leaves its claim to lapse and the delivery is made again: at least
once, never lost.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from nimbus.clock import Clock, now_ms
from nimbus.errors import NimbusError, QueueDoesNotExist, ResourceNotFound, SqsError
from nimbus.models import DeadLetter
from nimbus.net_policy import EgressPolicy, EgressRefused, request
from nimbus.sns.attributes import retry_delay
from nimbus.sns.topic_store import Delivery
from nimbus.sns.topics import Topics
from nimbus.sqs.queues import Queues
from nimbus.store.dead_letters import DeadLetterStore
from nimbus.threads import blocking

log = logging.getLogger("nimbus.sns")

# Hands a function its event through the async queue: (name, qualifier, payload, trace
# header) -> request id; ResourceNotFound when there is no such function.
LambdaSink = Callable[[str, str | None, bytes, str | None], Awaitable[str]]

IN_FLIGHT = 64
RECHECK_S = 0.5
HOLD_MS = 60_000  # a claim lapses after this (its holder died): the delivery is made again
HTTP_TIMEOUT_S = 15.0
# SNS's retry policy for AWS-managed endpoints (functions, queues), in DeliveryPolicy terms.
MANAGED_RETRY = {
    "numRetries": 100_015, "numNoDelayRetries": 3, "numMinDelayRetries": 2,
    "minDelayTarget": 1, "maxDelayTarget": 20, "numMaxDelayRetries": 100_000,
    "backoffFunction": "exponential",
}  # fmt: skip
DEAD_LETTER_QUEUE = "sns"  # the dead-letter store's name for what a topic could not deliver


class ClientSide(Exception):
    """The endpoint cannot take it (gone, or refuses it): retrying would not help."""


class Fanout:
    """This server's fan-out loop (see the module docstring)."""

    def __init__(
        self,
        topics: Topics,
        sqs: Queues,
        to_lambda: LambdaSink,
        dead_letters: DeadLetterStore,
        *,
        recover: bool,
        egress: EgressPolicy | None = None,
        clock: Clock = now_ms,
    ) -> None:
        self.topics = topics
        self.store = topics.store
        self.sqs = sqs
        self.to_lambda = to_lambda
        self.dead_letters = dead_letters
        self.recover = recover  # the only process on this store: claims it finds are stale
        self.clock = clock
        # Where http(s) subscriptions may post: public addresses and what the operator
        # allows (webhook_allow), never this host's loopback or private networks else.
        self.egress = egress or EgressPolicy()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None
        self.delivered = 0  # since start, for tests and stats

    async def start(self) -> None:
        if self.recover:
            released = await blocking(self.store.recover, self.clock())
            if released:
                log.warning("re-delivering %d SNS messages in flight at the last stop", released)
        self._http = httpx.AsyncClient(timeout=HTTP_TIMEOUT_S, follow_redirects=False)
        self.topics.on_owed = self.wake
        self._task = asyncio.get_running_loop().create_task(self._run())

    def wake(self) -> None:
        self._wakeup.set()

    async def close(self) -> None:
        self.topics.on_owed = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # Deliveries in flight are abandoned: their claims lapse and they are made again.
        for task in list(self._running):
            task.cancel()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # Cleared before looking: a publish or a finished delivery after this wakes
            # the wait below at once.
            self._wakeup.clear()
            free = IN_FLIGHT - len(self._running)
            claimed: list[Delivery] = []
            if free > 0:
                try:
                    claimed = await blocking(self.store.claim, self.clock(), HOLD_MS, free)
                except Exception:
                    log.exception("claiming SNS deliveries failed; retrying")
            for delivery in claimed:
                task = loop.create_task(self._deliver(delivery))
                self._running.add(task)
                task.add_done_callback(self._done)
            if free <= 0 or len(claimed) < free:  # else: more may be due at once
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), RECHECK_S)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wakeup.set()  # a slot is free
        if not task.cancelled() and task.exception() is not None:
            log.error("an SNS delivery failed unexpectedly", exc_info=task.exception())

    async def _deliver(self, delivery: Delivery) -> None:
        try:
            await self._send(delivery)
        except ClientSide as exc:
            await self._give_up(delivery, str(exc))
            return
        except Exception as exc:  # the endpoint or nimbus failed: retried
            reason = exc.message if isinstance(exc, NimbusError) else repr(exc)
            policy = delivery.extra.get("retry") or MANAGED_RETRY
            delay = retry_delay(policy, delivery.attempts + 1)
            if delay is None:
                await self._give_up(delivery, reason)
            else:
                log.info("SNS delivery to %s failed (%s); retrying in %.0fs",
                         delivery.endpoint, reason, delay)  # fmt: skip
                due = self.clock() + int(delay * 1000)
                await blocking(self.store.retry, delivery, due, reason)
                if delay == 0:
                    self.wake()
            return
        await blocking(self.store.done, delivery)
        self.delivered += 1

    async def _send(self, delivery: Delivery) -> None:
        protocol, extra = delivery.protocol, delivery.extra
        if protocol == "lambda":
            name, qualifier = _function(delivery.endpoint)
            try:
                await self.to_lambda(name, qualifier, delivery.body.encode(), extra.get("trace"))
            except ResourceNotFound as exc:
                raise ClientSide(exc.message) from exc
        elif protocol == "sqs":
            await self._to_queue(delivery.endpoint, delivery.body, extra.get("attributes"),
                                 extra.get("trace"), extra.get("group_id"))  # fmt: skip
        else:
            assert self._http is not None
            try:
                response = await request(
                    self._http, "POST", delivery.endpoint, self.egress,
                    content=delivery.body.encode(), headers=extra.get("headers"),
                )  # fmt: skip
            except EgressRefused as exc:  # the same answer every time: not retried
                raise ClientSide(str(exc)) from exc
            if not 200 <= response.status_code < 300:
                raise RuntimeError(f"{delivery.endpoint} answered HTTP {response.status_code}")

    async def _to_queue(
        self,
        queue_arn: str,
        body: str,
        attributes: dict[str, dict[str, str]] | None,
        trace: str | None,
        group_id: str | None = None,
    ) -> None:
        name = self.sqs.name_of_arn(queue_arn)
        if name is None:
            raise ClientSide(f"{queue_arn} is no queue of this nimbus")
        try:
            await self.sqs.send(name, body, message_attributes=_sqs_attributes(attributes),
                                trace_header=trace, group_id=group_id)  # fmt: skip
        except (QueueDoesNotExist, SqsError) as exc:
            raise ClientSide(f"queue {queue_arn}: {exc.message}") from exc

    async def _give_up(self, delivery: Delivery, reason: str) -> None:
        """Retries are over: the redrive queue, else a dead letter or a failed record."""
        extra = delivery.extra
        target = extra.get("dead_letter_arn")
        if target:
            body = extra.get("dead_letter_body", delivery.body)
            try:
                await self._to_queue(target, body, extra.get("attributes"), extra.get("trace"))
            except ClientSide as exc:
                log.warning("SNS redrive queue of %s refused a message: %s",
                            delivery.subscription_arn, exc)  # fmt: skip
            else:
                await blocking(self.store.done, delivery)
                return
        if delivery.protocol == "lambda":
            name, qualifier = _function(delivery.endpoint)
            now = self.clock()
            await blocking(self.dead_letters.add, DeadLetter(
                queue=DEAD_LETTER_QUEUE, function_name=name, qualifier=qualifier,
                request_id=delivery.message_id, payload=delivery.body,
                condition="SnsDeliveryFailed", error=reason, attempts=delivery.attempts + 1,
                enqueued_ms=delivery.created_ms, failed_ms=now,
            ))  # fmt: skip
            await blocking(self.store.done, delivery)
            return
        log.warning("SNS gave up delivering message %s to %s (%s): kept as failed in the "
                    "store", delivery.message_id, delivery.endpoint, reason)  # fmt: skip
        await blocking(self.store.retry, delivery, None, reason)


def _function(arn: str) -> tuple[str, str | None]:
    parts = arn.split(":")
    return parts[6], (parts[7] if len(parts) > 7 else None)


def _sqs_attributes(attributes: dict[str, Any] | None) -> dict[str, dict[str, Any]] | None:
    """SNS's message attributes as SQS takes them (binary values as bytes)."""
    if not attributes:
        return None
    out: dict[str, dict[str, Any]] = {}
    for name, attr in attributes.items():
        if "BinaryValue" in attr:
            out[name] = {"DataType": attr["DataType"],
                         "BinaryValue": base64.b64decode(attr["BinaryValue"])}  # fmt: skip
        else:
            out[name] = {"DataType": attr["DataType"], "StringValue": attr["StringValue"]}
    return out
