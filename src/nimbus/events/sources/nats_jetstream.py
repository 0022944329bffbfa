"""NATS JetStream as an event source: a mapping reads a stream through its own durable
pull consumer, as a queue (JetStream redelivers what is not acked).

EventSourceArn (a URI)::

    nats://[user:password@]host[:port]/<stream>[?subject=<filter subject>]
    tls://...                                                 (TLS)

e.g. ``nats://127.0.0.1:4222/ORDERS?subject=orders.>``. The stream must exist (a mapping
never creates one); ``subject`` narrows it to the subjects matching the filter (NATS
wildcards ``*`` and ``>``), by default every subject of the stream.

Each mapping owns the durable consumer ``nimbus-<mapping uuid>`` (explicit acks), created
at the mapping's StartingPosition: TRIM_HORIZON (DeliverPolicy all), LATEST (new) or
AT_TIMESTAMP (by start time); without one, TRIM_HORIZON (a queue mapping starts with
what its queue holds). An existing consumer is used as it is, so a restarted poller
resumes where the mapping stopped. ``ack`` acks, ``release`` naks (JetStream redelivers at
once), so ``retries_in_source`` is True; the consumer's ``max_deliver`` (unbounded unless
set on it) bounds the retries.

Delivery is at least once: a message not acked within the consumer's ack wait (60 s) is
redelivered, to whichever poller fetches next - the mapping's next poller after one was
killed mid-batch. While a batch runs longer, the source keeps its messages with
in-progress acks (+WPI) every third of the ack wait, so a long function never causes a
duplicate. Order is the stream's, except for redeliveries.

Each record, in ``event["Records"]``::

    {"eventSource": "nimbus:nats", "eventVersion": "1.0",
     "eventName": "nimbus:nats:record",
     "eventID": "<stream>:<stream sequence>",
     "eventSourceARN": "<the URI without its credentials>",
     "awsRegion": "<region>",
     "nats": {"stream": "<stream>", "subject": "<subject>", "sequence": <stream sequence>,
              "approximateArrivalTimestamp": <stored at, epoch seconds>,
              "deliveryCount": <1 on first delivery>, "redelivered": <deliveryCount > 1>,
              "headers": {"<name>": "<value>", ...},
              "data": "<base64 of the payload>"}}

``batchItemFailures[].itemIdentifier`` is the stream sequence (as a string).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import SplitResult, parse_qs, unquote

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from nimbus.errors import InvalidParameterValue, SourceUnavailable
from nimbus.events.sources import broker_uri
from nimbus.events.sources.source import SourceOptions, SourceRecord

EXPECTED = (
    "expected nats://[user:password@]host[:port]/<stream>[?subject=<filter subject>] "
    "(or tls://), e.g. nats://127.0.0.1:4222/ORDERS?subject=orders.>"
)
POLICIES = {
    "TRIM_HORIZON": api.DeliverPolicy.ALL,
    "LATEST": api.DeliverPolicy.NEW,
    "AT_TIMESTAMP": api.DeliverPolicy.BY_START_TIME,
}
BAD_NAME = set(" \t\r\n.*>/\\")  # JetStream stream names may not hold these


def _split(uri: str) -> tuple[SplitResult, str, str | None]:
    """(parts, stream, subject) of a NATS URI, or InvalidParameterValue saying the form."""
    parts = broker_uri.split(uri, "NATS", EXPECTED)
    if parts.scheme not in ("nats", "tls") or not parts.hostname or parts.fragment:
        raise InvalidParameterValue(f"Invalid NATS URI {uri!r}: {EXPECTED}")
    stream = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
    if not stream or BAD_NAME & set(stream):
        raise InvalidParameterValue(
            f"Invalid NATS URI {uri!r}: the path must be a stream name (no spaces, '.', "
            f"'*', '>' or '/'); {EXPECTED}"
        )
    query = parse_qs(parts.query, keep_blank_values=True)
    if set(query) - {"subject"} or len(query.get("subject", [])) > 1:
        raise InvalidParameterValue(
            f"Invalid NATS URI {uri!r}: the only query parameter is one subject=; {EXPECTED}"
        )
    subject = query.get("subject", [None])[0]
    if subject is not None and (not subject or set(subject) & set(" \t\r\n")):
        raise InvalidParameterValue(f"Invalid NATS URI {uri!r}: empty or blank subject; {EXPECTED}")
    return parts, stream, subject


def _public(parts: SplitResult) -> str:
    return parts._replace(netloc=broker_uri.netloc(parts)).geturl()


class JetStreamSource:
    """One mapping's durable pull consumer on one JetStream stream."""

    retries_in_source = True
    starting_positions: ClassVar[frozenset[str]] = frozenset(POLICIES)
    starting_position_required: ClassVar[bool] = False  # default: TRIM_HORIZON
    # Ack wait of the consumers this source creates: how soon a dead poller's messages
    # come back. A live poller's messages never time out (in-progress acks).
    ack_wait_seconds: ClassVar[float] = 60.0

    def __init__(self, options: SourceOptions) -> None:
        self.options = options
        self._parts, self.stream, self.subject = _split(options.event_source_arn)
        self.arn = _public(self._parts)
        self.durable = f"nimbus-{options.mapping_uuid}"
        concurrency = int(getattr(options, "concurrency", None) or 5)  # see rabbitmq.py
        # JetStream stops delivering at max_ack_pending unacked messages: room for every
        # batch the poller may hold at once, twice over.
        self.max_ack_pending = max(1000, 2 * options.batch_size * concurrency)
        self._nc: NatsClient | None = None
        self._sub: JetStreamContext.PullSubscription | None = None
        self._held: dict[int, Msg] = {}  # stream sequence -> unsettled message
        self._keeper: asyncio.Task[None] | None = None

    @staticmethod
    def validate(uri: str) -> None:
        _split(uri)

    def _config(self) -> api.ConsumerConfig:
        # Read as a queue, a stream's mapping starts with what the stream holds, as an
        # SQS or RabbitMQ mapping starts with what its queue holds.
        position = self.options.starting_position or "TRIM_HORIZON"
        if position not in POLICIES:
            raise InvalidParameterValue(
                "StartingPosition must be TRIM_HORIZON, LATEST or AT_TIMESTAMP for a NATS "
                f"JetStream stream, not {position!r}"
            )
        start = None
        if position == "AT_TIMESTAMP":
            ms = self.options.starting_position_timestamp_ms
            if ms is None:
                raise InvalidParameterValue(
                    "StartingPositionTimestamp is required with StartingPosition AT_TIMESTAMP"
                )
            start = datetime.fromtimestamp(ms / 1000, UTC)
        return api.ConsumerConfig(
            name=self.durable,
            durable_name=self.durable,
            description=f"nimbus event source mapping {self.options.mapping_uuid}",
            deliver_policy=POLICIES[position],
            opt_start_time=start,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait_seconds,
            max_ack_pending=self.max_ack_pending,
            filter_subject=self.subject,
        )

    async def open(self) -> None:
        config = self._config()
        parts = self._parts
        server = f"{parts.scheme}://{parts.hostname}:{parts.port or 4222}"

        async def quiet(_exc: Exception) -> None:
            """Errors surface from the calls that meet them, not as log noise."""

        try:
            self._nc = await nats.connect(
                servers=[server],
                user=unquote(parts.username) if parts.username else None,
                password=unquote(parts.password) if parts.password else None,
                connect_timeout=5,
                allow_reconnect=False,
                # nats-py's initial connect retries a server until max_reconnect_attempts
                # (forever at 0): two attempts, half a second apart, then give up.
                max_reconnect_attempts=1,
                reconnect_time_wait=0.5,
                error_cb=quiet,
                name=self.durable,
            )
            js = self._nc.jetstream()
            try:
                await js.stream_info(self.stream)
            except NotFoundError:
                raise SourceUnavailable(
                    f"NATS JetStream at {self.arn} has no stream {self.stream!r}: create it "
                    "first (a mapping never creates streams)"
                ) from None
            try:
                info = await js.consumer_info(self.stream, self.durable)
            except NotFoundError:
                info = await js.add_consumer(self.stream, config=config)
            self._sub = await js.pull_subscribe_bind(durable=self.durable, stream=self.stream)
        except SourceUnavailable:
            await self._drop()
            raise
        except (TimeoutError, NatsError, OSError) as exc:
            await self._drop()
            raise SourceUnavailable(
                f"NATS JetStream at {self.arn} is unreachable or refused: "
                f"{exc or type(exc).__name__}"
            ) from None
        wait = info.config.ack_wait or self.ack_wait_seconds
        self._keeper = asyncio.create_task(self._keep(wait / 3))

    async def _keep(self, every: float) -> None:
        """In-progress acks for held messages, so their ack wait never runs out."""
        while True:
            await asyncio.sleep(every)
            for msg in list(self._held.values()):
                with contextlib.suppress(NatsError, OSError):
                    await msg.in_progress()

    def _check(self) -> JetStreamContext.PullSubscription:
        if self._nc is None or self._sub is None:
            raise SourceUnavailable(f"NATS JetStream source {self.arn} is not open")
        if not self._nc.is_connected:
            raise SourceUnavailable(f"NATS connection to {self.arn} lost")
        return self._sub

    def _record(self, msg: Msg) -> SourceRecord:
        meta = msg.metadata
        seq = meta.sequence.stream
        stamp = meta.timestamp
        ms = int(stamp.timestamp() * 1000)
        record = broker_uri.envelope("nats", f"{self.stream}:{seq}", self.arn,
                                     self.options.region, {
            "stream": self.stream,
            "subject": msg.subject,
            "sequence": seq,
            "approximateArrivalTimestamp": ms / 1000,
            "deliveryCount": meta.num_delivered,
            "redelivered": meta.num_delivered > 1,
            "headers": dict(msg.headers or {}),
            "data": base64.b64encode(msg.data).decode(),
        })  # fmt: skip
        self._held[seq] = msg
        return SourceRecord(record=record, item_id=str(seq), timestamp_ms=ms, token=msg)

    async def receive(self, max_records: int, wait_seconds: float) -> list[SourceRecord]:
        sub = self._check()
        try:
            msgs = await sub.fetch(max_records, timeout=max(wait_seconds, 0.05))
        except TimeoutError:
            self._check()  # a lost connection looks like silence here
            return []
        except (NatsError, OSError) as exc:
            raise SourceUnavailable(f"NATS JetStream at {self.arn}: {exc}") from None
        return [self._record(m) for m in msgs]

    async def ack(self, records: list[SourceRecord]) -> None:
        await self._settle(records, nak=False)

    async def release(self, records: list[SourceRecord]) -> None:
        await self._settle(records, nak=True)

    async def _settle(self, records: list[SourceRecord], nak: bool) -> None:
        self._check()
        try:
            # Acks confirmed by the server: when this returns, they are settled.
            await asyncio.gather(
                *(r.token.nak() if nak else r.token.ack_sync(timeout=5) for r in records)
            )
            if nak:
                assert self._nc is not None
                await self._nc.flush(timeout=5)
        except (TimeoutError, NatsError, OSError) as exc:
            raise SourceUnavailable(
                f"NATS JetStream at {self.arn}: settling failed: {exc}"
            ) from None
        finally:
            for r in records:
                self._held.pop(int(r.item_id), None)

    async def backlog(self) -> int | None:
        """Messages not yet delivered to the consumer plus those delivered, unacked."""
        self._check()
        assert self._nc is not None
        try:
            info = await self._nc.jetstream().consumer_info(self.stream, self.durable)
        except (TimeoutError, NatsError, OSError) as exc:
            raise SourceUnavailable(f"NATS JetStream at {self.arn}: {exc}") from None
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    async def close(self) -> None:
        """Held messages are nak'ed, so they come back at once; any the client had
        buffered but not handed out come back when their ack wait runs out."""
        if self._nc is not None and self._nc.is_connected and self._held:
            with contextlib.suppress(NatsError, OSError, asyncio.TimeoutError):
                await asyncio.gather(*(m.nak() for m in self._held.values()))
                await self._nc.flush(timeout=5)
        await self._drop()

    async def _drop(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None
        self._held.clear()
        nc, self._nc, self._sub = self._nc, None, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()

    def build_event(self, records: list[SourceRecord]) -> dict[str, Any]:
        return {"Records": [r.record for r in records]}
