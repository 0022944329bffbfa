"""Topics, subscriptions and the deliveries they owe, in the store (blocking SQL).

Deliveries are an outbox: Publish inserts one row per matching subscription in one
transaction, before it answers; the fan-out claims due rows (``lease``: a token, and
``due_ms`` pushed past the attempt's deadline, so a claim that dies with its process is
taken again once that passes) and deletes each once its endpoint has it.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Row

from nimbus.store.database import Database
from nimbus.store.schema import sns_deliveries, sns_subscriptions, sns_topics


@dataclass(frozen=True)
class TopicRow:
    name: str
    attributes: dict[str, str]
    tags: dict[str, str]
    created_ms: int


@dataclass(frozen=True)
class SubscriptionRow:
    arn: str
    topic: str
    protocol: str
    endpoint: str
    attributes: dict[str, str]
    pending: bool
    token: str | None
    created_ms: int


@dataclass(frozen=True)
class Delivery:
    """One message owed to one endpoint."""

    message_id: str
    topic_arn: str
    subscription_arn: str
    protocol: str
    endpoint: str
    body: str
    extra: dict[str, Any]  # message attributes / headers, redrive and retry policies
    attempts: int = 0
    id: int | None = None
    lease: str | None = None
    created_ms: int = 0


def _topic(row: Row[Any]) -> TopicRow:
    return TopicRow(row.name, dict(row.attributes), dict(row.tags), row.created_ms)


def _subscription(row: Row[Any]) -> SubscriptionRow:
    return SubscriptionRow(
        row.arn, row.topic, row.protocol, row.endpoint, dict(row.attributes), row.pending,
        row.token, row.created_ms,
    )  # fmt: skip


def _delivery(row: Row[Any]) -> Delivery:
    return Delivery(
        row.message_id, row.topic_arn, row.subscription_arn, row.protocol, row.endpoint,
        row.body, dict(row.extra), row.attempts, row.id, row.lease, row.created_ms,
    )  # fmt: skip


class TopicStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- topics --------------------------------------------------------------------------

    def create_topic(
        self, name: str, attributes: dict[str, str], tags: dict[str, str], now: int
    ) -> tuple[TopicRow, bool]:
        """The topic ``name``, made now unless it exists (then: it, and False)."""
        with self.db.write() as conn:
            found = conn.execute(select(sns_topics).where(sns_topics.c.name == name)).first()
            if found is not None:
                return _topic(found), False
            conn.execute(insert(sns_topics).values(
                name=name, attributes=attributes, tags=tags, created_ms=now
            ))  # fmt: skip
        return TopicRow(name, attributes, tags, now), True

    def find_topic(self, name: str) -> TopicRow | None:
        with self.db.read() as conn:
            found = conn.execute(select(sns_topics).where(sns_topics.c.name == name)).first()
        return _topic(found) if found is not None else None

    def delete_topic(self, name: str) -> bool:
        with self.db.write() as conn:
            conn.execute(delete(sns_subscriptions).where(sns_subscriptions.c.topic == name))
            return bool(conn.execute(delete(sns_topics).where(sns_topics.c.name == name)).rowcount)

    def topic_names(self, after: str, limit: int) -> list[str]:
        with self.db.read() as conn:
            rows = conn.execute(
                select(sns_topics.c.name).where(sns_topics.c.name > after)
                .order_by(sns_topics.c.name).limit(limit)
            ).all()  # fmt: skip
        return [r.name for r in rows]

    def update_topic(
        self,
        name: str,
        attributes: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
        untag: Sequence[str] = (),
    ) -> TopicRow | None:
        """Merge ``attributes`` and ``tags`` in, drop the ``untag`` keys (None: no topic)."""
        with self.db.write() as conn:
            found = conn.execute(select(sns_topics).where(sns_topics.c.name == name)).first()
            if found is None:
                return None
            row = _topic(found)
            new_attributes = {**row.attributes, **(attributes or {})}
            new_tags = {k: v for k, v in {**row.tags, **(tags or {})}.items() if k not in untag}
            conn.execute(update(sns_topics).where(sns_topics.c.name == name).values(
                attributes=new_attributes, tags=new_tags
            ))  # fmt: skip
        return TopicRow(name, new_attributes, new_tags, row.created_ms)

    def counts(self, topic: str) -> tuple[int, int]:
        """(confirmed, pending) subscriptions of ``topic``."""
        with self.db.read() as conn:
            rows = conn.execute(
                select(sns_subscriptions.c.pending, func.count())
                .where(sns_subscriptions.c.topic == topic)
                .group_by(sns_subscriptions.c.pending)
            ).all()  # fmt: skip
        by_state = {bool(pending): count for pending, count in rows}
        return by_state.get(False, 0), by_state.get(True, 0)

    # -- subscriptions ---------------------------------------------------------------------

    def subscriptions_of(self, topic: str) -> tuple[TopicRow | None, list[SubscriptionRow]]:
        """The topic and its subscriptions, read together."""
        with self.db.read() as conn:
            found = conn.execute(select(sns_topics).where(sns_topics.c.name == topic)).first()
            rows = conn.execute(
                select(sns_subscriptions).where(sns_subscriptions.c.topic == topic)
                .order_by(sns_subscriptions.c.arn)
            ).all()  # fmt: skip
        return (_topic(found) if found is not None else None), [_subscription(r) for r in rows]

    def subscription(self, arn: str) -> SubscriptionRow | None:
        with self.db.read() as conn:
            found = conn.execute(
                select(sns_subscriptions).where(sns_subscriptions.c.arn == arn)
            ).first()
        return _subscription(found) if found is not None else None

    def subscribe(self, row: SubscriptionRow) -> tuple[SubscriptionRow, bool]:
        """Add ``row`` unless the topic has a subscription of the same protocol and
        endpoint (then: that one, and False). None of the topic: KeyError."""
        with self.db.write() as conn:
            topic = conn.execute(
                select(sns_topics.c.name).where(sns_topics.c.name == row.topic)
            ).first()
            if topic is None:
                raise KeyError(row.topic)
            same = conn.execute(
                select(sns_subscriptions).where(
                    sns_subscriptions.c.topic == row.topic,
                    sns_subscriptions.c.protocol == row.protocol,
                    sns_subscriptions.c.endpoint == row.endpoint,
                )
            ).first()
            if same is not None:
                return _subscription(same), False
            conn.execute(insert(sns_subscriptions).values(
                arn=row.arn, topic=row.topic, protocol=row.protocol, endpoint=row.endpoint,
                attributes=row.attributes, pending=row.pending, token=row.token,
                created_ms=row.created_ms,
            ))  # fmt: skip
        return row, True

    def update_subscription(self, arn: str, **values: Any) -> bool:
        with self.db.write() as conn:
            return bool(conn.execute(
                update(sns_subscriptions).where(sns_subscriptions.c.arn == arn).values(**values)
            ).rowcount)  # fmt: skip

    def confirm(self, topic: str, token: str) -> SubscriptionRow | None:
        """Confirm the subscription of ``topic`` whose pending token is ``token``."""
        with self.db.write() as conn:
            found = conn.execute(select(sns_subscriptions).where(
                sns_subscriptions.c.topic == topic, sns_subscriptions.c.token == token
            )).first()  # fmt: skip
            if found is None:
                return None
            conn.execute(update(sns_subscriptions).where(
                sns_subscriptions.c.arn == found.arn
            ).values(pending=False))  # fmt: skip
        row = _subscription(found)
        return SubscriptionRow(**{**row.__dict__, "pending": False})

    def unsubscribe(self, arn: str) -> SubscriptionRow | None:
        with self.db.write() as conn:
            found = conn.execute(
                select(sns_subscriptions).where(sns_subscriptions.c.arn == arn)
            ).first()
            if found is None:
                return None
            conn.execute(delete(sns_subscriptions).where(sns_subscriptions.c.arn == arn))
        return _subscription(found)

    def list_subscriptions(
        self, topic: str | None, after: str, limit: int
    ) -> list[SubscriptionRow]:
        query = select(sns_subscriptions).where(sns_subscriptions.c.arn > after)
        if topic is not None:
            query = query.where(sns_subscriptions.c.topic == topic)
        with self.db.read() as conn:
            rows = conn.execute(query.order_by(sns_subscriptions.c.arn).limit(limit)).all()
        return [_subscription(r) for r in rows]

    # -- deliveries ------------------------------------------------------------------------

    def owe(self, topic: str | None, deliveries: Sequence[Delivery], now: int) -> bool:
        """Store ``deliveries`` in one transaction (False, storing nothing, if ``topic``
        is given and no longer exists)."""
        with self.db.write() as conn:
            if (
                topic is not None
                and conn.execute(
                    select(sns_topics.c.name).where(sns_topics.c.name == topic)
                ).first()
                is None
            ):
                return False
            if deliveries:
                conn.execute(insert(sns_deliveries), [{
                    "message_id": d.message_id, "topic_arn": d.topic_arn,
                    "subscription_arn": d.subscription_arn, "protocol": d.protocol,
                    "endpoint": d.endpoint, "body": d.body, "extra": d.extra, "attempts": 0,
                    "due_ms": now, "lease": None, "created_ms": now, "error": None,
                } for d in deliveries])  # fmt: skip
        return True

    def claim(self, now: int, hold_ms: int, limit: int) -> list[Delivery]:
        """Up to ``limit`` due deliveries, each under a fresh lease until now + ``hold_ms``."""
        with self.db.write() as conn:
            ids = [r.id for r in conn.execute(
                select(sns_deliveries.c.id)
                .where(sns_deliveries.c.due_ms <= now)
                .order_by(sns_deliveries.c.due_ms, sns_deliveries.c.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()]  # fmt: skip
            if not ids:
                return []
            lease = secrets.token_hex(8)
            conn.execute(update(sns_deliveries).where(sns_deliveries.c.id.in_(ids)).values(
                lease=lease, due_ms=now + hold_ms
            ))  # fmt: skip
            rows = conn.execute(
                select(sns_deliveries).where(sns_deliveries.c.id.in_(ids))
                .order_by(sns_deliveries.c.id)
            ).all()  # fmt: skip
        return [_delivery(r) for r in rows]

    def done(self, delivery: Delivery) -> bool:
        with self.db.write() as conn:
            return bool(conn.execute(delete(sns_deliveries).where(
                sns_deliveries.c.id == delivery.id, sns_deliveries.c.lease == delivery.lease
            )).rowcount)  # fmt: skip

    def retry(self, delivery: Delivery, due_ms: int | None, error: str) -> bool:
        """Try again at ``due_ms`` (None: never; kept, with ``error``, for the record)."""
        with self.db.write() as conn:
            return bool(conn.execute(update(sns_deliveries).where(
                sns_deliveries.c.id == delivery.id, sns_deliveries.c.lease == delivery.lease
            ).values(
                attempts=delivery.attempts + 1, due_ms=due_ms, lease=None, error=error[:2000]
            )).rowcount)  # fmt: skip

    def recover(self, now: int) -> int:
        """Make every claimed delivery due now (its claimer died with the last process)."""
        with self.db.write() as conn:
            return int(conn.execute(update(sns_deliveries).where(
                sns_deliveries.c.lease.is_not(None), sns_deliveries.c.due_ms.is_not(None)
            ).values(lease=None, due_ms=now)).rowcount)  # fmt: skip

    def failed(self, limit: int = 100) -> list[Delivery]:
        """Deliveries that ran out of retries with nowhere to go, newest first."""
        with self.db.read() as conn:
            rows = conn.execute(
                select(sns_deliveries).where(sns_deliveries.c.due_ms.is_(None))
                .order_by(sns_deliveries.c.id.desc()).limit(limit)
            ).all()  # fmt: skip
        return [_delivery(r) for r in rows]

    def pending_count(self) -> int:
        with self.db.read() as conn:
            return int(conn.execute(
                select(func.count()).select_from(sns_deliveries)
                .where(sns_deliveries.c.due_ms.is_not(None))
            ).scalar_one())  # fmt: skip
