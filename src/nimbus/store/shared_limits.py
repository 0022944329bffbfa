"""Rate-limit tokens and quota counts shared by the servers of a cluster, in PostgreSQL.

With ``cluster`` on, several servers admit HTTP-trigger requests for one installation;
a token bucket or quota counter kept in one server's memory would let each of them admit
the full limit. The shared state lives here instead, and servers take it in small
batches (the usage gate keeps what it took as a local allowance, spent in memory):

- ``rate_buckets``: one row per bucket (a usage plan's key, a stage route, the account).
  ``lease`` refills a row by the time elapsed on the database's clock (one clock for
  every server, whatever their own say), caps it at the bucket's capacity and takes up
  to ``want`` whole tokens, in one statement; the row is locked for that statement only.
- ``quota_reservations``: per key, plan and quota period, the requests reserved so far
  (used, or held by a server not yet used). ``reserve`` grants up to ``want`` more but
  never past the limit; ``release`` gives back what a server held and did not use.
- ``shared_versions``: a counter per kind of configuration (``api_keys``), bumped in the
  transaction of every change, so other servers notice the change by reading one row.

Blocking; call it off the event loop. PostgreSQL only (cluster mode requires it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Float,
    String,
    Table,
    Text,
    and_,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.sql.elements import ColumnElement

from nimbus.store.database import Database
from nimbus.store.schema import api_key_usage, metadata

rate_buckets = Table(
    "rate_buckets",
    metadata,
    Column("name", Text, primary_key=True),
    Column("tokens", Float, nullable=False),  # left after the last lease
    Column("stamp", Float, nullable=False),  # database clock (epoch s) of the last refill
    Column("granted", BigInteger, nullable=False),  # what the last lease took
)

quota_reservations = Table(
    "quota_reservations",
    metadata,
    Column("key_id", String(16), primary_key=True),
    Column("plan_id", String(16), primary_key=True),
    Column("period", String(8), primary_key=True),  # DAY, WEEK, MONTH
    Column("start_day", String(10), primary_key=True),  # the period's first day (ISO)
    Column("reserved", BigInteger, nullable=False),
    Column("granted", BigInteger, nullable=False),  # what the last reservation took
)

shared_versions = Table(
    "shared_versions",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("version", BigInteger, nullable=False),
)


@dataclass(frozen=True)
class BucketLease:
    """Take up to ``want`` tokens from bucket ``name`` (``rate`` per second, at most
    ``capacity`` held; a new bucket starts full)."""

    name: str
    rate: float
    capacity: float
    want: int


@dataclass(frozen=True)
class QuotaReservation:
    """Reserve up to ``want`` requests of the key's quota in the period starting on
    ``start_day`` and ending before ``end_day`` (ISO dates), never past ``limit``."""

    key_id: str
    plan_id: str
    period: str
    start_day: str
    end_day: str
    limit: int
    want: int


@dataclass(frozen=True)
class Grant:
    """What a lease or reservation took; ``left``: the bucket's tokens after it (a
    fraction tells how soon the next whole one is there), or the quota not yet reserved."""

    granted: int
    left: float


def _db_now() -> ColumnElement[float]:
    # Transaction start on the database's clock: the same value for every statement of a
    # transaction, and one clock for every server. A transaction that reaches a row after
    # a later one refilled it sees a negative interval, which GREATEST makes zero.
    return cast(ColumnElement[float], func.extract("epoch", func.now()))


class SharedLimitStore:
    """Leases of shared token buckets and reservations of shared quotas."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def take(self, requests: list[BucketLease | QuotaReservation]) -> list[Grant]:
        """Grant every request, in one transaction (one round trip per batch, whatever
        its size); the grants in the order of ``requests``."""
        with self.db.write() as conn:
            return [
                self._lease(conn, r) if isinstance(r, BucketLease) else self._reserve(conn, r)
                for r in requests
            ]

    def _lease(self, conn: Connection, lease: BucketLease) -> Grant:
        b = rate_buckets.c
        now = _db_now()
        level = func.least(
            lease.capacity, b.tokens + func.greatest(0.0, now - b.stamp) * lease.rate
        )
        take = func.least(lease.want, func.floor(level))
        first = min(lease.want, int(lease.capacity))  # a new bucket starts full
        statement = (
            insert(rate_buckets)
            .values(name=lease.name, tokens=lease.capacity - first, stamp=now, granted=first)
            .on_conflict_do_update(
                index_elements=[b.name],
                set_={
                    # Every expression reads the row as it was before this statement.
                    "tokens": level - take,
                    "stamp": func.greatest(b.stamp, now),
                    "granted": take,
                },
            )
            .returning(b.granted, b.tokens)
        )
        row = conn.execute(statement).one()
        return Grant(int(row.granted), float(row.tokens))

    def _reserve(self, conn: Connection, r: QuotaReservation) -> Grant:
        q = quota_reservations.c
        # A period's counter starts from the usage already stored for it (requests admitted
        # before cluster mode was on, or before the plan's period changed).
        u = api_key_usage.c
        stored = (
            select(func.coalesce(func.sum(u.used), 0))
            .where(
                u.key_id == r.key_id,
                u.plan_id == r.plan_id,
                u.day >= r.start_day,
                u.day < r.end_day,
            )
            .scalar_subquery()
        )
        conn.execute(
            insert(quota_reservations)
            .from_select(
                ["key_id", "plan_id", "period", "start_day", "reserved", "granted"],
                select(
                    literal(r.key_id),
                    literal(r.plan_id),
                    literal(r.period),
                    literal(r.start_day),
                    stored,
                    literal(0, BigInteger),
                ),
            )
            .on_conflict_do_nothing()
        )
        take = func.greatest(0, func.least(r.want, r.limit - q.reserved))
        row = conn.execute(
            update(quota_reservations)
            .where(self._period(r.key_id, r.plan_id, r.period, r.start_day))
            .values(reserved=q.reserved + take, granted=take)
            .returning(q.granted, q.reserved)
        ).one()
        return Grant(int(row.granted), float(max(0, r.limit - int(row.reserved))))

    def release(self, key_id: str, plan_id: str, period: str, start_day: str, count: int) -> None:
        """Give back ``count`` reserved requests a server did not use."""
        q = quota_reservations.c
        with self.db.write() as conn:
            conn.execute(
                update(quota_reservations)
                .where(self._period(key_id, plan_id, period, start_day))
                .values(reserved=func.greatest(0, q.reserved - count))
            )

    @staticmethod
    def _period(key_id: str, plan_id: str, period: str, start_day: str) -> ColumnElement[bool]:
        q = quota_reservations.c
        return and_(
            q.key_id == key_id, q.plan_id == plan_id, q.period == period, q.start_day == start_day
        )

    # -- configuration versions -------------------------------------------------------

    def version(self, name: str) -> int:
        with self.db.read() as conn:
            found = conn.execute(
                select(shared_versions.c.version).where(shared_versions.c.name == name)
            ).scalar()
        return int(found or 0)


def bump_version(conn: Connection, name: str) -> None:
    """Count a change of ``name`` in the caller's transaction (PostgreSQL)."""
    v = shared_versions.c
    conn.execute(
        insert(shared_versions)
        .values(name=name, version=1)
        .on_conflict_do_update(index_elements=[v.name], set_={"version": v.version + 1})
    )


def forget(conn: Connection, *, key_id: str | None = None, plan_id: str | None = None) -> None:
    """Drop the quota counters and plan buckets of a key, a plan, or a key in a plan (its
    usage is deleted with it, as ``ApiKeyStore`` does), in the caller's transaction."""
    q = quota_reservations.c
    where = []
    if key_id is not None:
        where.append(q.key_id == key_id)
    if plan_id is not None:
        where.append(q.plan_id == plan_id)
    conn.execute(quota_reservations.delete().where(*where))
    pattern = plan_bucket_name(key_id or "%", plan_id or "%")
    conn.execute(rate_buckets.delete().where(rate_buckets.c.name.like(pattern)))


def plan_bucket_name(key_id: str, plan_id: str) -> str:
    # Key and plan ids are lowercase letters and digits: no LIKE wildcard of their own.
    return f"plan/{key_id}/{plan_id}"
