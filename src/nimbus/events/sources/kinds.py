"""Which kind of source an EventSourceArn names, and how to build its ``Source``.

``arn:aws:sqs:REGION:ACCOUNT:NAME`` is a queue of this nimbus; a broker URI
(``redis://``, ``amqp://``, ``nats://``, ``mqtt://``) names a self-hosted broker, and a
``postgresql://`` URI the tables of a PostgreSQL change stream, each read by its own
module (imported only when a mapping uses it).
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from nimbus.errors import InvalidParameterValue
from nimbus.events.sources.broker_uri import netloc
from nimbus.events.sources.source import Source, SourceOptions

SQS_ARN = re.compile(
    r"arn:aws[a-zA-Z-]*:sqs:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):(?P<name>[\w-]{1,80}(\.fifo)?)"
)


@dataclass(frozen=True)
class Kind:
    """A kind of source: queue-like (retries by redelivery) or a stream."""

    name: str
    queue_like: bool
    module: str | None = None  # the broker's module and Source class
    cls: str | None = None
    label: str = ""  # for messages


SQS = Kind("sqs", True, label="SQS queue")
BROKERS: dict[str, Kind] = {
    "redis": Kind(
        "redis", False, "nimbus.events.sources.redis_streams", "RedisStreamSource",
        "Redis Streams",
    ),
    "amqp": Kind("amqp", True, "nimbus.events.sources.rabbitmq", "RabbitMqSource", "RabbitMQ"),
    "nats": Kind(
        "nats", True, "nimbus.events.sources.nats_jetstream", "JetStreamSource", "NATS JetStream"
    ),
    "mqtt": Kind("mqtt", False, "nimbus.events.sources.mqtt", "MqttSource", "MQTT"),
    "postgresql": Kind(
        "postgresql", False, "nimbus.events.sources.postgres_changes", "PostgresChangeSource",
        "PostgreSQL change stream",
    ),
}
# amqps://, rediss:// and friends are the same brokers over TLS.
ALIASES = {
    "rediss": "redis", "amqps": "amqp", "tls": "nats", "mqtts": "mqtt", "postgres": "postgresql"
}
KINDS = {"sqs": SQS, **BROKERS}


def scheme_of(uri: str) -> str | None:
    match = re.match(r"([a-zA-Z][a-zA-Z0-9+.-]*)://", uri)
    return match.group(1).lower() if match else None


def kind_of(event_source_arn: str) -> Kind | None:
    """The kind an EventSourceArn names, or None if nimbus does not know it."""
    if SQS_ARN.fullmatch(event_source_arn):
        return SQS
    scheme = scheme_of(event_source_arn)
    if scheme is None:
        return None
    return BROKERS.get(ALIASES.get(scheme, scheme))


def shown(event_source_arn: str) -> str:
    """An EventSourceArn as it may be shown (API answers, on-failure records): a broker
    URI without its password, which only the poller needs."""
    if SQS_ARN.fullmatch(event_source_arn) or "@" not in event_source_arn:
        return event_source_arn
    parts = urlsplit(event_source_arn)
    if parts.password is None:
        return event_source_arn
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return parts._replace(netloc=user + netloc(parts)).geturl()


def broker_class(kind: Kind) -> Any:
    """The broker's Source class; InvalidParameterValue saying what is missing if this
    nimbus lacks its module."""
    assert kind.module is not None and kind.cls is not None
    try:
        module = importlib.import_module(kind.module)
    except ImportError as exc:
        raise InvalidParameterValue(
            f"This nimbus cannot read {kind.label} yet: its event source module "
            f"{kind.module} is not installed ({exc})."
        ) from exc
    cls = getattr(module, kind.cls, None)
    if cls is None:
        raise InvalidParameterValue(
            f"This nimbus cannot read {kind.label} yet: {kind.module} has no {kind.cls}."
        )
    return cls


def validate_broker_uri(kind: Kind, uri: str) -> None:
    """The broker module's own check of its URI (InvalidParameterValue if malformed)."""
    broker_class(kind).validate(uri)


async def check_source(kind: Kind, uri: str) -> None:
    """The broker module's look at the source itself before a mapping is stored, for the
    kinds that have one (a PostgreSQL server's wal_level, tables, privileges):
    InvalidParameterValue saying what to fix."""
    check = getattr(broker_class(kind), "check", None)
    if check is not None:
        await check(uri)


async def retire_source(kind_name: str, mapping_uuid: str, uri: str) -> None:
    """A mapping is being deleted: what its source keeps for it outside nimbus (a
    PostgreSQL replication slot) is removed; SourceUnavailable if that cannot be done
    now (the deletion is retried)."""
    kind = KINDS.get(kind_name)
    if kind is None or kind.module is None:
        return
    try:
        cls = broker_class(kind)
    except InvalidParameterValue:
        return  # its module is not here, so neither is anything it could have kept
    retire = getattr(cls, "retire", None)
    if retire is not None:
        await retire(mapping_uuid, uri)


def starting_positions(kind: Kind) -> tuple[frozenset[str], bool] | None:
    """The StartingPositions a broker's source takes and whether one is required (None:
    the kind decides by its retry model: SQS takes none, streams need one)."""
    if kind.module is None:
        return None
    cls = broker_class(kind)
    return frozenset(cls.starting_positions), bool(cls.starting_position_required)


def build_source(kind: Kind, options: SourceOptions, queues: Any = None) -> Source:
    """A new Source for one mapping (not yet open)."""
    if kind is SQS:
        from nimbus.events.sources.sqs import SqsSource

        if queues is None:
            raise InvalidParameterValue("This nimbus has no SQS queues to read.")
        return SqsSource(options, queues)
    source: Source = broker_class(kind)(options)
    return source
