"""Queues and messages in the metadata database (blocking; ``Queues`` calls it off the
event loop).

Every operation is one write transaction, a batch included, and commits before it
returns: what a send acknowledged survives a crash of the process (SQLite in WAL mode,
or PostgreSQL). Receives walk the (queue, visible_ms) index; on PostgreSQL concurrent
receivers skip each other's locked rows, on SQLite the write lock serialises them.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, case, delete, func, insert, select, update

from nimbus.clock import Clock, now_ms
from nimbus.errors import (
    QueueDoesNotExist,
    SqsError,
    SqsInvalidParameterValue,
)
from nimbus.sqs import fifo
from nimbus.sqs.attributes import settings_of
from nimbus.sqs.md5 import md5_of_attributes, md5_of_body
from nimbus.sqs.messages import (
    SENDER_ID,
    Message,
    Outgoing,
    QueueCounts,
    Receipt,
    SendResult,
    check_body,
    decode_receipt,
    encode_receipt,
    loaded_attributes,
    new_token,
    size_of,
    stored_attributes,
)
from nimbus.sqs.redrive import exhausted, parse_queue_arn, policy_of
from nimbus.store.database import Database
from nimbus.store.schema import sqs_dedup, sqs_messages, sqs_queues

M = sqs_messages.c
FIFO_WINDOW = 1000  # FIFO messages a receive looks at, oldest first
MAX_VISIBILITY = 43200
SETTINGS_TTL_S = 1.0

# The hot path's statements, built once: building SQLAlchemy expressions per call costs
# more than SQLite executing them.
_GET = select(sqs_queues).where(sqs_queues.c.name == bindparam("name"))
_VISIBLE = (
    select(sqs_messages)
    .where(M.queue == bindparam("queue"), M.visible_ms <= bindparam("now"))
    .order_by(M.visible_ms, M.id)
    .limit(bindparam("want"))
)
_RECEIVED = (
    update(sqs_messages)
    .where(M.id == bindparam("b_id"))
    .values(
        visible_ms=bindparam("b_visible"),
        receive_count=M.receive_count + 1,
        receipt=bindparam("b_receipt"),
        first_receive_ms=bindparam("b_first"),
    )
)
_BY_IDS = select(M.id, M.receipt, M.visible_ms).where(
    M.queue == bindparam("queue"), M.id.in_(bindparam("ids", expanding=True))
)
_DELETE_IDS = delete(sqs_messages).where(M.id.in_(bindparam("ids", expanding=True)))
_DELETE_RECEIPT = delete(sqs_messages).where(
    M.id == bindparam("b_id"),
    M.queue == bindparam("b_queue"),
    M.receipt == bindparam("b_receipt"),
    M.visible_ms > bindparam("b_after"),
)
_INSERT = insert(sqs_messages)


@dataclass(frozen=True)
class QueueRow:
    name: str
    fifo: bool
    attributes: dict[str, str]  # as set (no defaults)
    tags: dict[str, str]
    created_ms: int
    modified_ms: int
    purged_ms: int | None

    @property
    def settings(self) -> dict[str, str]:
        return settings_of(self.attributes, self.fifo)

    def setting(self, name: str) -> int:
        return int(self.settings[name])


def _row(r: Any) -> QueueRow:
    return QueueRow(
        r.name,
        bool(r.fifo),
        dict(r.attributes),
        dict(r.tags),
        r.created_ms,
        r.modified_ms,
        r.purged_ms,
    )


class QueueStore:
    """Blocking access to queues and their messages."""

    def __init__(self, db: Database, clock: Clock = now_ms) -> None:
        self.db = db
        self.clock = clock
        # SQLite has one writer at a time; threads of this process take turns here rather
        # than in SQLite's busy handler, whose back-off sleeps (1, 2, 5, 10... ms) would
        # idle the store under load.
        self._turn = threading.Lock() if db.is_sqlite else contextlib.nullcontext()
        # Receives read their queue's settings from here for up to SETTINGS_TTL_S (a
        # poller receives many times a second); this process's own changes drop them at
        # once, another process's show within that time (SQS allows itself 60 s).
        self._rows: dict[str, tuple[QueueRow, float]] = {}

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._turn, self.db.write() as conn:
            yield conn

    # -- queues ---------------------------------------------------------------------------

    def _get(self, conn: Connection, name: str, lock: bool = False) -> QueueRow:
        if lock and not self.db.is_sqlite:
            row = conn.execute(_GET.with_for_update(), {"name": name}).first()
        else:
            row = conn.execute(_GET, {"name": name}).first()
        if row is None:
            raise QueueDoesNotExist()
        return _row(row)

    def get(self, name: str) -> QueueRow:
        with self.db.read() as conn:
            return self._get(conn, name)

    def find(self, name: str) -> QueueRow | None:
        try:
            return self.get(name)
        except QueueDoesNotExist:
            return None

    def create(
        self, name: str, fifo_queue: bool, attributes: dict[str, str], tags: dict[str, str]
    ) -> tuple[QueueRow, bool]:
        """Insert the queue, or return the existing one (False) for the caller to compare."""
        now = self.clock()
        with self._write() as conn:
            existing = conn.execute(select(sqs_queues).where(sqs_queues.c.name == name)).first()
            if existing is not None:
                return _row(existing), False
            values = {
                "name": name,
                "fifo": fifo_queue,
                "attributes": attributes,
                "tags": tags,
                "created_ms": now,
                "modified_ms": now,
                "sequence": 0,
                "purged_ms": None,
            }
            conn.execute(insert(sqs_queues).values(**values))
            return QueueRow(name, fifo_queue, attributes, tags, now, now, None), True

    def delete_queue(self, name: str) -> None:
        self._rows.pop(name, None)
        with self._write() as conn:
            self._get(conn, name)
            # Messages first: PostgreSQL cascades too, this keeps SQLite independent of it.
            conn.execute(delete(sqs_messages).where(M.queue == name))
            conn.execute(delete(sqs_dedup).where(sqs_dedup.c.queue == name))
            conn.execute(delete(sqs_queues).where(sqs_queues.c.name == name))

    def names(self, prefix: str = "") -> list[str]:
        query = select(sqs_queues.c.name).order_by(sqs_queues.c.name)
        with self.db.read() as conn:
            names = [r.name for r in conn.execute(query)]
        return [n for n in names if n.startswith(prefix)]

    def update(
        self,
        name: str,
        attributes: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
        untag: Sequence[str] = (),
    ) -> QueueRow:
        self._rows.pop(name, None)
        with self._write() as conn:
            row = self._get(conn, name, lock=True)
            values: dict[str, Any] = {}
            if attributes is not None:
                merged = {**row.attributes, **attributes}
                values["attributes"] = {k: v for k, v in merged.items() if v != ""}
                values["modified_ms"] = self.clock()
            if tags is not None or untag:
                new_tags = {**row.tags, **(tags or {})}
                for key in untag:
                    new_tags.pop(key, None)
                values["tags"] = new_tags
            if values:
                conn.execute(update(sqs_queues).where(sqs_queues.c.name == name).values(**values))
            row = self._get(conn, name)
        self._rows.pop(name, None)  # again: a receive may have cached it meanwhile
        return row

    def purge(self, name: str, min_interval_ms: int) -> bool:
        """Delete every message; False (nothing done) if the last purge was too recent."""
        now = self.clock()
        with self._write() as conn:
            row = self._get(conn, name, lock=True)
            if row.purged_ms is not None and now - row.purged_ms < min_interval_ms:
                return False
            conn.execute(delete(sqs_messages).where(M.queue == name))
            conn.execute(update(sqs_queues).where(sqs_queues.c.name == name).values(purged_ms=now))
            return True

    def counts(self, name: str) -> QueueCounts:
        now = self.clock()
        with self.db.read() as conn:
            row = self._get(conn, name)
            cutoff = now - row.setting("MessageRetentionPeriod") * 1000
            visible = func.sum(case((M.visible_ms <= now, 1), else_=0))
            flight = func.sum(case(((M.visible_ms > now) & (M.receive_count > 0), 1), else_=0))
            delayed = func.sum(case(((M.visible_ms > now) & (M.receive_count == 0), 1), else_=0))
            r = conn.execute(
                select(visible, flight, delayed, func.min(M.sent_ms)).where(
                    M.queue == name, M.sent_ms > cutoff
                )
            ).one()
        return QueueCounts(int(r[0] or 0), int(r[1] or 0), int(r[2] or 0), r[3])

    # -- send -----------------------------------------------------------------------------

    def send(self, name: str, entries: Sequence[Outgoing]) -> list[SendResult | SqsError]:
        """Queue ``entries`` in one transaction; an entry SQS would refuse gets its error
        in its place and the others are sent."""
        now = self.clock()
        results: list[SendResult | SqsError] = []
        rows: list[dict[str, Any]] = []
        with self._write() as conn:
            queue = self._get(conn, name, lock=True)
            settings = queue.settings
            max_size = int(settings["MaximumMessageSize"])
            sequence: int | None = None
            if queue.fifo:
                sequence = conn.execute(
                    select(sqs_queues.c.sequence).where(sqs_queues.c.name == name)
                ).scalar_one()
                conn.execute(
                    delete(sqs_dedup).where(
                        sqs_dedup.c.queue == name, sqs_dedup.c.expires_ms <= now
                    )
                )
            for entry in entries:
                try:
                    check_body(entry.body)
                    if size_of(entry.body, entry.message_attributes) > max_size:
                        raise SqsInvalidParameterValue(
                            "One or more parameters are invalid. Reason: Message must be "
                            f"shorter than {max_size} bytes."
                        )
                    row = self._message_row(queue, entry, now)
                    if queue.fifo:
                        assert sequence is not None
                        duplicate = self._deduplicate(conn, queue, entry, row, now, sequence + 1)
                        if duplicate is not None:
                            results.append(duplicate)
                            continue
                        sequence += 1
                        row["sequence_number"] = fifo.sequence_number(sequence)
                except SqsError as exc:
                    results.append(exc)
                    continue
                rows.append(row)
                system = (
                    {"AWSTraceHeader": {"DataType": "String", "StringValue": entry.trace_header}}
                    if entry.trace_header
                    else None
                )
                results.append(
                    SendResult(
                        row["message_id"],
                        row["md5_body"],
                        row["md5_attributes"],
                        md5_of_attributes(system),
                        row["sequence_number"],
                    )
                )
            if rows:
                conn.execute(_INSERT, rows)
            if queue.fifo and sequence is not None:
                conn.execute(
                    update(sqs_queues).where(sqs_queues.c.name == name).values(sequence=sequence)
                )
        return results

    def _message_row(self, queue: QueueRow, entry: Outgoing, now: int) -> dict[str, Any]:
        delay = entry.delay_seconds
        if queue.fifo and delay:
            raise SqsInvalidParameterValue(
                f"Value {delay} for parameter DelaySeconds is invalid. Reason: The request "
                "include parameter that is not valid for this queue type."
            )
        if delay is None or (queue.fifo and delay == 0):
            delay = queue.setting("DelaySeconds")
        elif not 0 <= delay <= 900:
            raise SqsInvalidParameterValue(
                f"Value {delay} for parameter DelaySeconds is invalid. Reason: DelaySeconds "
                "must be >= 0 and <= 900."
            )
        fifo.check_id(entry.group_id, "MessageGroupId")
        fifo.check_id(entry.dedup_id, "MessageDeduplicationId")
        dedup_id = None
        if queue.fifo:
            content_based = queue.settings["ContentBasedDeduplication"] == "true"
            dedup_id = fifo.dedup_id_for(entry.body, entry.dedup_id, entry.group_id, content_based)
        elif entry.dedup_id is not None:
            raise SqsInvalidParameterValue(
                f"Value {entry.dedup_id} for parameter MessageDeduplicationId is invalid. "
                "Reason: The request include parameter that is not valid for this queue type."
            )
        system = {"AWSTraceHeader": entry.trace_header} if entry.trace_header else None
        return {
            "queue": queue.name,
            "message_id": str(uuid.uuid4()),
            "body": entry.body,
            "md5_body": md5_of_body(entry.body),
            "message_attributes": stored_attributes(entry.message_attributes),
            "md5_attributes": md5_of_attributes(entry.message_attributes),
            "system_attributes": system,
            "sent_ms": now,
            "visible_ms": now + delay * 1000,
            "receive_count": 0,
            "first_receive_ms": None,
            "receipt": None,
            "group_id": entry.group_id,
            "dedup_id": dedup_id,
            "sequence_number": None,
        }

    def _deduplicate(
        self,
        conn: Connection,
        queue: QueueRow,
        entry: Outgoing,
        row: dict[str, Any],
        now: int,
        next_sequence: int,
    ) -> SendResult | None:
        """The first message's result if ``row`` duplicates one sent in the window, else
        None after recording ``row`` as the first of its id."""
        scope = row["group_id"] if queue.settings["DeduplicationScope"] == "messageGroup" else ""
        D = sqs_dedup.c
        key = (D.queue == queue.name) & (D.scope == scope) & (D.dedup_id == row["dedup_id"])
        seen = conn.execute(select(D.message_id, D.sequence_number).where(key)).first()
        if seen is not None:
            return SendResult(
                seen.message_id, row["md5_body"], row["md5_attributes"], None, seen.sequence_number
            )
        conn.execute(
            insert(sqs_dedup).values(
                queue=queue.name,
                scope=scope,
                dedup_id=row["dedup_id"],
                message_id=row["message_id"],
                sequence_number=fifo.sequence_number(next_sequence),
                expires_ms=now + fifo.DEDUP_WINDOW_MS,
            )
        )
        return None

    # -- receive --------------------------------------------------------------------------

    def _cached(self, conn: Connection, name: str) -> QueueRow:
        found = self._rows.get(name)
        if found is not None and time.monotonic() - found[1] < SETTINGS_TTL_S:
            return found[0]
        row = self._get(conn, name)
        self._rows[name] = (row, time.monotonic())
        return row

    def receive(
        self, name: str, max_messages: int, visibility_timeout: int | None
    ) -> list[Message]:
        now = self.clock()
        with self._write() as conn:
            queue = self._cached(conn, name)
            timeout = (
                queue.setting("VisibilityTimeout")
                if visibility_timeout is None
                else visibility_timeout
            )
            cutoff = now - queue.setting("MessageRetentionPeriod") * 1000
            policy = policy_of(queue.attributes)
            picked: list[Any] = []
            for _ in range(20):  # rounds: each drops what expired or moved to the DLQ
                want = max_messages - len(picked)
                rows = self._candidates(conn, queue, want, now, [r.id for r in picked])
                gone, moved = [], []
                for r in rows:
                    if r.sent_ms <= cutoff:
                        gone.append(r.id)
                    elif exhausted(r.receive_count, policy):
                        moved.append(r)
                    else:
                        picked.append(r)
                if moved:
                    assert policy is not None
                    gone += self._move(conn, queue, moved, policy.dead_letter_target_arn, now)
                    picked += [r for r in moved if r.id not in gone]
                if gone:
                    conn.execute(_DELETE_IDS, {"ids": gone})
                if not gone or len(picked) >= max_messages:
                    break
            picked = picked[:max_messages]
            if not picked:
                return []
            visible_at = now + timeout * 1000
            changes = [
                {
                    "b_id": r.id,
                    "b_visible": visible_at,
                    "b_receipt": new_token(),
                    "b_first": r.first_receive_ms or now,
                }
                for r in picked
            ]
            conn.execute(_RECEIVED, changes)
        return [_message(name, r, c) for r, c in zip(picked, changes, strict=True)]

    def _candidates(
        self, conn: Connection, queue: QueueRow, want: int, now: int, taken: list[int]
    ) -> list[Any]:
        if not queue.fifo:
            query = _VISIBLE
            if taken:
                query = query.where(M.id.not_in(taken))
            if not self.db.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            return list(conn.execute(query, {"queue": queue.name, "now": now, "want": want}))
        light = conn.execute(
            select(M.id, M.group_id, M.visible_ms, M.receive_count)
            .where(M.queue == queue.name)
            .order_by(M.id)
            .limit(FIFO_WINDOW)
        )
        candidates = [
            fifo.Candidate(
                r.id,
                r.group_id or "",
                r.visible_ms <= now,
                r.visible_ms > now and r.receive_count > 0,
            )
            for r in light
            if r.id not in taken
        ]
        # Rows taken in an earlier round stay in flight for the group.
        chosen = fifo.pick(candidates, want)
        if not chosen:
            return []
        query = select(sqs_messages).where(M.id.in_(chosen)).order_by(M.id)
        if not self.db.is_sqlite:
            query = query.with_for_update()
        return list(conn.execute(query))

    def _move(
        self, conn: Connection, queue: QueueRow, rows: list[Any], target_arn: str, now: int
    ) -> list[int]:
        """Move ``rows`` to the dead-letter queue; the ids moved (none if the target is
        gone: they are then delivered as usual)."""
        parts = parse_queue_arn(target_arn)
        found = conn.execute(
            select(sqs_queues).where(sqs_queues.c.name == (parts.name if parts else ""))
        ).first()
        if found is None:
            return []
        target = _row(found)
        sequence = None
        if target.fifo:
            sequence = conn.execute(
                select(sqs_queues.c.sequence).where(sqs_queues.c.name == target.name)
            ).scalar_one()
        source_arn = target_arn.rsplit(":", 1)[0] + ":" + queue.name
        inserts = []
        for r in rows:
            system = dict(r.system_attributes or {})
            system["DeadLetterQueueSourceArn"] = source_arn
            seq = None
            if sequence is not None:
                sequence += 1
                seq = fifo.sequence_number(sequence)
            inserts.append(
                {
                    "queue": target.name,
                    "message_id": r.message_id,
                    "body": r.body,
                    "md5_body": r.md5_body,
                    "message_attributes": r.message_attributes,
                    "md5_attributes": r.md5_attributes,
                    "system_attributes": system,
                    "sent_ms": r.sent_ms,
                    "visible_ms": now,
                    "receive_count": r.receive_count,
                    "first_receive_ms": r.first_receive_ms,
                    "receipt": None,
                    "group_id": r.group_id,
                    "dedup_id": r.dedup_id,
                    "sequence_number": seq,
                }
            )
        conn.execute(insert(sqs_messages), inserts)
        if sequence is not None:
            conn.execute(
                update(sqs_queues).where(sqs_queues.c.name == target.name).values(sequence=sequence)
            )
        return [r.id for r in rows]

    # -- delete / change visibility ---------------------------------------------------------

    def delete(self, name: str, handles: Sequence[str]) -> list[SqsError | None]:
        """Delete the messages the handles name; per handle, None or SQS's error. A stale
        handle (the message was received again since) succeeds without deleting, as on
        SQS; a handle of a message already gone succeeds; on a FIFO queue a handle whose
        visibility timeout ran out is refused as expired."""
        now = self.clock()
        results: list[SqsError | None] = []
        fifo_queue = name.endswith(".fifo")  # only FIFO queues have the suffix
        valid: list[tuple[int, Receipt]] = []
        for i, handle in enumerate(handles):
            try:
                valid.append((i, decode_receipt(handle, name)))
                results.append(None)
            except SqsError as exc:
                results.append(exc)
        # One statement in the common case: each row goes if its receipt is the latest
        # (and, FIFO, still in flight); only when fewer went is there anything to explain.
        after = now if fifo_queue else -1
        params = [
            {"b_id": r.row, "b_queue": name, "b_receipt": r.token, "b_after": after}
            for _, r in valid
        ]
        with self._write() as conn:
            deleted = conn.execute(_DELETE_RECEIPT, params).rowcount if params else 0
            if deleted == len(valid) and valid:
                return results
            if not valid or deleted == 0:
                self._get(conn, name)  # nothing of it here: does the queue exist at all?
            if fifo_queue and valid:
                ids = [r.row for _, r in valid]
                left = {r.id: r for r in conn.execute(_BY_IDS, {"queue": name, "ids": ids})}
                for i, receipt in valid:
                    row = left.get(receipt.row)
                    if row is not None and row.receipt == receipt.token:
                        results[i] = _expired(handles[i])
        return results

    def change_visibility(
        self, name: str, changes: Sequence[tuple[str, int]]
    ) -> list[SqsError | None]:
        now = self.clock()
        results: list[SqsError | None] = []
        with self._write() as conn:
            queue = self._get(conn, name)
            updates = []
            for handle, timeout in changes:
                try:
                    receipt = decode_receipt(handle, name)
                    if not 0 <= timeout <= MAX_VISIBILITY:
                        raise SqsInvalidParameterValue(
                            f"Value {timeout} for parameter VisibilityTimeout is invalid. "
                            f"Reason: Must be between 0 and {MAX_VISIBILITY}, if provided."
                        )
                    row = conn.execute(
                        select(M.receipt, M.visible_ms).where(M.queue == name, M.id == receipt.row)
                    ).first()
                    if row is None or row.receipt != receipt.token:
                        raise SqsInvalidParameterValue(
                            f"Value {handle} for parameter ReceiptHandle is invalid. Reason: "
                            "Message does not exist or is not available for visibility timeout "
                            "change."
                        )
                    if queue.fifo and row.visible_ms <= now:
                        raise _expired(handle)
                except SqsError as exc:
                    results.append(exc)
                    continue
                updates.append({"b_id": receipt.row, "b_visible": now + timeout * 1000})
                results.append(None)
            if updates:
                conn.execute(
                    update(sqs_messages)
                    .where(M.id == bindparam("b_id"))
                    .values(visible_ms=bindparam("b_visible")),
                    updates,
                )
        return results


def _expired(handle: str) -> SqsInvalidParameterValue:
    return SqsInvalidParameterValue(
        f"Value {handle} for parameter ReceiptHandle is invalid. Reason: The receipt handle "
        "has expired."
    )


def _message(queue: str, r: Any, change: dict[str, Any]) -> Message:
    attributes = {
        "SenderId": SENDER_ID,
        "SentTimestamp": str(r.sent_ms),
        "ApproximateReceiveCount": str(r.receive_count + 1),
        "ApproximateFirstReceiveTimestamp": str(change["b_first"]),
    }
    if r.group_id is not None:
        attributes["MessageGroupId"] = r.group_id
    if r.dedup_id is not None:
        attributes["MessageDeduplicationId"] = r.dedup_id
    if r.sequence_number is not None:
        attributes["SequenceNumber"] = r.sequence_number
    for key, value in (r.system_attributes or {}).items():
        attributes[key] = value
    return Message(
        message_id=r.message_id,
        receipt_handle=encode_receipt(queue, r.id, change["b_receipt"]),
        body=r.body,
        md5_of_body=r.md5_body,
        attributes=attributes,
        message_attributes=loaded_attributes(r.message_attributes),
        md5_of_message_attributes=r.md5_attributes,
        sent_ms=r.sent_ms,
    )
