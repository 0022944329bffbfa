"""The embedded SQS-compatible queues as an event source: Lambda's SQS poller.

Records have Lambda's SQS event shape (messageId, receiptHandle, body, attributes,
messageAttributes in lower camel case, md5OfBody, eventSource ``aws:sqs``,
eventSourceARN, awsRegion). What the function processed is deleted; what failed is
left to become visible again when its visibility timeout runs out, so the queue's
redrive policy (maxReceiveCount -> dead-letter queue) applies, as on Lambda. While a
batch runs longer than the visibility timeout, its messages' timeout is extended, so a
slow batch is never delivered twice at once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from nimbus.errors import NimbusError, QueueDoesNotExist, SourceUnavailable
from nimbus.events.sources.source import SourceOptions, SourceRecord
from nimbus.sqs.messages import Message, QueueCounts, QueueInfo

log = logging.getLogger("nimbus.events.sources.sqs")
# Lambda reads up to 10 messages per ReceiveMessage; the embedded queues are in process,
# so a batch of up to BatchSize comes out of one store transaction (``receive_many``).
MAX_WAIT_S = 20.0  # SQS's longest long poll
HEARTBEAT_S = 1.0


class QueuesApi(Protocol):
    """What this source needs of ``nimbus.sqs.queues.Queues`` (the SQS contract)."""

    async def get_by_arn(self, arn: str) -> QueueInfo: ...

    async def receive(
        self,
        queue_name: str,
        *,
        max_messages: int,
        visibility_timeout: int | None = None,
        wait_seconds: float = 0,
    ) -> list[Message]: ...

    async def receive_many(
        self,
        queue_name: str,
        *,
        max_messages: int,
        visibility_timeout: int | None = None,
        wait_seconds: float = 0,
    ) -> list[Message]: ...

    async def delete(self, queue_name: str, receipt_handles: list[str]) -> None: ...

    async def change_visibility(
        self, queue_name: str, receipt_handle: str, timeout: int
    ) -> None: ...

    async def change_visibility_batch(
        self, name: str, changes: Sequence[tuple[str, int]]
    ) -> Sequence[NimbusError | None]: ...

    async def counts(self, queue_name: str) -> QueueCounts: ...


@dataclass
class _InFlight:
    deadline: float  # monotonic: when the message becomes visible again
    extended: bool = False


def lambda_message_attributes(attributes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """SQS API message attributes ({"DataType", "StringValue"|"BinaryValue"}) in the
    shape Lambda hands the function."""
    shaped: dict[str, Any] = {}
    for name, attr in attributes.items():
        entry: dict[str, Any] = {}
        if "StringValue" in attr:
            entry["stringValue"] = attr["StringValue"]
        if "BinaryValue" in attr:
            raw = attr["BinaryValue"]
            entry["binaryValue"] = (
                base64.b64encode(raw).decode() if isinstance(raw, (bytes, bytearray)) else raw
            )
        entry["stringListValues"] = list(attr.get("StringListValues", []))
        entry["binaryListValues"] = list(attr.get("BinaryListValues", []))
        entry["dataType"] = attr.get("DataType", "String")
        shaped[name] = entry
    return shaped


_ATTRIBUTE_ORDER = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SequenceNumber",
    "MessageGroupId",
    "SenderId",
    "MessageDeduplicationId",
    "ApproximateFirstReceiveTimestamp",
)


def lambda_record(message: Message, arn: str, region: str) -> dict[str, Any]:
    """One received message as a record of Lambda's SQS event."""
    attributes = {k: message.attributes[k] for k in _ATTRIBUTE_ORDER if k in message.attributes}
    if "AWSTraceHeader" in message.attributes:
        attributes["AWSTraceHeader"] = message.attributes["AWSTraceHeader"]
    record: dict[str, Any] = {
        "messageId": message.message_id,
        "receiptHandle": message.receipt_handle,
        "body": message.body,
        "attributes": attributes,
        "messageAttributes": lambda_message_attributes(message.message_attributes),
    }
    if message.md5_of_message_attributes:
        record["md5OfMessageAttributes"] = message.md5_of_message_attributes
    record.update(
        md5OfBody=message.md5_of_body,
        eventSource="aws:sqs",
        eventSourceARN=arn,
        awsRegion=region,
    )
    return record


class SqsSource:
    """One mapping's reader of one queue of this nimbus."""

    retries_in_source = True

    def __init__(
        self,
        options: SourceOptions,
        queues: QueuesApi,
        monotonic: Any = time.monotonic,
    ) -> None:
        self.options = options
        self.queues = queues
        self.monotonic = monotonic
        self.info: QueueInfo | None = None
        self._in_flight: dict[str, _InFlight] = {}
        self._heartbeat: asyncio.Task[None] | None = None

    @property
    def ordered(self) -> bool:
        """A FIFO queue: a failed batch takes what was received after it back too."""
        return self.info is not None and self.info.fifo

    @property
    def queue_name(self) -> str:
        assert self.info is not None, "open() first"
        return self.info.name

    async def open(self) -> None:
        try:
            self.info = await self.queues.get_by_arn(self.options.event_source_arn)
        except QueueDoesNotExist as exc:
            raise SourceUnavailable(
                f"The queue {self.options.event_source_arn} does not exist in this nimbus: "
                "create it, or delete this event source mapping."
            ) from exc
        self._heartbeat = asyncio.get_running_loop().create_task(self._extend_forever())

    async def receive(self, max_records: int, wait_seconds: float) -> list[SourceRecord]:
        info = self.info
        assert info is not None, "open() first"
        wait = min(max(0.0, wait_seconds), MAX_WAIT_S)
        # The timeout this source tracks, not whatever the queue says by the time the
        # receive runs (a SetQueueAttributes meanwhile): deadlines and extensions agree.
        messages = await self.queues.receive_many(
            info.name, max_messages=max(1, max_records), wait_seconds=wait,
            visibility_timeout=info.visibility_timeout,
        )
        deadline = self.monotonic() + info.visibility_timeout
        records = []
        for message in messages:
            self._in_flight[message.receipt_handle] = _InFlight(deadline)
            records.append(
                SourceRecord(
                    record=lambda_record(message, info.arn, self.options.region),
                    item_id=message.message_id,
                    timestamp_ms=message.sent_ms or int(message.attributes.get("SentTimestamp", 0)),
                    token=message.receipt_handle,
                )
            )
        return records

    async def ack(self, records: list[SourceRecord]) -> None:
        handles = [r.token for r in records]
        for handle in handles:
            self._in_flight.pop(handle, None)
        if handles:
            try:
                await self.queues.delete(self.queue_name, handles)
            except NimbusError as exc:
                # A handle that expired meanwhile: that message is delivered again
                # (at least once), the others are deleted.
                log.warning("deleting processed messages: %s", exc.message)

    async def release(self, records: list[SourceRecord]) -> None:
        """Failed: visible again after the queue's visibility timeout (counted from now
        if this source extended it), so its redrive policy applies."""
        assert self.info is not None
        extended = []
        for record in records:
            state = self._in_flight.pop(record.token, None)
            if state is not None and state.extended:
                extended.append((record.token, self.info.visibility_timeout))
        if extended:  # one transaction, whatever the batch size
            await self.queues.change_visibility_batch(self.info.name, extended)

    async def backlog(self) -> int | None:
        if self.info is None:
            return None
        counts = await self.queues.counts(self.info.name)
        return counts.visible

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        # Received but never settled: visible again now rather than after the timeout.
        unsettled, self._in_flight = list(self._in_flight), {}
        if self.info is not None and unsettled:
            with contextlib.suppress(NimbusError):
                await self.queues.change_visibility_batch(
                    self.info.name, [(handle, 0) for handle in unsettled]
                )

    async def _extend_forever(self) -> None:
        while True:
            timeout = self.info.visibility_timeout if self.info is not None else 30
            await asyncio.sleep(min(HEARTBEAT_S, max(0.1, timeout / 4)))
            try:
                await self.extend_due()
            except Exception:
                log.exception("extending the visibility of in-flight messages failed")

    async def extend_due(self) -> None:
        """Extend the visibility timeout of messages whose batch is still running and
        whose timeout is about to run out."""
        info = self.info
        if info is None:
            return
        timeout = info.visibility_timeout
        now = self.monotonic()
        margin = min(2.0, timeout / 2)  # two heartbeats ahead of the expiry
        if timeout == 0:
            return
        due = [(handle, state) for handle, state in list(self._in_flight.items())
               if state.deadline - now <= margin]
        if not due:
            return
        # One transaction for all of them: a batch of thousands must not take thousands.
        results = await self.queues.change_visibility_batch(
            info.name, [(handle, timeout) for handle, _ in due]
        )
        for (handle, state), result in zip(due, results, strict=True):
            if result is not None:
                self._in_flight.pop(handle, None)  # gone (deleted or expired)
            elif handle in self._in_flight:
                state.deadline = now + timeout
                state.extended = True
