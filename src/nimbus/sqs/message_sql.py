"""The hot statements of standard queues as SQLite runs them, on the driver's own cursor
(``sqlite3``), and the rows they read.

They are the statements SQLAlchemy Core would issue for ``sqs_messages`` (see
``nimbus.store.schema``), written out once: send, receive and delete run them thousands
of times a second, and SQLAlchemy's per-statement work (parameter processing, result
wrapping, events) costs several times what SQLite takes. JSON columns are written as
JSON text, as SQLAlchemy's JSON type writes them, and read back either way (SQL NULL
or JSON ``null`` for none).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any, NamedTuple

COLUMNS = (
    "id",
    "queue",
    "message_id",
    "body",
    "md5_body",
    "message_attributes",
    "md5_attributes",
    "system_attributes",
    "sent_ms",
    "visible_ms",
    "receive_count",
    "first_receive_ms",
    "receipt",
    "group_id",
    "dedup_id",
    "sequence_number",
)
_INSERTED = COLUMNS[1:]  # id: the table assigns it
_JSON = frozenset({"message_attributes", "system_attributes"})

INSERT = (
    f"INSERT INTO sqs_messages ({', '.join(_INSERTED)}) "
    f"VALUES ({', '.join('?' for _ in _INSERTED)})"
)
_VISIBLE = (
    f"SELECT {', '.join(COLUMNS)} FROM sqs_messages "
    "WHERE queue = ? AND visible_ms <= ? ORDER BY visible_ms, id LIMIT ?"
)
RECEIVED = (
    "UPDATE sqs_messages SET visible_ms = ?, receive_count = receive_count + 1, "
    "receipt = ?, first_receive_ms = ? WHERE id = ?"
)
DELETE = "DELETE FROM sqs_messages WHERE id = ? AND queue = ? AND receipt = ? AND visible_ms > ?"
_BY_IDS = "SELECT id, receipt FROM sqs_messages WHERE queue = ? AND id IN ({ids})"
_MAX_VARIABLES = 30000  # SQLite allows 32766 bound parameters per statement


class MessageRow(NamedTuple):
    """One ``sqs_messages`` row, attributes as SQLAlchemy's rows have them."""

    id: int
    queue: str
    message_id: str
    body: str
    md5_body: str
    message_attributes: dict[str, Any] | None
    md5_attributes: str | None
    system_attributes: dict[str, Any] | None
    sent_ms: int
    visible_ms: int
    receive_count: int
    first_receive_ms: int | None
    receipt: str | None
    group_id: str | None
    dedup_id: str | None
    sequence_number: str | None


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def values_of(row: dict[str, Any]) -> tuple[Any, ...]:
    """A message row (``MessageStore``'s dict) as INSERT's parameters."""
    return tuple(_dump(row[c]) if c in _JSON else row[c] for c in _INSERTED)


def visible(
    conn: sqlite3.Connection, queue: str, now: int, want: int, taken: Sequence[int]
) -> list[MessageRow]:
    """Up to ``want`` messages of ``queue`` visible at ``now``, oldest first, but those
    in ``taken`` (picked by an earlier round of this receive: still visible until it
    ends, so they are skipped here rather than bound into the statement)."""
    skip = set(taken)
    rows: list[MessageRow] = []
    for r in conn.execute(_VISIBLE, (queue, now, want + len(skip))):
        if r[0] in skip:
            continue
        rows.append(MessageRow._make((*r[:5], _load(r[5]), r[6], _load(r[7]), *r[8:])))
        if len(rows) >= want:
            break
    return rows


def received(change: dict[str, Any]) -> tuple[Any, ...]:
    """A receive's change of one row (``MessageStore``'s dict) as RECEIVED's parameters."""
    return (change["b_visible"], change["b_receipt"], change["b_first"], change["b_id"])


def by_ids(conn: sqlite3.Connection, queue: str, ids: Sequence[int]) -> dict[int, str | None]:
    """The receipt of each message of ``ids`` still in ``queue``."""
    out: dict[int, str | None] = {}
    for chunk in _chunks(ids):
        marks = ", ".join("?" for _ in chunk)
        for row_id, receipt in conn.execute(_BY_IDS.format(ids=marks), (queue, *chunk)):
            out[row_id] = receipt
    return out


def _chunks(ids: Sequence[int]) -> list[Sequence[int]]:
    return [ids[i : i + _MAX_VARIABLES] for i in range(0, len(ids), _MAX_VARIABLES)]
