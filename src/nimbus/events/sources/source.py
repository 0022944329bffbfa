"""What an event source mapping polls: the contract between the mapping's poller (which
batches, filters, invokes, retries and reports) and one kind of source (the embedded
SQS-compatible queues, Redis Streams, RabbitMQ, NATS JetStream, MQTT).

A source hands out ``SourceRecord``s, each already in the shape the function sees in
``event["Records"]``, and settles them when the poller is done with them:

- ``ack``: processed (the function succeeded on it, a filter dropped it, or it went to
  the mapping's on-failure destination): the source forgets it (SQS DeleteMessage,
  Redis XACK, AMQP basic.ack, JetStream ack, MQTT PUBACK).
- ``release``: failed and to be delivered again later by the source itself (SQS: after
  its visibility timeout, up to the redrive policy's maxReceiveCount; AMQP nack with
  requeue; JetStream nak).

Two retry models, as on Lambda: a *queue* source (``retries_in_source = True``: SQS,
RabbitMQ, JetStream) retries by redelivery, so the poller releases what failed; a
*stream* source (``False``: Redis Streams, MQTT) is read in order and the poller
retries the batch itself (MaximumRetryAttempts, BisectBatchOnFunctionError,
MaximumRecordAgeInSeconds), then sends what still fails to DestinationConfig.OnFailure
and acks it so the stream moves on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class SourceRecord:
    """One message or stream entry, as handed to the function."""

    # The record in Lambda's shape for this source (e.g. SQS's messageId, receiptHandle,
    # body, attributes, messageAttributes, md5OfBody, eventSource, eventSourceARN,
    # awsRegion); ``event["Records"]`` is a list of these.
    record: dict[str, Any]
    # What the function names in ``batchItemFailures[].itemIdentifier`` for this record
    # (SQS: messageId; streams: the sequence number / entry id).
    item_id: str
    # When the source accepted the record, epoch ms: for MaximumRecordAgeInSeconds and
    # the IteratorAge / AgeOfOldestMessage figures.
    timestamp_ms: int
    # Opaque to the poller: what the source needs to ack or release this record.
    token: Any = field(default=None, repr=False)


@dataclass(frozen=True)
class SourceOptions:
    """What a source needs to know of its mapping to connect and shape records."""

    mapping_uuid: str  # names durable consumers / consumer groups: "nimbus-<uuid>"
    event_source_arn: str  # as the user gave it (an ARN or a broker URI)
    function_arn: str
    region: str
    batch_size: int
    # TRIM_HORIZON | LATEST | AT_TIMESTAMP for stream sources, None for queues.
    starting_position: str | None = None
    starting_position_timestamp_ms: int | None = None


class Source(Protocol):
    """One mapping's connection to its source; the poller owns its lifetime."""

    # True: failed records are released and the source redelivers them (queues).
    # False: the poller retries, bisects and finally acks them (streams).
    retries_in_source: bool

    async def open(self) -> None:
        """Connect (create the consumer group / durable consumer / subscription as the
        mapping's StartingPosition says). Raises ``SourceUnavailable`` with a message a
        user can act on when the source cannot be reached or does not exist."""

    async def receive(self, max_records: int, wait_seconds: float) -> list[SourceRecord]:
        """Up to ``max_records`` records, waiting at most ``wait_seconds`` for the first
        (returns what has arrived by then, possibly nothing)."""

    async def ack(self, records: list[SourceRecord]) -> None:
        """The poller is done with these records: never deliver them again."""

    async def release(self, records: list[SourceRecord]) -> None:
        """These records failed: deliver them again later (queue sources only)."""

    async def backlog(self) -> int | None:
        """How many records wait (for scaling and stats), or None if the source cannot
        tell."""

    async def close(self) -> None:
        """Disconnect; unsettled records go back to the source (redelivered later)."""
