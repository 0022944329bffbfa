"""Listing keys in UTF-8 byte order, S3's way: under a prefix, after a cursor, with keys
that hold the delimiter past the prefix rolled up into one common prefix each.

A rolled-up prefix is skipped in one seek (the next query starts at its successor), so a
page costs one query per common prefix at most, however many keys sit under each.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, select

from nimbus.s3.records import ListPage, ObjectInfo
from nimbus.s3.tables import s3_objects

OBJ = s3_objects.c
BATCH = 1000


def successor(text: str) -> str | None:
    """The least string greater than every string starting with ``text`` (None: no
    such string, ``text`` is empty or all U+10FFFF)."""
    chars = list(text)
    while chars:
        code = ord(chars.pop()) + 1
        if code <= 0x10FFFF:
            if 0xD800 <= code <= 0xDFFF:  # surrogates are not characters of UTF-8
                code = 0xE000
            return "".join(chars) + chr(code)
    return None


def rolled_up(item: str, prefix: str, delimiter: str) -> bool:
    """Whether ``item`` (a key or cursor) stands for a common prefix in this listing."""
    return bool(delimiter) and delimiter in item[len(prefix) :] and item.startswith(prefix)


def info_of(bucket: str, row: Any) -> ObjectInfo:
    return ObjectInfo(
        bucket=bucket,
        key=row.key,
        blob=row.blob,
        size=row.size,
        etag=row.etag,
        last_modified_ms=row.last_modified_ms,
        headers=dict(row.headers or {}),
        metadata=dict(row.metadata or {}),
        checksum=row.checksum,
        parts=row.parts,
    )


def list_keys(
    conn: Connection,
    bucket: str,
    *,
    prefix: str = "",
    delimiter: str = "",
    after: str | None = None,
    max_keys: int = 1000,
) -> ListPage:
    """A page of at most ``max_keys`` objects and common prefixes, starting after
    ``after`` (a key or a common prefix a previous page returned, or StartAfter)."""
    upper = successor(prefix) if prefix else None
    cursor, inclusive = prefix, True
    if after is not None and after >= prefix:
        if rolled_up(after, prefix, delimiter):
            # Everything under that common prefix was returned as it.
            cut = after[len(prefix) :]
            common = prefix + cut[: cut.index(delimiter) + len(delimiter)]
            nxt = successor(common)
            if nxt is None:
                return ListPage([], [], False, None)
            cursor = nxt
        else:
            cursor, inclusive = after, False
    contents: list[ObjectInfo] = []
    prefixes: list[str] = []
    last: str | None = None
    while len(contents) + len(prefixes) < max_keys:
        want = min(BATCH, max_keys - len(contents) - len(prefixes))
        rows = conn.execute(
            select(s3_objects)
            .where(_window(bucket, cursor, inclusive, upper))
            .order_by(OBJ.key)
            .limit(want)
        ).all()
        if not rows:
            return ListPage(contents, prefixes, False, last)
        for row in rows:
            rest = row.key[len(prefix) :]
            at = rest.find(delimiter) if delimiter else -1
            if at >= 0:
                common = prefix + rest[: at + len(delimiter)]
                prefixes.append(common)
                last = common
                nxt = successor(common)
                if nxt is None:
                    return ListPage(contents, prefixes, False, last)
                cursor, inclusive = nxt, True
                break  # seek past the common prefix
            contents.append(info_of(bucket, row))
            last = row.key
            cursor, inclusive = row.key, False
        else:
            if len(rows) < want:
                return ListPage(contents, prefixes, False, last)
    more = conn.execute(
        select(OBJ.key).where(_window(bucket, cursor, inclusive, upper)).limit(1)
    ).first()
    return ListPage(contents, prefixes, more is not None, last)


def _window(bucket: str, cursor: str, inclusive: bool, upper: str | None) -> ColumnElement[bool]:
    conditions = [OBJ.bucket == bucket, OBJ.key >= cursor if inclusive else OBJ.key > cursor]
    if upper is not None:
        conditions.append(OBJ.key < upper)
    return and_(*conditions)
