"""S3 bucket notifications: an object created or removed in a bucket whose notification
configuration matches it runs the configured function (an async invoke, with Lambda's
S3 event), sends the event to the configured SQS queue, or publishes it to the
configured SNS topic (the event document as the message, Subject "Amazon S3 Notification").

Nothing accepted is lost, from two parts:

- an outbox: the notifications an object change raises are rows of ``s3_notifications``
  written in the very transaction of the change (``staged``, an ``ObjectListener`` of
  the S3 store), so a change never commits without them, nor they without it;
- a deliverer: the process holding the ``s3-notifications`` lease hands each row on,
  oldest first, to the durable async path (``Dispatcher.enqueue``: the function's
  retries, maximum age, destinations and dead letters apply, as for any async invoke)
  or to the queue (``Queues.send``) or topic (``Topics.publish``), and deletes it once
  that is committed. A crash in between hands it on again: at least once, as S3
  delivers (the ``sequencer`` orders the events of one key).

A function that cannot take the event (deleted, not runnable) is retried with
exponential backoff, then dead-lettered (``nimbus dead-letters``, queue ``s3``); a queue
or topic that does not exist (any more) is retried with the same backoff until it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import uuid
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from nimbus.clock import Clock, now_ms
from nimbus.config import FUNCTION_ARN
from nimbus.errors import NimbusError
from nimbus.events.dispatcher import Dispatcher
from nimbus.invocation.invoker import Invoker
from nimbus.models import DeadLetter
from nimbus.s3 import notifications
from nimbus.s3.records import ObjectEvent
from nimbus.s3.tables import s3_buckets, s3_notifications
from nimbus.sns.notifications import Publication
from nimbus.sns.topics import Topics
from nimbus.sqs.queues import Queues
from nimbus.store.database import Database
from nimbus.store.dead_letters import DeadLetterStore
from nimbus.store.leases import LeaseStore
from nimbus.threads import blocking

log = logging.getLogger("nimbus.events.buckets")

LEASE_KEY = "s3-notifications"
LEASE_TTL_MS = 30_000
BATCH = 100
MAX_FUNCTION_ATTEMPTS = 10  # then a dead letter (about 10 minutes of backoff)
FIRST_DELAY_MS = 1_000
MAX_DELAY_MS = 5 * 60_000
DEAD_LETTER_QUEUE = "s3"
N = s3_notifications.c


_ROW_KIND = {notifications.LAMBDA: "lambda", notifications.QUEUE: "queue",
             notifications.TOPIC: "topic"}  # fmt: skip


class BucketNotifier:
    """See the module docstring: ``staged``/``committed`` are the S3 store's listener;
    ``start``/``close`` run the deliverer."""

    def __init__(
        self,
        db: Database,
        invoker: Invoker,
        dispatcher: Dispatcher,
        queues: Queues,
        dead_letters: DeadLetterStore,
        *,
        region: str,
        account_id: str,
        topics: Topics | None = None,
        clock: Clock = now_ms,
    ) -> None:
        self.db = db
        self.topics = topics  # SNS topics (TopicConfigurations); None: none to publish to
        self.invoker = invoker
        self.dispatcher = dispatcher
        self.queues = queues
        self.dead_letters = dead_letters
        self.region = region
        self.owner_id = account_id
        self.clock = clock
        self.leases = LeaseStore(db, clock)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0  # handed on since start (for tests and metrics)

    # -- the store's listener (runs in the writing thread) -------------------------------

    def staged(self, conn: Connection, event: ObjectEvent) -> None:
        configuration = conn.execute(
            select(s3_buckets.c.notification).where(s3_buckets.c.name == event.bucket)
        ).scalar()
        if not configuration:
            return
        targets = notifications.targets(configuration, event)
        if not targets:
            return
        now = self.clock()
        rows = []
        for target in targets:
            record = notifications.record(event, target, region=self.region, owner=self.owner_id)
            rows.append(
                {
                    "bucket": event.bucket,
                    "kind": _ROW_KIND[target.kind],
                    "target": target.arn,
                    "request_id": str(uuid.uuid4()),
                    "payload": json.dumps({"Records": [record]}, separators=(",", ":")),
                    "created_ms": now,
                    "attempts": 0,
                    "not_before_ms": now,
                    "last_error": None,
                }
            )
        conn.execute(insert(s3_notifications), rows)

    def committed(self, event: ObjectEvent) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    # -- the deliverer ------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await blocking(self.leases.release, LEASE_KEY, self.owner)

    async def _run(self) -> None:
        held = False
        renew_at = 0
        while True:
            self._wake.clear()
            wait_s = LEASE_TTL_MS / 3000
            try:
                now = self.clock()
                if now >= renew_at:
                    held = await blocking(self.leases.acquire, LEASE_KEY, self.owner, LEASE_TTL_MS)
                    renew_at = now + LEASE_TTL_MS // 3
                if held:
                    due_in = await self._drain()
                    if due_in is not None:
                        wait_s = min(wait_s, max(due_in, 0) / 1000)
            except asyncio.CancelledError:
                raise
            except Exception:  # the store away for a moment: try again shortly
                log.exception("delivering S3 notifications failed; retrying")
                wait_s = 1.0
            if wait_s > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait_s)

    async def _drain(self) -> int | None:
        """Hand on what is due; ms until the next row is due (None: nothing waits)."""
        while True:
            now = self.clock()
            rows = await blocking(self._due, now)
            for row in rows:
                try:
                    await self._deliver(row)
                except NimbusError as exc:
                    await self._failed(row, exc.message)
                except (OSError, ValueError) as exc:
                    await self._failed(row, str(exc))
                except Exception as exc:  # one row's surprise must not block the rows behind
                    log.exception("S3 notification %s for %s failed", row.id, row.target)
                    await self._failed(row, repr(exc))
                else:
                    await blocking(self._done, row.id)
                    self.delivered += 1
            if len(rows) < BATCH:
                break
        following = await blocking(self._next_due)
        return None if following is None else following - self.clock()

    def _due(self, now: int) -> list[Any]:
        with self.db.read() as conn:
            return list(
                conn.execute(
                    select(s3_notifications)
                    .where(N.not_before_ms <= now)
                    .order_by(N.id)
                    .limit(BATCH)
                )
            )

    def _next_due(self) -> int | None:
        with self.db.read() as conn:
            found = conn.execute(select(func.min(N.not_before_ms))).scalar()
        return int(found) if found is not None else None

    def _done(self, row_id: int) -> None:
        with self.db.write() as conn:
            conn.execute(delete(s3_notifications).where(N.id == row_id))

    async def _deliver(self, row: Any) -> None:
        if row.kind == "lambda":
            match = FUNCTION_ARN.fullmatch(row.target)
            if match is None:
                raise ValueError(f"not a function ARN: {row.target}")
            name, qualifier = match["name"], match["qualifier"]
            await self.invoker.dry_run(name, qualifier)  # exists and can run, or retried
            await self.dispatcher.enqueue(
                name, qualifier, row.payload.encode(), None, row.request_id
            )
            return
        if row.kind == "topic":
            if self.topics is None:
                raise ValueError(f"no SNS topics to publish to: {row.target}")
            # As S3 publishes: the event document as the message, retried until the topic
            # took it (a topic deleted meanwhile fails as TopicNotFound, and is retried).
            await self.topics.publish(
                row.target, [Publication(row.payload, subject=notifications.SNS_SUBJECT)]
            )
            return
        queue = self.queues.name_of_arn(row.target)
        if queue is None:
            raise ValueError(f"not a queue of this nimbus: {row.target}")
        await self.queues.send(queue, row.payload)

    async def _failed(self, row: Any, reason: str) -> None:
        attempts = row.attempts + 1
        if row.kind == "lambda" and attempts >= MAX_FUNCTION_ATTEMPTS:
            match = FUNCTION_ARN.fullmatch(row.target)
            name, qualifier = (match["name"], match["qualifier"]) if match else (row.target, None)
            letter = DeadLetter(
                queue=DEAD_LETTER_QUEUE,
                function_name=name,
                qualifier=qualifier,
                request_id=row.request_id,
                payload=row.payload,
                condition="S3NotificationFailed",
                error=reason,
                attempts=attempts,
                enqueued_ms=row.created_ms,
                failed_ms=self.clock(),
            )
            await blocking(self.dead_letters.add, letter)
            await blocking(self._done, row.id)
            log.warning("S3 notification %s for %s dead-lettered: %s", row.id, row.target, reason)
            return
        delay = min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** (attempts - 1))
        log.warning(
            "S3 notification %s for %s not delivered (attempt %d, again in %d s): %s",
            row.id, row.target, attempts, delay // 1000, reason,
        )  # fmt: skip
        await blocking(self._retry_later, row.id, attempts, self.clock() + delay, reason)

    def _retry_later(self, row_id: int, attempts: int, not_before: int, reason: str) -> None:
        with self.db.write() as conn:
            conn.execute(
                update(s3_notifications)
                .where(N.id == row_id)
                .values(attempts=attempts, not_before_ms=not_before, last_error=reason[:2000])
            )
