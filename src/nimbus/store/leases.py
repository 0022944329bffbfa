"""Ownership leases in the store: what makes a schedule or an event source poller run
in exactly one process of an installation, however many servers and nodes share the
store.

An owner takes a free or expired key and renews it well before it expires; when the
owner dies its lease runs out and the next process to ask takes the key over. Taking
and renewing are one conditional write, so two processes asking at once cannot both
win (SQLite serialises writers; PostgreSQL's primary key and row lock decide).
"""

from __future__ import annotations

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from nimbus.clock import Clock, now_ms
from nimbus.store.database import Database
from nimbus.store.schema import leases


class LeaseStore:
    """Leases keyed by what they guard, e.g. ``schedule:default/nightly``."""

    def __init__(self, db: Database, clock: Clock = now_ms) -> None:
        self.db = db
        self.clock = clock

    def acquire(self, key: str, owner: str, ttl_ms: int) -> bool:
        """Take ``key`` for ``owner`` (or renew it, if ``owner`` holds it) until now +
        ``ttl_ms``; False while another owner's lease is unexpired (blocking)."""
        now = self.clock()
        expires = now + ttl_ms
        with self.db.write() as conn:
            taken = conn.execute(
                update(leases)
                .where(leases.c.key == key)
                .where((leases.c.owner == owner) | (leases.c.expires_ms <= now))
                .values(owner=owner, expires_ms=expires)
            ).rowcount
            if taken:
                return True
            exists = conn.execute(select(leases.c.key).where(leases.c.key == key)).first()
            if exists is not None:
                return False
            try:
                with conn.begin_nested():
                    conn.execute(insert(leases).values(key=key, owner=owner, expires_ms=expires))
            except IntegrityError:  # another process inserted it first
                return False
            return True

    def release(self, key: str, owner: str) -> None:
        """Give ``key`` up now (if ``owner`` holds it), so another process need not wait
        for it to expire (blocking)."""
        with self.db.write() as conn:
            conn.execute(delete(leases).where(leases.c.key == key, leases.c.owner == owner))

    def owner(self, key: str) -> str | None:
        """Who holds ``key`` now, or None if nobody does (blocking)."""
        with self.db.read() as conn:
            row = conn.execute(
                select(leases.c.owner, leases.c.expires_ms).where(leases.c.key == key)
            ).first()
        if row is None or row.expires_ms <= self.clock():
            return None
        return str(row.owner)
