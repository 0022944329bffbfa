"""``Queues``: SQS-compatible queues, one per process (``engine.sqs``), shared by the SQS
API, async destinations, dead-letter configs and event source mappings.

Blocking store work runs in worker threads (``nimbus.threads.blocking``). A receive
with ``wait_seconds`` long-polls: it returns as soon as a message arrives. A send in
this process wakes the queue's waiters at once; messages another process sent (an async
worker delivering a destination) or that become visible (a delay or visibility timeout
ending) are seen at the next re-check, every ``RECHECK_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from nimbus.clock import Clock, now_ms
from nimbus.errors import (
    InvalidAttributeName,
    PurgeQueueInProgress,
    QueueDoesNotExist,
    QueueNameExists,
    SqsError,
    SqsInvalidParameterValue,
)
from nimbus.sqs.attributes import RANGES, normalise, redrive_allow
from nimbus.sqs.message_store import MessageStore
from nimbus.sqs.messages import Message, Outgoing, QueueCounts, QueueInfo, SendResult
from nimbus.sqs.queue_rows import QueueRow, QueueRows
from nimbus.sqs.redrive import parse_queue_arn, parse_redrive_policy
from nimbus.sqs.send_groups import SendGroups
from nimbus.store.database import Database
from nimbus.threads import blocking

RECHECK_S = 0.2
PURGE_INTERVAL_MS = 60_000
MAX_RECEIVE = 10
_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")


@dataclass(frozen=True)
class QueueView:
    """A queue and its computed attributes, for GetQueueAttributes."""

    row: QueueRow
    counts: QueueCounts


class Queues:
    """The queues of this nimbus (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        *,
        region: str,
        account_id: str,
        base_url: str,
        clock: Clock = now_ms,
    ) -> None:
        self.rows = QueueRows(db, clock)
        self.messages = MessageStore(self.rows, clock)
        self._groups = SendGroups(self.messages.send_group)
        self.region = region
        self.account_id = account_id
        self.base_url = base_url.rstrip("/")
        self.clock = clock
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}

    # -- names, ARNs, URLs ------------------------------------------------------------------

    def arn(self, name: str) -> str:
        return f"arn:aws:sqs:{self.region}:{self.account_id}:{name}"

    def url(self, name: str, base_url: str | None = None) -> str:
        return f"{(base_url or self.base_url).rstrip('/')}/{self.account_id}/{name}"

    def name_of_arn(self, arn: str) -> str | None:
        """The queue an ARN names in this nimbus' region and account, else None."""
        parts = parse_queue_arn(arn)
        if parts is None or parts.region != self.region or parts.account != self.account_id:
            return None
        return parts.name

    def info(self, row: QueueRow, base_url: str | None = None) -> QueueInfo:
        settings = row.settings
        return QueueInfo(
            name=row.name,
            arn=self.arn(row.name),
            url=self.url(row.name, base_url),
            fifo=row.fifo,
            visibility_timeout=int(settings["VisibilityTimeout"]),
            attributes=dict(settings),
        )

    async def get(self, name: str) -> QueueRow:
        return await blocking(self.rows.get, name)

    async def get_by_arn(self, arn: str) -> QueueInfo:
        name = self.name_of_arn(arn)
        if name is None:
            raise QueueDoesNotExist()
        return self.info(await self.get(name))

    async def exists(self, name: str) -> bool:
        return await blocking(self.rows.find, name) is not None

    # -- queues -------------------------------------------------------------------------------

    async def create(
        self,
        name: str,
        attributes: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
    ) -> QueueRow:
        """CreateQueue: idempotent for the same attributes, QueueNameExists otherwise."""
        attributes = dict(attributes or {})
        fifo_queue = str(attributes.get("FifoQueue", "")).lower() == "true"
        check_name(name, fifo_queue)
        if "FifoQueue" in attributes and not fifo_queue:
            raise InvalidAttributeName("Unknown Attribute FifoQueue.")  # SQS's, for "false"
        stored = normalise(attributes, fifo=fifo_queue, creating=True)
        await self._check_redrive(name, fifo_queue, stored.get("RedrivePolicy"))
        row, created = await blocking(self.rows.create, name, fifo_queue, stored, tags or {})
        if not created:
            self._compare(row, stored)
        return row

    def _compare(self, row: QueueRow, wanted: dict[str, str]) -> None:
        current = row.settings
        for key, value in wanted.items():
            if current.get(key, "") != value:
                raise QueueNameExists(
                    "A queue already exists with the same name and a different value for "
                    f"attribute {key}"
                )

    async def delete_queue(self, name: str) -> None:
        await blocking(self.rows.delete_queue, name)
        self._wake(name)

    async def names(self, prefix: str = "") -> list[str]:
        return await blocking(self.rows.names, prefix)

    async def set_attributes(self, name: str, attributes: dict[str, str]) -> QueueRow:
        row = await self.get(name)
        stored = normalise(attributes, fifo=row.fifo, creating=False)
        stored.pop("FifoQueue", None)
        if "RedrivePolicy" in stored:
            await self._check_redrive(name, row.fifo, stored["RedrivePolicy"])
        return await blocking(self.rows.update, name, stored)

    async def _check_redrive(self, name: str, fifo_queue: bool, policy: str | None) -> None:
        if not policy:
            return
        parsed = parse_redrive_policy(policy)
        target = self.name_of_arn(parsed.dead_letter_target_arn)
        row = await blocking(self.rows.find, target) if target else None
        if row is None:
            raise SqsInvalidParameterValue(
                f"Value {policy} for parameter RedrivePolicy is invalid. Reason: Dead letter "
                "target does not exist."
            )
        if row.fifo != fifo_queue:
            raise SqsInvalidParameterValue(
                f"Value {policy} for parameter RedrivePolicy is invalid. Reason: Dead-letter "
                "queue must be same type of queue as the source.."
            )
        if not redrive_allow(row.attributes.get("RedriveAllowPolicy"), self.arn(name)):
            raise SqsInvalidParameterValue(
                f"Value {policy} for parameter RedrivePolicy is invalid. Reason: Queue "
                f"{parsed.dead_letter_target_arn} does not allow this queue to use it as its "
                "dead-letter queue (RedriveAllowPolicy)."
            )

    async def tag(self, name: str, tags: dict[str, str]) -> None:
        await blocking(self.rows.update, name, None, tags)

    async def untag(self, name: str, keys: Sequence[str]) -> None:
        await blocking(self.rows.update, name, None, None, list(keys))

    async def view(self, name: str) -> QueueView:
        row = await self.get(name)
        return QueueView(row, await blocking(self.rows.counts, name))

    async def counts(self, queue_name: str) -> QueueCounts:
        return await blocking(self.rows.counts, queue_name)

    async def purge(self, name: str) -> None:
        if not await blocking(self.rows.purge, name, PURGE_INTERVAL_MS):
            raise PurgeQueueInProgress(
                f"Only one PurgeQueue operation on {name} is allowed every 60 seconds."
            )

    # -- messages -------------------------------------------------------------------------------

    async def send_batch(
        self, name: str, entries: Sequence[Outgoing]
    ) -> list[SendResult | SqsError]:
        if self.messages.groups_sends(name):
            results = await self._groups.send(name, entries)
        else:
            results = await blocking(self.messages.send, name, entries)
        if any(isinstance(r, SendResult) for r in results):
            self._wake(name)
        return results

    async def send(
        self,
        queue_name: str,
        body: str,
        *,
        message_attributes: dict[str, dict] | None = None,
        delay_seconds: int | None = None,
        group_id: str | None = None,
        dedup_id: str | None = None,
        trace_header: str | None = None,
    ) -> str:
        """Send one message; its MessageId once committed."""
        return (
            await self.send_one(
                queue_name,
                Outgoing(body, message_attributes, delay_seconds, group_id, dedup_id, trace_header),
            )
        ).message_id

    async def send_one(self, name: str, entry: Outgoing) -> SendResult:
        (result,) = await self.send_batch(name, [entry])
        if isinstance(result, SqsError):
            raise result
        return result

    async def receive(
        self,
        queue_name: str,
        *,
        max_messages: int,
        visibility_timeout: int | None = None,
        wait_seconds: float = 0,
    ) -> list[Message]:
        """Up to ``max_messages`` (1-10) messages, made invisible for
        ``visibility_timeout`` seconds (default: the queue's); waits up to
        ``wait_seconds`` (0-20) for the first to arrive."""
        if not 1 <= max_messages <= MAX_RECEIVE:
            raise SqsInvalidParameterValue(
                f"Value {max_messages} for parameter MaxNumberOfMessages is invalid. Reason: "
                "Must be between 1 and 10, if provided."
            )
        if not 0 <= wait_seconds <= 20:
            raise SqsInvalidParameterValue(
                f"Value {wait_seconds} for parameter WaitTimeSeconds is invalid. Reason: Must "
                "be >= 0 and <= 20, if provided."
            )
        low, high = RANGES["VisibilityTimeout"]
        if visibility_timeout is not None and not low <= visibility_timeout <= high:
            raise SqsInvalidParameterValue(
                f"Value {visibility_timeout} for parameter VisibilityTimeout is invalid. "
                f"Reason: Must be >= {low} and <= {high}, if provided."
            )
        return await self.receive_many(
            queue_name,
            max_messages=max_messages,
            visibility_timeout=visibility_timeout,
            wait_seconds=wait_seconds,
        )

    async def receive_many(
        self,
        queue_name: str,
        *,
        max_messages: int,
        visibility_timeout: int | None = None,
        wait_seconds: float = 0,
    ) -> list[Message]:
        """``receive`` without SQS's limit of 10 messages (in process only: an event
        source mapping takes its whole batch in one store transaction); the arguments
        are the caller's to check."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        while True:
            # Registered before looking, so a send between the look and the wait wakes it.
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(queue_name, set()).add(waiter)
            try:
                messages = await blocking(
                    self.messages.receive, queue_name, max_messages, visibility_timeout
                )
                remaining = deadline - loop.time()
                if messages or remaining <= 0:
                    return messages
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter, min(remaining, RECHECK_S))
            finally:
                self._forget(queue_name, waiter)

    async def delete(self, queue_name: str, receipt_handles: list[str]) -> None:
        """Delete messages by receipt handle; the first refused handle's error is raised
        (the others are deleted)."""
        for result in await self.delete_batch(queue_name, receipt_handles):
            if result is not None:
                raise result

    async def delete_batch(self, name: str, handles: Sequence[str]) -> list[SqsError | None]:
        return await blocking(self.messages.delete, name, handles)

    async def change_visibility(self, queue_name: str, receipt_handle: str, timeout: int) -> None:
        (result,) = await self.change_visibility_batch(queue_name, [(receipt_handle, timeout)])
        if result is not None:
            raise result

    async def change_visibility_batch(
        self, name: str, changes: Sequence[tuple[str, int]]
    ) -> list[SqsError | None]:
        results = await blocking(self.messages.change_visibility, name, changes)
        if any(timeout == 0 for _, timeout in changes):
            self._wake(name)
        return results

    # -- long polling -----------------------------------------------------------------------------

    def _wake(self, name: str) -> None:
        for waiter in self._waiters.pop(name, set()):
            if not waiter.done():
                waiter.set_result(None)

    def _forget(self, name: str, waiter: asyncio.Future[None]) -> None:
        waiters = self._waiters.get(name)
        if waiters is not None:
            waiters.discard(waiter)
            if not waiters:
                self._waiters.pop(name, None)


def check_name(name: str, fifo_queue: bool) -> None:
    """Queue names as SQS allows them: [A-Za-z0-9_-]{1,80}, ".fifo" counted, iff FIFO."""
    if fifo_queue:
        if not name.endswith(".fifo") or not _NAME.fullmatch(name[:-5] + "_fifo"):
            raise SqsInvalidParameterValue(
                "The name of a FIFO queue can only include alphanumeric characters, hyphens, or "
                "underscores, must end with .fifo suffix and be 1 to 80 in length."
            )
    elif not _NAME.fullmatch(name):
        raise SqsInvalidParameterValue(
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length"
        )
