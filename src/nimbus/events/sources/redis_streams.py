"""Redis Streams as an event source: a mapping reads one stream through its own consumer
group, like a Kinesis shard read by one Lambda poller.

EventSourceArn (a URI, since Redis has no ARNs)::

    redis://[[user]:password@]host[:port]/<stream>
    redis://[[user]:password@]host[:port]/<db>/<stream>
    rediss://...                                    (TLS)

A path of one segment is the stream in database 0; with two or more segments and an
all-digit first one, that is the database number and the rest (``/`` included) is the
stream. Segments are percent-decoded (``%2F`` for a ``/`` in a one-segment stream name).

Each mapping owns the consumer group ``nimbus-<mapping uuid>``, created with MKSTREAM at
the mapping's StartingPosition: TRIM_HORIZON (id 0: every entry still in the stream),
LATEST ($: only entries added from now on) or AT_TIMESTAMP (entries whose id time is at
or after the timestamp). An existing group keeps its position: a restarted or re-created
poller resumes where the mapping stopped, whatever StartingPosition says.

Records are read with XREADGROUP (BLOCK for the poller's wait, COUNT for its batch) and
settled with XACK. Delivery is at least once: an entry stays in the group's pending list
until acked, and when a poller takes a mapping over (``open``; a mapping is polled by one
poller at a time) it claims every pending entry of the group (XAUTOCLAIM) - those of a
poller killed mid-batch included - and hands them out again before new entries. A stream
is read in order and has no negative ack, so ``retries_in_source`` is False: the poller
retries, bisects and finally acks a failing batch.

Each record, in ``event["Records"]`` (modelled on Kinesis' record, ``redis`` in place of
``kinesis``; ``data`` is base64 as there)::

    {"eventSource": "nimbus:redis", "eventVersion": "1.0",
     "eventName": "nimbus:redis:record",
     "eventID": "<stream>:<entry id>",
     "eventSourceARN": "<the URI without its credentials>",
     "awsRegion": "<region>",
     "redis": {"stream": "<stream>", "id": "<entry id>",
               "approximateArrivalTimestamp": <entry id time, epoch seconds>,
               "fields": {"<field>": "<value as UTF-8 text>", ...},
               "data": "<base64 of the 'data' field's bytes, or of the JSON of fields>"}}

``batchItemFailures[].itemIdentifier`` is the entry id.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections import deque
from typing import Any, ClassVar
from urllib.parse import SplitResult, unquote

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from nimbus.errors import InvalidParameterValue, SourceUnavailable
from nimbus.events.sources import broker_uri
from nimbus.events.sources.source import SourceOptions, SourceRecord

EXPECTED = (
    "expected redis://[[user]:password@]host[:port][/<db>]/<stream> "
    "(or rediss:// for TLS), e.g. redis://127.0.0.1:6379/0/orders"
)
STARTS = {"TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"}
MAX_SEQ = 18446744073709551615  # the largest sequence part of a stream entry id
# Consumers of the group that hold nothing and have been idle this long are old pollers'
# leftovers, deleted on open so the group's consumer list does not grow with restarts.
STALE_CONSUMER_MS = 10 * 60 * 1000


def _split(uri: str) -> tuple[SplitResult, int, str]:
    """(parts, db, stream) of a redis URI, or InvalidParameterValue saying the form."""
    parts = broker_uri.split(uri, "Redis stream", EXPECTED)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise InvalidParameterValue(f"Invalid Redis stream URI {uri!r}: {EXPECTED}")
    if parts.query or parts.fragment:
        raise InvalidParameterValue(
            f"Invalid Redis stream URI {uri!r}: no query or fragment is allowed; {EXPECTED}"
        )
    segments = parts.path.split("/")[1:]
    db = 0
    if len(segments) >= 2 and segments[0].isdigit():
        db = int(segments[0])
        segments = segments[1:]
    stream = unquote("/".join(segments))
    if not stream:
        raise InvalidParameterValue(f"Invalid Redis stream URI {uri!r}: no stream; {EXPECTED}")
    return parts, db, stream


def _public(parts: SplitResult) -> str:
    """The URI without user and password: what records and messages may show."""
    return parts._replace(netloc=broker_uri.netloc(parts)).geturl()


def _text(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


def _id_ms(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


class RedisStreamSource:
    """One mapping's consumer group on one Redis stream."""

    retries_in_source = False
    # StartingPosition: required, one of these (checked by the mappings API).
    starting_positions: ClassVar[frozenset[str]] = frozenset(STARTS)
    starting_position_required: ClassVar[bool] = True

    def __init__(self, options: SourceOptions) -> None:
        self.options = options
        parts, self.db, self.stream = _split(options.event_source_arn)
        self.arn = _public(parts)
        self.group = f"nimbus-{options.mapping_uuid}"
        # Each Source object reads as its own consumer, so XINFO shows who holds what.
        self.consumer = f"{self.group}-{secrets.token_hex(4)}"
        self._parts = parts
        self._redis: aioredis.Redis | None = None
        # Entries this consumer holds but has to hand out (again): released records, and
        # after open the pending entries taken over from earlier pollers.
        self._again: deque[SourceRecord] = deque()
        self._history: str | None = None  # cursor while re-reading our pending list

    @staticmethod
    def validate(uri: str) -> None:
        _split(uri)

    def _client(self) -> aioredis.Redis:
        if self._redis is None:
            raise SourceUnavailable(f"Redis stream source {self.arn} is not open")
        return self._redis

    def _down(self, exc: Exception) -> SourceUnavailable:
        return SourceUnavailable(f"Redis at {self.arn} is unreachable: {exc}")

    def _start_id(self) -> str:
        position = self.options.starting_position
        if position not in STARTS:
            raise InvalidParameterValue(
                "StartingPosition must be TRIM_HORIZON, LATEST or AT_TIMESTAMP for a Redis "
                f"stream, not {position!r}"
            )
        if position == "TRIM_HORIZON":
            return "0"
        if position == "LATEST":
            return "$"
        ms = self.options.starting_position_timestamp_ms
        if ms is None:
            raise InvalidParameterValue(
                "StartingPositionTimestamp is required with StartingPosition AT_TIMESTAMP"
            )
        # The group delivers entries after its last-delivered id: the last possible id
        # of the millisecond before makes the timestamp's own entries the first ones.
        return f"{ms - 1}-{MAX_SEQ}" if ms > 0 else "0"

    async def open(self) -> None:
        start = self._start_id()
        self._redis = aioredis.Redis(
            host=self._parts.hostname or "127.0.0.1",
            port=self._parts.port or 6379,
            db=self.db,
            username=unquote(self._parts.username) if self._parts.username else None,
            password=unquote(self._parts.password) if self._parts.password else None,
            ssl=self._parts.scheme == "rediss",
            socket_connect_timeout=5,
            # No socket timeout: XREADGROUP BLOCK holds the connection for wait_seconds.
            socket_keepalive=True,
        )
        try:
            await self._create_group(start)
            await self._take_over()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            await self._drop()
            raise self._down(exc) from None
        except ResponseError as exc:
            await self._drop()
            raise SourceUnavailable(
                f"Redis at {self.arn} refused stream {self.stream!r}: {exc}"
            ) from None

    async def _create_group(self, start: str) -> None:
        try:
            await self._client().xgroup_create(self.stream, self.group, id=start, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise  # e.g. WRONGTYPE: the key is not a stream

    async def _take_over(self) -> None:
        """Claim every pending entry of the group (a previous poller's, e.g. one killed
        mid-batch) and arrange to hand them out before anything new."""
        r = self._client()
        cursor = "0-0"
        while True:
            reply = await r.xautoclaim(
                self.stream, self.group, self.consumer, 0, start_id=cursor, count=500
            )
            cursor = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
            if cursor == "0-0":
                break
        self._history = "0-0"
        for consumer in await r.xinfo_consumers(self.stream, self.group):
            name = consumer["name"]
            name = name.decode() if isinstance(name, bytes) else str(name)
            if (
                name != self.consumer
                and consumer["pending"] == 0
                and consumer["idle"] >= STALE_CONSUMER_MS
            ):
                await r.xgroup_delconsumer(self.stream, self.group, name)

    def _record(self, entry_id: bytes | str, fields: dict[bytes, bytes]) -> SourceRecord:
        eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        text = {_text(k): _text(v) for k, v in fields.items()}
        raw = fields.get(b"data")
        data = raw if raw is not None else json.dumps(text, separators=(",", ":")).encode()
        ms = _id_ms(eid)
        record = broker_uri.envelope("redis", f"{self.stream}:{eid}", self.arn,
                                     self.options.region, {
            "stream": self.stream,
            "id": eid,
            "approximateArrivalTimestamp": ms / 1000,
            "fields": text,
            "data": base64.b64encode(data).decode(),
        })  # fmt: skip
        return SourceRecord(record=record, item_id=eid, timestamp_ms=ms, token=eid)

    async def receive(self, max_records: int, wait_seconds: float) -> list[SourceRecord]:
        out: list[SourceRecord] = []
        while self._again and len(out) < max_records:
            out.append(self._again.popleft())
        if out:
            return out
        try:
            if self._history is not None:
                out = await self._read_history(max_records)
                if out:
                    return out
            block = max(1, int(wait_seconds * 1000)) if wait_seconds > 0 else None
            reply = await self._read(">", max_records, block)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise self._down(exc) from None
        return [self._record(eid, fields) for eid, fields in reply if fields is not None]

    async def _read(
        self, start: str, count: int, block: int | None
    ) -> list[tuple[bytes, dict[bytes, bytes] | None]]:
        r = self._client()
        try:
            reply = await r.xreadgroup(
                self.group, self.consumer, {self.stream: start}, count=count, block=block
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise SourceUnavailable(f"Redis at {self.arn}: {exc}") from None
            # The stream (and with it the group) was deleted: whatever the stream holds
            # now was added after that, so the re-created group starts at its beginning.
            await self._create_group("0")
            reply = await r.xreadgroup(
                self.group, self.consumer, {self.stream: start}, count=count, block=block
            )
        if not reply:
            return []
        # RESP2 answers [[stream, entries]], RESP3 {stream: [entries]}.
        entries = next(iter(reply.values()))[0] if isinstance(reply, dict) else reply[0][1]
        return list(entries)

    async def _read_history(self, max_records: int) -> list[SourceRecord]:
        """The next of this consumer's own pending entries (taken over on open)."""
        assert self._history is not None
        while True:
            entries = await self._read(self._history, max_records, None)
            if not entries:
                self._history = None
                return []
            last = entries[-1][0]
            self._history = last.decode() if isinstance(last, bytes) else str(last)
            # An entry trimmed or deleted from the stream while pending has no fields:
            # there is nothing left to deliver, so it leaves the pending list.
            gone = [eid for eid, fields in entries if fields is None]
            if gone:
                await self._client().xack(self.stream, self.group, *gone)
            records = [self._record(eid, f) for eid, f in entries if f is not None]
            if records:
                return records

    async def ack(self, records: list[SourceRecord]) -> None:
        if not records:
            return
        try:
            await self._client().xack(self.stream, self.group, *[r.token for r in records])
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise self._down(exc) from None

    async def release(self, records: list[SourceRecord]) -> None:
        """Hand these out again, first, on the next receive. They stay in the group's
        pending list meanwhile, so they survive a crash too."""
        self._again.extendleft(reversed(records))

    async def backlog(self) -> int | None:
        """Entries not yet read by the group plus those read but not acked, or None when
        Redis cannot tell the group's lag (after XDEL in the unread part)."""
        try:
            groups = await self._client().xinfo_groups(self.stream)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise self._down(exc) from None
        except ResponseError:
            return None
        for group in groups:
            name = group["name"]
            if (name.decode() if isinstance(name, bytes) else name) == self.group:
                lag = group.get("lag")
                return None if lag is None else int(lag) + int(group["pending"])
        return None

    async def close(self) -> None:
        # Unacked entries stay pending in the group; the next open takes them over.
        self._again.clear()
        await self._drop()

    async def _drop(self) -> None:
        if self._redis is not None:
            redis, self._redis = self._redis, None
            await redis.aclose()

    def build_event(self, records: list[SourceRecord]) -> dict[str, Any]:
        """The event the function gets for a batch: Kinesis-like ``Records``."""
        return {"Records": [r.record for r in records]}
