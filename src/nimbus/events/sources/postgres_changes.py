"""PostgreSQL change streams as an event source: the row changes of a set of tables,
read by logical decoding (the ``pgoutput`` plugin) through a replication slot of the
mapping's own, delivered in commit order as DynamoDB Streams records (see
``change_records``), the slot moved on only once a batch is done.

EventSourceArn (a URI)::

    postgresql://[user[:password]@]host[:port]/<database>?tables=<table>[,<table>...]
        [&streamViewType=KEYS_ONLY|NEW_IMAGE|OLD_IMAGE|NEW_AND_OLD_IMAGES]
        [&<libpq parameter>=<value>...]
    postgres://...                                         (the same)

e.g. ``postgresql://app@127.0.0.1:5432/shop?tables=orders,sales.refunds``. A table is
``name`` (found on the role's search_path) or ``schema.name``; ``streamViewType`` is what
DynamoDB calls the stream's StreamViewType (default NEW_IMAGE); any other parameter goes
to libpq as is (``sslmode=require``, ``connect_timeout=5``...).

What the server needs: ``wal_level = logical`` (a mapping is refused otherwise, saying
so), a free replication slot (``max_replication_slots``), a role with the REPLICATION
attribute (or a superuser) that may create a publication of the tables (their owner), a
primary key or replica identity on each table, and REPLICA IDENTITY FULL on each for
OLD_IMAGE and NEW_AND_OLD_IMAGES (PostgreSQL logs old rows whole only then).

The mapping owns, on that server, the publication and the logical replication slot
``nimbus_<mapping uuid without dashes>``, both created when its poller first opens (the
mapping turns Enabled then) and dropped when the mapping is deleted. PostgreSQL keeps no
history before a slot exists, so StartingPosition TRIM_HORIZON and LATEST both start
there; AT_TIMESTAMP is refused (as for DynamoDB streams). While the mapping exists the
slot holds WAL back from removal, disabled mappings included: delete mappings you no
longer need. Only INSERT, UPDATE and DELETE are published (a DynamoDB stream has no
TRUNCATE either).

Delivery is at least once, in commit order: transactions come whole and in the order
they committed (concurrent ones too), changes in a transaction in the order they were
made. The slot's confirmed position moves past a transaction once every record of it
is settled (the function succeeded on it, a filter dropped it, or it went to the
OnFailure destination): a failing batch is retried (MaximumRetryAttempts,
BisectBatchOnFunctionError, MaximumRecordAgeInSeconds, ReportBatchItemFailures with the
SequenceNumber as itemIdentifier) without moving the slot, and a restarted nimbus reads
on from the slot. A transaction only partly settled when nimbus stopped is delivered
again whole. Transactions are read whole, so a very large one is held in memory whole.
``retries_in_source`` is False: the poller retries, as for streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import SplitResult, parse_qsl, unquote, urlencode

import psycopg
from psycopg.conninfo import conninfo_to_dict

from nimbus.errors import InvalidParameterValue, SourceUnavailable
from nimbus.events.sources import broker_uri
from nimbus.events.sources.attribute_values import CatalogType
from nimbus.events.sources.change_records import (
    VIEWS,
    Change,
    TableShape,
    change_record,
    sequence_number,
    shape_of,
)
from nimbus.events.sources.pgoutput import (
    Begin,
    Commit,
    Delete,
    Insert,
    Relation,
    Truncate,
    Update,
    decode,
)
from nimbus.events.sources.replication_slot import ReplicationSlot, Target
from nimbus.events.sources.source import SourceOptions, SourceRecord

log = logging.getLogger("nimbus.events.sources")

EXPECTED = (
    "expected postgresql://[user[:password]@]host[:port]/<database>?tables=<table>[,<table>"
    "...][&streamViewType=KEYS_ONLY|NEW_IMAGE|OLD_IMAGE|NEW_AND_OLD_IMAGES], e.g. "
    "postgresql://app@127.0.0.1:5432/shop?tables=public.orders&streamViewType=NEW_IMAGE"
)
DEFAULT_VIEW = "NEW_IMAGE"
OURS = ("tables", "streamViewType")
FETCH_ROWS = 1000  # messages one read asks for beyond what was read already
POLL_MIN_S = 0.05  # an idle source reads again after this, backing off to POLL_MAX_S
POLL_MAX_S = 0.5


def slot_name(mapping_uuid: str) -> str:
    return "nimbus_" + mapping_uuid.replace("-", "").lower()


def parse_uri(uri: str, mapping_uuid: str = "") -> Target:
    """The Target a URI names, or InvalidParameterValue saying the form."""
    parts = broker_uri.split(uri, "PostgreSQL", EXPECTED)
    shown_uri = repr(parts._replace(netloc=broker_uri.netloc(parts)).geturl())  # no password
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname or parts.fragment:
        raise InvalidParameterValue(f"Invalid PostgreSQL URI {shown_uri}: {EXPECTED}")
    database = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
    if not database or "/" in database:
        raise InvalidParameterValue(
            f"Invalid PostgreSQL URI {shown_uri}: no database (one path segment); {EXPECTED}"
        )
    params: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in params:
            raise InvalidParameterValue(f"Invalid PostgreSQL URI {shown_uri}: {key} given twice")
        params[key] = value
    tables = tuple(t.strip() for t in params.get("tables", "").split(",") if t.strip())
    if not tables:
        raise InvalidParameterValue(
            f"Invalid PostgreSQL URI {shown_uri}: name the tables (?tables=orders,...); {EXPECTED}"
        )
    view = params.get("streamViewType", DEFAULT_VIEW)
    if view not in VIEWS:
        raise InvalidParameterValue(
            f"Invalid PostgreSQL URI {shown_uri}: streamViewType must be one of "
            f"{', '.join(VIEWS)}, not {view!r}"
        )
    extra = {k: v for k, v in params.items() if k not in OURS}
    conninfo = _without_query(parts)._replace(query=urlencode(extra)).geturl()
    try:
        conninfo_to_dict(conninfo)
    except psycopg.Error as exc:
        raise InvalidParameterValue(f"Invalid PostgreSQL URI {shown_uri}: {exc}") from None
    shown = f"{parts.scheme}://{broker_uri.netloc(parts)}/{database}"
    return Target(conninfo, shown, database, tables, view, slot_name(mapping_uuid))


def _without_query(parts: SplitResult) -> SplitResult:
    return parts._replace(query="", fragment="")


def _public(uri: str) -> str:
    """The URI without user and password: what records and messages may show."""
    parts = broker_uri.split(uri, "PostgreSQL", EXPECTED)
    return parts._replace(netloc=broker_uri.netloc(parts)).geturl()


@dataclass(eq=False)
class _Transaction:
    """A transaction read from the slot whose records are not all settled yet."""

    end_lsn: int
    rows: int  # messages it took in the slot's output
    unsettled: int


@dataclass(eq=False)
class _Token:
    transaction: _Transaction
    settled: bool = False


@dataclass
class _Read:
    """One transaction as decoded from the slot, before it becomes records."""

    begin: Begin
    commit: Commit
    changes: list[Change] = field(default_factory=list)
    rows: int = 0


class PostgresChangeSource:
    """One mapping's replication slot on one PostgreSQL database."""

    retries_in_source = False
    starting_positions: ClassVar[frozenset[str]] = frozenset({"TRIM_HORIZON", "LATEST"})
    starting_position_required: ClassVar[bool] = True

    def __init__(self, options: SourceOptions) -> None:
        self.options = options
        self.target = parse_uri(options.event_source_arn, options.mapping_uuid)
        self.arn = _public(options.event_source_arn)
        self.slot = ReplicationSlot(self.target)
        self._buffer: deque[SourceRecord] = deque()  # read, not yet handed out
        self._open: deque[_Transaction] = deque()  # read, not all settled: commit order
        self._confirmed = 0  # the slot's confirmed_flush_lsn as last set
        self._settled = 0  # end LSN of the last transaction whose records are all settled
        self._read_upto = 0  # end LSN of the last transaction read
        self._rows_ahead = 0  # messages from the confirmed position to _read_upto
        self._idle_upto = 0  # the slot may move here: nothing before it is unread
        self._shapes: dict[Relation, TableShape] = {}
        self._keys: dict[int, list[str]] = {}  # primary keys by table oid
        self._catalog: dict[int, CatalogType] = {}

    # -- the mapping API's checks ------------------------------------------------------

    @staticmethod
    def validate(uri: str) -> None:
        parse_uri(uri)

    @staticmethod
    async def check(uri: str) -> None:
        """At CreateEventSourceMapping: InvalidParameterValue if the server cannot serve
        the stream (wal_level, privileges, tables, replica identity). An unreachable
        server is not refused: the poller retries and reports it on the mapping."""
        slot = ReplicationSlot(parse_uri(uri))
        try:
            await slot.check()
        except SourceUnavailable:
            return
        finally:
            await slot.close()

    @staticmethod
    async def retire(mapping_uuid: str, uri: str) -> None:
        """The mapping is deleted: drop its slot (which would hold WAL back forever) and
        its publication. SourceUnavailable if that cannot be done now."""
        slot = ReplicationSlot(parse_uri(uri, mapping_uuid))
        try:
            await slot.drop()
        finally:
            await slot.close()

    # -- Source ------------------------------------------------------------------------

    async def open(self) -> None:
        if self.options.starting_position == "AT_TIMESTAMP":
            raise InvalidParameterValue(
                "StartingPosition AT_TIMESTAMP is not supported for PostgreSQL change "
                "streams; use TRIM_HORIZON or LATEST."
            )
        try:
            tables = await self.slot.check()
            confirmed = await self.slot.ensure(tables)
        except BaseException:
            await self.slot.close()
            raise
        self._buffer.clear()
        self._open.clear()
        self._confirmed = self._settled = self._read_upto = confirmed
        self._rows_ahead = self._idle_upto = 0

    async def receive(self, max_records: int, wait_seconds: float) -> list[SourceRecord]:
        deadline = time.monotonic() + wait_seconds
        pause = POLL_MIN_S
        while True:
            if self._buffer:
                count = min(max_records, len(self._buffer))
                return [self._buffer.popleft() for _ in range(count)]
            await self._read()
            if self._buffer:
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            await asyncio.sleep(min(pause, remaining))
            pause = min(POLL_MAX_S, pause * 2)

    async def ack(self, records: list[SourceRecord]) -> None:
        for record in records:
            token = record.token
            if isinstance(token, _Token) and not token.settled:
                token.settled = True
                token.transaction.unsettled -= 1
        await self._confirm()

    async def release(self, records: list[SourceRecord]) -> None:
        """Hand these out again, first (they stay unconfirmed in the slot meanwhile)."""
        self._buffer.extendleft(reversed(records))

    async def backlog(self) -> int | None:
        return None  # the slot knows bytes of WAL, not how many changes wait

    async def close(self) -> None:
        # Whatever is not confirmed stays in the slot for the next open.
        self._buffer.clear()
        self._open.clear()
        await self.slot.close()

    def build_event(self, records: list[SourceRecord]) -> dict[str, Any]:
        return {"Records": [r.record for r in records]}

    # -- reading -----------------------------------------------------------------------

    async def _read(self) -> None:
        """Read the next transactions after those read already into the buffer (none if
        nothing new has committed)."""
        # With nothing unsettled, the slot can move on to where the WAL was flushed
        # before this read once the read finds nothing there: past the changes of
        # tables it does not publish (PostgreSQL 15 sends nothing of such transactions).
        # Else an idle stream on a busy server would hold back ever more WAL and decode
        # it all again on every read.
        flushed = await self.slot.flushed() if not self._open and not self._buffer else None
        limit = self._rows_ahead + FETCH_ROWS
        while True:
            rows = await self.slot.peek(limit)
            found = self._decode(rows)
            if found:
                await self._add(found)
            # Fewer rows than asked for: that was the end of the WAL. Otherwise, with
            # nothing new, what was read already filled the answer: ask for more.
            if self._buffer or len(rows) < limit:
                break
            limit = max(limit * 2, self._rows_ahead + FETCH_ROWS)
        if flushed is not None and not self._buffer and len(rows) < limit:
            self._idle_upto = flushed
        await self._confirm()

    def _decode(self, rows: list[bytes]) -> list[_Read]:
        """The transactions in ``rows`` that were not read before."""
        found: list[_Read] = []
        upto = self._read_upto
        relations: dict[int, Relation] = {}
        begin: Begin | None = None
        changes: list[Change] = []
        count = 0
        for data in rows:
            message = decode(data)
            count += 1
            if isinstance(message, Begin):
                begin, changes, count = message, [], 1
            elif isinstance(message, Relation):
                relations[message.oid] = message
            elif isinstance(message, (Insert, Update, Delete)):
                relation = relations.get(message.relation_oid)
                if relation is None:
                    raise SourceUnavailable(
                        f"pgoutput sent a change of table {message.relation_oid} before "
                        "describing it"
                    )
                changes.append(Change(message, relation))
            elif isinstance(message, Truncate):
                log.warning("%s: a TRUNCATE of published tables is not delivered", self.target.slot)
            elif isinstance(message, Commit) and begin is not None:
                if message.end_lsn > upto:
                    found.append(_Read(begin, message, changes, count))
                    upto = message.end_lsn
                begin = None
        return found

    async def _add(self, found: list[_Read]) -> None:
        """Make records of newly read transactions, in order, into the buffer."""
        await self._learn({c.relation for t in found for c in t.changes})
        for txn in found:
            transaction = _Transaction(txn.commit.end_lsn, txn.rows, len(txn.changes))
            records = [
                SourceRecord(
                    record=change_record(
                        change,
                        self._shapes[change.relation],
                        end_lsn=txn.commit.end_lsn,
                        ordinal=ordinal,
                        commit_us=txn.commit.commit_us,
                        xid=txn.begin.xid,
                        view=self.target.view,
                        arn=self.arn,
                        region=self.options.region,
                    ),
                    item_id=sequence_number(txn.commit.end_lsn, ordinal),
                    timestamp_ms=txn.commit.commit_us // 1000,
                    token=_Token(transaction),
                )
                for ordinal, change in enumerate(txn.changes)
            ]
            self._open.append(transaction)
            self._buffer.extend(records)
            self._rows_ahead += txn.rows
            self._read_upto = txn.commit.end_lsn

    async def _learn(self, relations: set[Relation]) -> None:
        """Shapes of tables not seen in this form before: their column types and keys
        from the catalog."""
        new = [r for r in relations if r not in self._shapes]
        if not new:
            return
        types = {c.type_oid for r in new for c in r.columns} - set(self._catalog)
        if types:
            self._catalog.update(await self.slot.types(types))
        # A table described anew (its columns changed) may have a new primary key too.
        self._keys.update(await self.slot.primary_keys({r.oid for r in new}))
        for relation in new:
            self._shapes[relation] = shape_of(relation, self._catalog, self._keys.get(relation.oid))

    # -- settling ----------------------------------------------------------------------

    async def _confirm(self) -> None:
        """Move the slot past every leading transaction whose records are all settled.
        Not moving it now (a lost connection) only means they come again after a
        restart; the next ack or read tries again."""
        while self._open and self._open[0].unsettled <= 0:
            done = self._open.popleft()
            self._rows_ahead = max(0, self._rows_ahead - done.rows)
            self._settled = done.end_lsn
        if not self._open and self._idle_upto > self._settled:
            self._settled = self._idle_upto
        self._idle_upto = 0
        if self._settled <= self._confirmed:
            return
        with contextlib.suppress(SourceUnavailable):
            self._confirmed = max(self._confirmed, await self.slot.advance(self._settled))
