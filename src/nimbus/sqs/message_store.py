"""Messages in the metadata database (blocking; ``Queues`` calls it off the event loop):
send, receive, delete and change visibility, FIFO ordering and deduplication, and the
move to a dead-letter queue.

Every operation is one write transaction, a batch included, and commits before it
returns: what a send acknowledged survives a crash of the process (SQLite in WAL mode,
or PostgreSQL). Receives walk the (queue, visible_ms) index; on PostgreSQL concurrent
receivers skip each other's locked rows, on SQLite the write lock serialises them.

On SQLite the hot statements of standard queues (send, receive, delete) run on the
driver's own cursor (``message_sql``): SQLAlchemy's per-statement work costs several
times what SQLite takes to run them. PostgreSQL, FIFO queues and the rare paths use
SQLAlchemy Core, built once.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select, update

from nimbus.clock import Clock, now_ms
from nimbus.errors import SqsError, SqsInvalidParameterValue
from nimbus.sqs import fifo, message_sql
from nimbus.sqs.md5 import md5_of_attributes, md5_of_body
from nimbus.sqs.messages import (
    SENDER_ID,
    Message,
    Outgoing,
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
from nimbus.sqs.queue_rows import QueueRow, QueueRows, row_of
from nimbus.sqs.redrive import exhausted, parse_queue_arn, policy_of
from nimbus.store.schema import sqs_dedup, sqs_messages, sqs_queues

M = sqs_messages.c
FIFO_WINDOW = 1000  # FIFO messages a receive looks at, oldest first
MAX_VISIBILITY = 43200
RECEIVE_ROUNDS = 20  # each drops what expired or moved to the DLQ, then looks again
# One send of a group commit: each entry's result or refusal, or the send's own failure.
SendOutcome = list[SendResult | SqsError] | Exception

# The hot path's statements, built once: building SQLAlchemy expressions per call costs
# more than SQLite executing them.
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
_SET_VISIBLE = (
    update(sqs_messages).where(M.id == bindparam("b_id")).values(visible_ms=bindparam("b_visible"))
)


class MessageStore:
    """Blocking access to the messages of the queues ``rows`` holds."""

    def __init__(self, rows: QueueRows, clock: Clock = now_ms) -> None:
        self.rows = rows
        self.db = rows.db
        self.clock = clock

    # -- send -----------------------------------------------------------------------------

    def send(self, name: str, entries: Sequence[Outgoing]) -> list[SendResult | SqsError]:
        """Queue ``entries`` in one transaction; an entry SQS would refuse gets its error
        in its place and the others are sent."""
        if self.db.is_sqlite and not name.endswith(".fifo"):  # only FIFO names have it
            return self._send_standard_sqlite(name, entries)
        now = self.clock()
        with self.rows.write() as conn:
            queue = self.rows.get_in(conn, name, lock=True)
            sequence: int | None = None
            if queue.fifo:
                sequence = self.rows.sequence(conn, name)
                conn.execute(
                    delete(sqs_dedup).where(
                        sqs_dedup.c.queue == name, sqs_dedup.c.expires_ms <= now
                    )
                )
            results, rows = self._prepare(queue, entries, now, conn, sequence)
            if rows:
                conn.execute(_INSERT, rows)
            if queue.fifo and rows:
                last = rows[-1]["sequence_number"]
                self.rows.set_sequence(conn, name, int(last))
        return results

    def _send_standard_sqlite(
        self, name: str, entries: Sequence[Outgoing]
    ) -> list[SendResult | SqsError]:
        with self.rows.raw_write() as conn:
            return self._insert_standard(conn, name, entries, self.clock())

    def _insert_standard(
        self, conn: sqlite3.Connection, name: str, entries: Sequence[Outgoing], now: int
    ) -> list[SendResult | SqsError]:
        queue = self.rows.raw_get(conn, name)
        results, rows = self._prepare(queue, entries, now, None, None)
        if rows:
            conn.executemany(message_sql.INSERT, [message_sql.values_of(r) for r in rows])
        return results

    def groups_sends(self, name: str) -> bool:
        """Whether sends to ``name`` may be committed together (``send_group``)."""
        return self.db.is_sqlite and not name.endswith(".fifo")

    def send_group(self, sends: Sequence[tuple[str, Sequence[Outgoing]]]) -> list[SendOutcome]:
        """Several sends (to standard queues, on SQLite) in one transaction: one commit
        for all, each answered only once it is in. A send that fails on its own (its
        queue is gone) gets its error; should the transaction itself fail, each send
        runs again in its own, so one cannot fail the others."""
        now = self.clock()
        outcomes: list[SendOutcome] = []
        try:
            with self.rows.raw_write() as conn:
                for name, entries in sends:
                    try:
                        outcomes.append(self._insert_standard(conn, name, entries, now))
                    except SqsError as exc:  # raised before it wrote anything
                        outcomes.append(exc)
            return outcomes
        except Exception:
            outcomes = []
            for name, entries in sends:
                try:
                    outcomes.append(self._send_standard_sqlite(name, entries))
                except Exception as exc:
                    outcomes.append(exc)
            return outcomes

    def _prepare(
        self,
        queue: QueueRow,
        entries: Sequence[Outgoing],
        now: int,
        conn: Connection | None,
        sequence: int | None,
    ) -> tuple[list[SendResult | SqsError], list[dict[str, Any]]]:
        """Each entry's result (or SQS's refusal) and the rows to insert; FIFO entries
        are deduplicated and numbered in ``conn`` from ``sequence``."""
        max_size = queue.setting("MaximumMessageSize")
        results: list[SendResult | SqsError] = []
        rows: list[dict[str, Any]] = []
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
                    assert conn is not None and sequence is not None
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
        return results, rows

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

    def receive(
        self, name: str, max_messages: int, visibility_timeout: int | None
    ) -> list[Message]:
        """Up to ``max_messages`` visible messages (any number: the SQS API caps it at 10,
        an event source mapping asks for its batch size), made invisible in one
        transaction."""
        now = self.clock()
        with self.rows.write() as conn:
            raw = _driver(conn) if self.db.is_sqlite else None
            # SQLite reads the row afresh on its own cursor; PostgreSQL from a short cache.
            if raw is not None:
                queue = self.rows.raw_get(raw, name)
            else:
                queue = self.rows.cached(conn, name)
            timeout = (
                queue.setting("VisibilityTimeout")
                if visibility_timeout is None
                else visibility_timeout
            )
            cutoff = now - queue.setting("MessageRetentionPeriod") * 1000
            policy = policy_of(queue.attributes)
            picked: list[Any] = []
            for _ in range(RECEIVE_ROUNDS):
                want = max_messages - len(picked)
                taken = [r.id for r in picked]
                if raw is not None and not queue.fifo:
                    rows = message_sql.visible(raw, name, now, want, taken)
                else:
                    rows = self._candidates(conn, queue, want, now, taken)
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
            if raw is not None:
                raw.executemany(message_sql.RECEIVED, [message_sql.received(c) for c in changes])
            else:
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
        if not self.db.is_sqlite and not taken:
            # FIFO receives take turns on the queue's row (SQLite's writers already do):
            # two choosing from one snapshot would hand out the same group's messages
            # twice, out of order. Read committed: what follows sees the last turn's work.
            self.rows.get_in(conn, queue.name, lock=True)
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
        target = row_of(found)
        sequence = self.rows.sequence(conn, target.name) if target.fifo else None
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
            self.rows.set_sequence(conn, target.name, sequence)
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
        if self.db.is_sqlite:
            with self.rows.raw_write() as raw:
                params = [(r.row, name, r.token, after) for _, r in valid]
                deleted = raw.executemany(message_sql.DELETE, params).rowcount if params else 0
                if deleted == len(valid) and valid:
                    return results
                if not valid or deleted == 0:
                    self.rows.raw_get(raw, name)  # nothing of it here: does it exist at all?
                if fifo_queue and valid:
                    left = message_sql.by_ids(raw, name, [r.row for _, r in valid])
                    self._explain(results, handles, valid, left)
            return results
        params_core = [
            {"b_id": r.row, "b_queue": name, "b_receipt": r.token, "b_after": after}
            for _, r in valid
        ]
        with self.rows.write() as conn:
            deleted = conn.execute(_DELETE_RECEIPT, params_core).rowcount if params_core else 0
            if deleted == len(valid) and valid:
                return results
            if not valid or deleted == 0:
                self.rows.get_in(conn, name)  # nothing of it here: does it exist at all?
            if fifo_queue and valid:
                ids = [r.row for _, r in valid]
                found = conn.execute(_BY_IDS, {"queue": name, "ids": ids})
                self._explain(results, handles, valid, {r.id: r.receipt for r in found})
        return results

    @staticmethod
    def _explain(
        results: list[SqsError | None],
        handles: Sequence[str],
        valid: list[tuple[int, Receipt]],
        left: dict[int, str | None],
    ) -> None:
        """FIFO: a handle whose message is still there with its receipt was not deleted
        because its visibility timeout ran out."""
        for i, receipt in valid:
            if receipt.row in left and left[receipt.row] == receipt.token:
                results[i] = _expired(handles[i])

    def change_visibility(
        self, name: str, changes: Sequence[tuple[str, int]]
    ) -> list[SqsError | None]:
        now = self.clock()
        results: list[SqsError | None] = []
        with self.rows.write() as conn:
            queue = self.rows.get_in(conn, name)
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
                conn.execute(_SET_VISIBLE, updates)
        return results


def _driver(conn: Connection) -> sqlite3.Connection:
    """The sqlite3 connection under ``conn`` (its transaction is the same)."""
    driver = conn.connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    return driver


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
