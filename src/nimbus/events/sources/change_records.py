"""Row changes of PostgreSQL tables as DynamoDB Streams records, the shape a function
written for a DynamoDB stream expects in ``event["Records"]``::

    {"eventID": "<32 hex digits: the transaction's end LSN and the change's place in it>",
     "eventName": "INSERT" | "MODIFY" | "REMOVE",
     "eventVersion": "1.1",
     "eventSource": "nimbus:postgres",
     "awsRegion": "<region>",
     "dynamodb": {"ApproximateCreationDateTime": <commit time, epoch seconds>,
                  "Keys": {"id": {"N": "1"}},
                  "NewImage": {...}, "OldImage": {...},
                  "SequenceNumber": "<30 digits>", "SizeBytes": <n>,
                  "StreamViewType": "NEW_AND_OLD_IMAGES"},
     "eventSourceARN": "<the mapping's URI without credentials>",
     "postgres": {"schema": "public", "table": "orders", "xid": 1234,
                  "lsn": "0/16B3A28", "commitTime": "2026-12-03T16:34:53.954123Z"}}

- ``eventSource`` is ``nimbus:postgres`` (not ``aws:dynamodb``: the records do not come
  from DynamoDB); ``postgres`` is nimbus' addition: which table, the transaction id, its
  end LSN and exact commit time (a DynamoDB record names its table only in its ARN).
- ``SequenceNumber``: the transaction's end LSN (20 digits) then the change's ordinal in
  the transaction (10 digits). It grows in commit order, and a record delivered again
  (after a restart) has the same one, as has its ``eventID``.
- ``Keys``: the primary key columns (with ``REPLICA IDENTITY USING INDEX``, that index's
  columns; a table with REPLICA IDENTITY FULL and no primary key: every column).
  PostgreSQL lets an UPDATE change the key, which DynamoDB cannot: ``Keys`` are then the
  new ones, the old ones are in ``OldImage``.
- ``NewImage`` (INSERT, MODIFY) with NEW_IMAGE / NEW_AND_OLD_IMAGES; ``OldImage``
  (MODIFY, REMOVE) with OLD_IMAGE / NEW_AND_OLD_IMAGES, which need REPLICA IDENTITY FULL.
  A large (TOASTed) value an UPDATE did not change is not logged again by PostgreSQL:
  without REPLICA IDENTITY FULL that column is missing from the NewImage.
- ``SizeBytes``: the size of ``Keys`` and the images as the JSON in this record (DynamoDB
  counts its own item encoding); ``ApproximateCreationDateTime``: commit time.
- ``userIdentity`` (DynamoDB's TTL deletions) never appears.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nimbus.events.sources.attribute_values import CatalogType, ValueType, attribute, value_type
from nimbus.events.sources.pgoutput import (
    UNCHANGED,
    Delete,
    Insert,
    Relation,
    Tuple,
    Unchanged,
    Update,
    lsn_text,
)

VIEWS = ("KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES")
EVENT_SOURCE = "nimbus:postgres"
EVENT_VERSION = "1.1"  # DynamoDB Streams records' version


@dataclass(frozen=True)
class TableShape:
    """What a record needs of a table as of a change: its columns' names and types, and
    which of them are its Keys."""

    schema: str
    name: str
    columns: tuple[str, ...]
    types: tuple[ValueType, ...]
    keys: tuple[int, ...]  # indexes into columns
    full: bool  # REPLICA IDENTITY FULL: old rows are logged whole


def shape_of(
    relation: Relation, catalog: dict[int, CatalogType], primary_key: list[str] | None
) -> TableShape:
    columns = tuple(c.name for c in relation.columns)
    flagged = tuple(i for i, c in enumerate(relation.columns) if c.key)
    full = relation.replica_identity == "f"
    keys = flagged
    # FULL flags every column; the primary key is the row's identity then, if it has one.
    if full and primary_key and all(name in columns for name in primary_key):
        keys = tuple(columns.index(name) for name in primary_key)
    return TableShape(
        schema=relation.namespace or "pg_catalog",
        name=relation.name,
        columns=columns,
        types=tuple(value_type(c.type_oid, catalog) for c in relation.columns),
        keys=keys,
        full=full,
    )


@dataclass(frozen=True)
class Change:
    """One row change as decoded, with its table as of the change."""

    message: Insert | Update | Delete
    relation: Relation


def sequence_number(end_lsn: int, ordinal: int) -> str:
    return f"{end_lsn:020d}{ordinal:010d}"


def _image(
    shape: TableShape, values: Tuple, fill: Tuple | None = None, only: tuple[int, ...] | None = None
) -> dict[str, Any]:
    """Columns of ``values`` as AttributeValues (those in ``only``, if given); a value
    PostgreSQL did not send (an unchanged TOASTed one) is taken from ``fill`` if it has
    it, else left out."""
    out: dict[str, Any] = {}
    for i in only if only is not None else range(len(shape.columns)):
        value = values[i] if i < len(values) else UNCHANGED
        if isinstance(value, Unchanged) and fill is not None and i < len(fill):
            value = fill[i]
        if isinstance(value, Unchanged):
            continue
        out[shape.columns[i]] = attribute(value, shape.types[i])
    return out


def change_record(
    change: Change,
    shape: TableShape,
    *,
    end_lsn: int,
    ordinal: int,
    commit_us: int,
    xid: int,
    view: str,
    arn: str,
    region: str,
) -> dict[str, Any]:
    """The DynamoDB Streams record of one change (``ordinal``: its place in the
    transaction that ended at ``end_lsn``)."""
    message = change.message
    old: Tuple | None = None
    new: Tuple | None = None
    if isinstance(message, Insert):
        name, new = "INSERT", message.new
        key_row = new
    elif isinstance(message, Update):
        name, new, old = "MODIFY", message.new, message.old
        key_row = new
    else:
        name, old = "REMOVE", message.old
        key_row = message.old if message.old is not None else message.old_key or ()
    body: dict[str, Any] = {
        "ApproximateCreationDateTime": commit_us // 1_000_000,
        "Keys": _image(shape, key_row, old, only=shape.keys),
    }
    if new is not None and view in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES"):
        body["NewImage"] = _image(shape, new, old)
    if old is not None and view in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES"):
        body["OldImage"] = _image(shape, old)
    images = {k: body[k] for k in ("Keys", "NewImage", "OldImage") if k in body}
    body["SequenceNumber"] = sequence_number(end_lsn, ordinal)
    body["SizeBytes"] = len(json.dumps(images, separators=(",", ":")).encode())
    body["StreamViewType"] = view
    stamp = datetime.fromtimestamp(commit_us / 1_000_000, UTC)
    return {
        "eventID": f"{end_lsn:016x}{ordinal:016x}",
        "eventName": name,
        "eventVersion": EVENT_VERSION,
        "eventSource": EVENT_SOURCE,
        "awsRegion": region,
        "dynamodb": body,
        "eventSourceARN": arn,
        "postgres": {
            "schema": shape.schema,
            "table": shape.name,
            "xid": xid,
            "lsn": lsn_text(end_lsn),
            "commitTime": stamp.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        },
    }
