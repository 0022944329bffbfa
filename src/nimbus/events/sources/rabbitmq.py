"""RabbitMQ (AMQP 0-9-1) queues as an event source, delivered like Lambda's Amazon MQ for
RabbitMQ mappings.

EventSourceArn (a URI; credentials default to guest/guest, the vhost to ``/``)::

    amqp[s]://[user:password@]host[:port][/<vhost>]?queue=<queue>
    amqp[s]://[user:password@]host[:port]/<vhost>/<queue>

The vhost is percent-encoded as in any AMQP URI (``%2F`` is the default vhost ``/``),
e.g. ``amqp://guest:guest@127.0.0.1:5672/%2F?queue=orders`` or
``amqp://guest:guest@127.0.0.1:5672/%2F/orders``. The queue must exist: a mapping never
declares one (so never decides its durability, type or dead-lettering).

Messages are consumed with manual acks and a prefetch of batch size x concurrency;
``ack`` is basic.ack, ``release`` is basic.nack with requeue: RabbitMQ puts the message
back at its place in the queue, marked ``redelivered``, and delivers it again at once
(AMQP has no visibility timeout, so ``retries_in_source`` is True and a message that keeps
failing keeps coming back: bound it with a quorum queue's ``x-delivery-limit`` and a
dead-letter exchange, as on Amazon MQ). Unacked messages of a consumer whose connection
ends - a poller killed mid-batch included - go back to the queue, redelivered: delivery
is at least once. Ordering is the queue's, except that redelivered messages come back
ahead of later ones.

The function's event is not ``Records``-shaped: like Lambda's ``aws:rmq`` event, a batch
is grouped under ``"<queue>::<vhost>"`` (``build_event``)::

    {"eventSource": "aws:rmq",
     "eventSourceArn": "<the URI without its credentials>",
     "rmqMessagesByQueue": {"orders::/": [
        {"basicProperties": {"contentType", "contentEncoding", "headers", "deliveryMode",
                             "priority", "correlationId", "replyTo", "expiration",
                             "messageId", "timestamp", "type", "userId", "appId",
                             "clusterId", "bodySize"},
         "redelivered": false,
         "data": "<base64 of the body>"}]}}

As on Lambda, text header values appear as ``{"bytes": [...]}`` (their UTF-8 bytes),
``expiration`` is the property's string (milliseconds), ``timestamp`` is formatted like
``"Jan 1, 1970, 12:33:41 AM"`` (UTC), and absent properties are null. Each
``SourceRecord.record`` is one message of that list; its ``item_id`` is the message's
delivery tag on this connection (Lambda has no partial batch responses for MQ).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import SplitResult, parse_qs, quote, unquote

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from aio_pika.abc import AbstractQueue as AmqpQueue
from aio_pika.exceptions import AMQPError, ChannelClosed

from nimbus.errors import InvalidParameterValue, SourceUnavailable
from nimbus.events.sources import broker_uri
from nimbus.events.sources.source import SourceOptions, SourceRecord

EXPECTED = (
    "expected amqp[s]://[user:password@]host[:port][/<vhost>]?queue=<queue> or "
    "amqp[s]://[user:password@]host[:port]/<vhost>/<queue> (vhost percent-encoded, %2F for "
    "/), e.g. amqp://guest:guest@127.0.0.1:5672/%2F?queue=orders"
)
MAX_PREFETCH = 65535  # basic.qos' prefetch-count is a short
# Batches the poller may hold at once when SourceOptions does not say (it has no
# concurrency member yet): the poller's default batch loops for a queue mapping.
DEFAULT_CONCURRENCY = 5


def _split(uri: str) -> tuple[SplitResult, str, str]:
    """(parts, vhost, queue) of an AMQP URI, or InvalidParameterValue saying the form."""
    parts = broker_uri.split(uri, "RabbitMQ", EXPECTED)
    if parts.scheme not in ("amqp", "amqps") or not parts.hostname or parts.fragment:
        raise InvalidParameterValue(f"Invalid RabbitMQ URI {uri!r}: {EXPECTED}")
    query = parse_qs(parts.query, keep_blank_values=True)
    if set(query) - {"queue"} or len(query.get("queue", [])) > 1:
        raise InvalidParameterValue(
            f"Invalid RabbitMQ URI {uri!r}: the only query parameter is one queue=; {EXPECTED}"
        )
    segments = parts.path.split("/")[1:] if parts.path else []
    if len(segments) > 2:
        raise InvalidParameterValue(
            f"Invalid RabbitMQ URI {uri!r}: too many path segments (percent-encode a / in "
            f"the vhost or queue as %2F); {EXPECTED}"
        )
    if len(segments) == 2:
        if "queue" in query:
            raise InvalidParameterValue(
                f"Invalid RabbitMQ URI {uri!r}: the queue is given twice; {EXPECTED}"
            )
        vhost, queue = unquote(segments[0]), unquote(segments[1])
    else:
        vhost = unquote(segments[0]) if segments and segments[0] else "/"
        queue = query.get("queue", [""])[0]
    if not queue or not vhost:
        raise InvalidParameterValue(f"Invalid RabbitMQ URI {uri!r}: no queue; {EXPECTED}")
    return parts, vhost, queue


def _public(parts: SplitResult, vhost: str, queue: str) -> str:
    """The URI without user and password, in the ``?queue=`` form."""
    where = broker_uri.netloc(parts)
    return f"{parts.scheme}://{where}/{quote(vhost, safe='')}?queue={quote(queue, safe='')}"


def _header(value: Any) -> Any:
    """A header value as Lambda shows it: text and bytes as ``{"bytes": [...]}``."""
    if isinstance(value, str):
        return {"bytes": list(value.encode())}
    if isinstance(value, bytes | bytearray):
        return {"bytes": list(value)}
    if isinstance(value, Mapping):
        return {str(k): _header(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_header(v) for v in value]
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return _timestamp(value)
    return value


def _timestamp(value: datetime) -> str:
    utc = value.astimezone(UTC) if value.tzinfo else value
    hour = utc.hour % 12 or 12
    return f"{utc:%b} {utc.day}, {utc.year}, {hour}:{utc:%M:%S} {'AM' if utc.hour < 12 else 'PM'}"


def _expiration(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, int | float):  # aio-pika turns the ms string into seconds
        return str(round(value * 1000))
    return str(value)


class RabbitMqSource:
    """One mapping's consumer on one RabbitMQ queue."""

    retries_in_source = True
    starting_positions: ClassVar[frozenset[str]] = frozenset()  # none may be given
    starting_position_required: ClassVar[bool] = False

    def __init__(self, options: SourceOptions) -> None:
        self.options = options
        self._parts, self.vhost, self.queue_name = _split(options.event_source_arn)
        self.arn = _public(self._parts, self.vhost, self.queue_name)
        # The poller may hold `concurrency` batches at once; each is at most a batch.
        concurrency = int(getattr(options, "concurrency", None) or DEFAULT_CONCURRENCY)
        self.prefetch = min(MAX_PREFETCH, max(1, options.batch_size * concurrency))
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._queue: AmqpQueue | None = None
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._lost: asyncio.Future[BaseException] | None = None
        # Messages delivered to this consumer and not yet settled (prefetched included):
        # the queue's message count leaves them out.
        self._held = 0

    @staticmethod
    def validate(uri: str) -> None:
        _split(uri)

    def _where(self) -> str:
        return f"queue {self.queue_name!r} in vhost {self.vhost!r} at {self.arn}"

    async def open(self) -> None:
        if self.options.starting_position is not None:
            raise InvalidParameterValue(
                "StartingPosition is not supported for a RabbitMQ queue: leave it out"
            )
        parts = self._parts
        self._lost = asyncio.get_running_loop().create_future()
        try:
            self._connection = await aio_pika.connect(
                host=parts.hostname or "127.0.0.1",
                port=parts.port or (5671 if parts.scheme == "amqps" else 5672),
                login=unquote(parts.username) if parts.username else "guest",
                password=unquote(parts.password) if parts.password else "guest",
                virtualhost=self.vhost,
                ssl=parts.scheme == "amqps",
                timeout=10,
                client_properties={"connection_name": f"nimbus-{self.options.mapping_uuid}"},
            )
            self._connection.close_callbacks.add(self._on_close)
            self._channel = await self._connection.channel()
            await self._channel.set_qos(prefetch_count=self.prefetch)
            # Passive: the queue must exist; a mapping never declares one.
            self._queue = await self._channel.get_queue(self.queue_name, ensure=True)
            await self._queue.consume(self._deliver, no_ack=False)
        except ChannelClosed as exc:
            await self._drop()
            raise SourceUnavailable(f"RabbitMQ refused {self._where()}: {exc}") from None
        except (TimeoutError, AMQPError, OSError) as exc:
            await self._drop()
            raise SourceUnavailable(
                f"RabbitMQ at {self.arn} is unreachable or refused the connection: "
                f"{exc or type(exc).__name__}"
            ) from None

    def _on_close(self, _sender: Any, exc: BaseException | None) -> None:
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(exc or ConnectionError("connection closed"))

    async def _deliver(self, message: AbstractIncomingMessage) -> None:
        self._held += 1
        await self._inbox.put(message)

    def _record(self, message: AbstractIncomingMessage) -> SourceRecord:
        props = {
            "contentType": message.content_type,
            "contentEncoding": message.content_encoding,
            "headers": _header(dict(message.headers or {})),
            "deliveryMode": int(message.delivery_mode) if message.delivery_mode else None,
            "priority": message.priority,
            "correlationId": message.correlation_id,
            "replyTo": message.reply_to,
            "expiration": _expiration(message.expiration),
            "messageId": message.message_id,
            "timestamp": _timestamp(message.timestamp) if message.timestamp else None,
            "type": message.type,
            "userId": message.user_id,
            "appId": message.app_id,
            "clusterId": getattr(message, "cluster_id", None) or None,
            "bodySize": len(message.body),
        }
        record = {
            "basicProperties": props,
            "redelivered": bool(message.redelivered),
            "data": base64.b64encode(message.body).decode(),
        }
        # The AMQP timestamp property is the publisher's, in seconds; without one the
        # message is as old as its delivery to us.
        ts = message.timestamp
        ms = int(ts.timestamp() * 1000) if ts else int(time.time() * 1000)
        return SourceRecord(
            record=record, item_id=str(message.delivery_tag), timestamp_ms=ms, token=message
        )

    def _check(self) -> None:
        if self._lost is None or self._channel is None:
            raise SourceUnavailable(f"RabbitMQ source for {self._where()} is not open")
        if self._lost.done() or self._channel.is_closed:
            reason = self._lost.result() if self._lost.done() else "channel closed"
            raise SourceUnavailable(f"RabbitMQ connection for {self._where()} lost: {reason}")

    async def receive(self, max_records: int, wait_seconds: float) -> list[SourceRecord]:
        self._check()
        assert self._lost is not None
        first: AbstractIncomingMessage | None = None
        if self._inbox.empty() and wait_seconds > 0:
            getter = asyncio.ensure_future(self._inbox.get())
            waits: list[asyncio.Future[Any]] = [getter, self._lost]
            await asyncio.wait(waits, timeout=wait_seconds, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                first = getter.result()
            else:
                getter.cancel()  # Queue.get gives up its place without losing an item
            self._check()
        out = [] if first is None else [self._record(first)]
        while len(out) < max_records and not self._inbox.empty():
            out.append(self._record(self._inbox.get_nowait()))
        return out

    async def ack(self, records: list[SourceRecord]) -> None:
        await self._settle(records, requeue=None)

    async def release(self, records: list[SourceRecord]) -> None:
        await self._settle(records, requeue=True)

    async def _settle(self, records: list[SourceRecord], requeue: bool | None) -> None:
        try:
            for record in records:
                message: AbstractIncomingMessage = record.token
                if requeue is None:
                    await message.ack()
                else:
                    await message.nack(requeue=requeue)
                self._held -= 1
        except (AMQPError, OSError) as exc:
            # The connection is gone: RabbitMQ has requeued every unacked message.
            raise SourceUnavailable(
                f"RabbitMQ connection for {self._where()} lost: {exc}"
            ) from None

    async def backlog(self) -> int | None:
        """Messages ready in the queue plus those delivered to this source, unsettled."""
        self._check()
        assert self._queue is not None
        try:
            result = await self._queue.declare()  # passive (get_queue): counts, no change
        except (AMQPError, OSError) as exc:
            raise SourceUnavailable(f"RabbitMQ: {self._where()}: {exc}") from None
        return int(result.message_count or 0) + self._held

    async def close(self) -> None:
        # Unsettled messages go back to the queue (redelivered) when the channel closes.
        await self._drop()

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        self._channel = self._queue = None
        # Whatever was prefetched goes back to the queue with the channel.
        self._inbox = asyncio.Queue()
        self._held = 0
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    def build_event(self, records: list[SourceRecord]) -> dict[str, Any]:
        """Lambda's ``aws:rmq`` event for a batch: the messages under "<queue>::<vhost>"."""
        return {
            "eventSource": "aws:rmq",
            "eventSourceArn": self.arn,
            "rmqMessagesByQueue": {f"{self.queue_name}::{self.vhost}": [r.record for r in records]},
        }
