"""MQTT topics as an event source: a mapping subscribes to a topic filter with QoS 1 in a
persistent session of its own, and acknowledges a message only once the poller is done
with it.

EventSourceArn (a URI)::

    mqtt://[user:password@]host[:port]/<topic filter>
    mqtts://...                                          (TLS)

e.g. ``mqtt://127.0.0.1:1883/sensors/+/temp`` or ``mqtt://127.0.0.1:1883/sensors/#``
(everything after the host's ``/`` is the filter, ``#`` included, or written ``%23``;
MQTT wildcards ``+`` and ``#`` as MQTT defines them).

The session: client id ``nimbus-<mapping uuid>``, MQTT 3.1.1 with clean session off, so
the broker keeps the subscription and queues QoS 1 messages while the mapping's poller
is away (restarting, moving to another node) and delivers them when it reconnects. The
subscription is made when the broker has no session for the client yet: from then on
messages are kept for the mapping. MQTT keeps no history, so StartingPosition can only be
LATEST (the default): messages published before the mapping first connected are not
delivered, except a topic's retained message, which the broker sends on subscribing.

Acks: the source sends a message's PUBACK only when the poller acks it (paho's manual
acks), so a message the function has not finished is still the broker's. Delivery is
**at least once while the broker keeps the session**: a poller killed mid-batch (kill -9)
leaves its unacknowledged messages in flight in the session, and the broker sends them
again (``dup`` true) when the mapping's next poller connects; a clean close does the
same. It is lost when the broker drops the session: mosquitto keeps sessions across its
restarts only with ``persistence true``, expires them after
``persistent_client_expiration``, and queues at most ``max_queued_messages`` (1000 by
default) for an offline session - more are dropped. The broker sends at most its
in-flight limit (mosquitto's ``max_inflight_messages``, 20 by default) of unacknowledged
messages, so a batch holds at most that many: a larger BatchSize is filled only as far.
Order: a topic's messages arrive in publishing order; messages sent again after a
reconnect come first, and those released by the poller are handed out again first.

MQTT has no negative acknowledgement - a broker sends a message again only on a new
connection - so ``retries_in_source`` is False: like a stream, the poller retries and
bisects a failing batch itself, then acks it (or sends it to the mapping's on-failure
destination). ``release`` keeps the records un-PUBACKed and hands them out again first.

Each record, in ``event["Records"]``::

    {"eventSource": "nimbus:mqtt", "eventVersion": "1.0",
     "eventName": "nimbus:mqtt:record",
     "eventID": "<client id>:<n>",  (n counts the messages this poller received)
     "eventSourceARN": "<the URI without its credentials>",
     "awsRegion": "<region>",
     "mqtt": {"topic": "<topic>", "qos": 1, "retain": <bool>, "dup": <bool: sent again>,
              "approximateArrivalTimestamp": <received at, epoch seconds>,
              "data": "<base64 of the payload>"}}

MQTT 3.1.1 messages carry no id or timestamp of their own: ``batchItemFailures[]
.itemIdentifier`` is ``<n>`` and the age is counted from receipt.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import time
from collections import deque
from typing import Any, ClassVar
from urllib.parse import SplitResult, unquote

import aiomqtt
import paho.mqtt.client as paho

from nimbus.errors import InvalidParameterValue, SourceUnavailable
from nimbus.events.sources import broker_uri
from nimbus.events.sources.source import SourceOptions, SourceRecord

EXPECTED = (
    "expected mqtt[s]://[user:password@]host[:port]/<topic filter>, "
    "e.g. mqtt://127.0.0.1:1883/sensors/+/temp"
)
URI = re.compile(r"^(mqtts?)://([^/]*)/(.*)$", re.DOTALL)


def _filter_problem(topic: str) -> str | None:
    if not topic:
        return "no topic filter"
    if "\x00" in topic or len(topic.encode()) > 65535:
        return "the topic filter has a NUL character or is too long"
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return "'#' must be a whole level, and the last"
        if "+" in level and level != "+":
            return "'+' must be a whole level"
    return None


def _split(uri: str) -> tuple[SplitResult, str]:
    """(host parts, topic filter) of an MQTT URI, or InvalidParameterValue saying the form."""
    match = URI.match(uri)
    if not match:
        raise InvalidParameterValue(f"Invalid MQTT URI {uri!r}: {EXPECTED}")
    scheme, netloc, path = match.groups()
    parts = broker_uri.split(f"{scheme}://{netloc}", "MQTT", EXPECTED)
    topic = unquote(path)
    problem = None if parts.hostname else "no host"
    problem = problem or _filter_problem(topic)
    if problem:
        raise InvalidParameterValue(f"Invalid MQTT URI {uri!r}: {problem}; {EXPECTED}")
    return parts, topic


class MqttSource:
    """One mapping's persistent MQTT session, subscribed to one topic filter."""

    retries_in_source = False
    starting_positions: ClassVar[frozenset[str]] = frozenset({"LATEST"})
    starting_position_required: ClassVar[bool] = False

    def __init__(self, options: SourceOptions) -> None:
        self.options = options
        self._parts, self.topic_filter = _split(options.event_source_arn)
        host = self._parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        port = f":{self._parts.port}" if self._parts.port else ""
        self.arn = f"{self._parts.scheme}://{host}{port}/{self.topic_filter}"
        self.client_id = f"nimbus-{options.mapping_uuid}"
        self._client: aiomqtt.Client | None = None
        self._inbox: asyncio.Queue[tuple[paho.MQTTMessage, int]] = asyncio.Queue()
        self._again: deque[SourceRecord] = deque()
        self._count = 0
        self.session_present: bool | None = None  # as the broker said on connecting

    @staticmethod
    def validate(uri: str) -> None:
        _split(uri)

    def _paho(self) -> paho.Client:
        if self._client is None:
            raise SourceUnavailable(f"MQTT source {self.arn} is not open")
        # aiomqtt has no public manual-ack API: its paho client does (manual_ack_set,
        # ack), and its message hook is where a message's dup flag and packet id are.
        client: paho.Client = self._client._client
        if not client.is_connected():
            raise SourceUnavailable(f"MQTT connection to {self.arn} lost")
        return client

    async def open(self) -> None:
        if self.options.starting_position not in (None, "LATEST"):
            raise InvalidParameterValue(
                "StartingPosition must be LATEST (or left out) for an MQTT topic: MQTT keeps "
                "no history to start from"
            )
        parts = self._parts
        client = aiomqtt.Client(
            parts.hostname or "127.0.0.1",
            parts.port or (8883 if parts.scheme == "mqtts" else 1883),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            identifier=self.client_id,
            clean_session=False,
            protocol=aiomqtt.ProtocolVersion.V311,
            keepalive=30,
            timeout=10,
        )
        if parts.scheme == "mqtts":
            client._client.tls_set()
        inner: paho.Client = client._client
        inner.manual_ack_set(True)
        inner.on_message = self._on_message
        connected = inner.on_connect  # aiomqtt's: it resolves the connect
        assert connected is not None

        def on_connect(c: paho.Client, userdata: Any, flags: Any, *rest: Any) -> None:
            self.session_present = bool(flags.session_present)
            connected(c, userdata, flags, *rest)

        inner.on_connect = on_connect
        try:
            await client.__aenter__()
        except aiomqtt.MqttError as exc:
            raise SourceUnavailable(
                f"MQTT broker at {self.arn} is unreachable or refused the connection: {exc}"
            ) from None
        self._client = client
        if not self.session_present:
            try:
                await client.subscribe(self.topic_filter, qos=1)
            except aiomqtt.MqttError as exc:
                await self.close()
                raise SourceUnavailable(
                    f"MQTT broker at {self.arn} refused the subscription: {exc}"
                ) from None

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        # paho calls this on the event loop (aiomqtt drives its socket from the loop).
        self._inbox.put_nowait((message, int(time.time() * 1000)))

    def _record(self, message: paho.MQTTMessage, received_ms: int) -> SourceRecord:
        self._count += 1
        n = str(self._count)
        record = broker_uri.envelope("mqtt", f"{self.client_id}:{n}", self.arn,
                                     self.options.region, {
            "topic": message.topic,
            "qos": message.qos,
            "retain": bool(message.retain),
            "dup": bool(message.dup),
            "approximateArrivalTimestamp": received_ms / 1000,
            "data": base64.b64encode(message.payload).decode(),
        })  # fmt: skip
        return SourceRecord(record=record, item_id=n, timestamp_ms=received_ms, token=message)

    async def receive(self, max_records: int, wait_seconds: float) -> list[SourceRecord]:
        out: list[SourceRecord] = []
        while self._again and len(out) < max_records:
            out.append(self._again.popleft())
        if out:
            return out
        self._paho()
        if self._inbox.empty() and wait_seconds > 0:
            with contextlib.suppress(TimeoutError):
                message, ms = await asyncio.wait_for(self._inbox.get(), wait_seconds)
                out.append(self._record(message, ms))
            if not out:
                self._paho()  # silence may be a lost connection
        while len(out) < max_records and not self._inbox.empty():
            out.append(self._record(*self._inbox.get_nowait()))
        return out

    async def ack(self, records: list[SourceRecord]) -> None:
        client = self._paho()
        for record in records:
            message: paho.MQTTMessage = record.token
            if message.qos > 0:
                rc = client.ack(message.mid, message.qos)
                if rc != paho.MQTT_ERR_SUCCESS:
                    raise SourceUnavailable(
                        f"MQTT broker at {self.arn}: acknowledging failed ({paho.error_string(rc)})"
                    )

    async def release(self, records: list[SourceRecord]) -> None:
        """Hand these out again, first, on the next receive; they stay unacknowledged, so
        the broker still holds them should this poller die."""
        self._again.extendleft(reversed(records))

    async def backlog(self) -> int | None:
        """MQTT brokers do not tell a client how many messages its session holds."""
        return None

    async def close(self) -> None:
        # A clean DISCONNECT: the session, with every unacknowledged message, stays on
        # the broker for the mapping's next connection.
        client, self._client = self._client, None
        self._again.clear()
        self._inbox = asyncio.Queue()
        if client is not None:
            with contextlib.suppress(aiomqtt.MqttError, OSError):
                await client.__aexit__(None, None, None)

    def build_event(self, records: list[SourceRecord]) -> dict[str, Any]:
        return {"Records": [r.record for r in records]}
