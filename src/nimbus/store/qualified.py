"""Tables of per-(function, qualifier) settings, such as event invoke configs and
provisioned concurrency: one row per qualifier, listed in qualifier order."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Connection, Table, delete, insert, select, update

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

from nimbus.models import Page
from nimbus.store.functions import FunctionStore, decode_marker, encode_marker

T = TypeVar("T", bound="DataclassInstance")


class QualifiedSettings(Generic[T]):
    """CRUD for a dataclass ``record`` stored in ``table`` keyed by function and qualifier;
    every write goes through ``FunctionStore.writing`` so caches hear of it."""

    def __init__(self, functions: FunctionStore, table: Table, record: type[T]) -> None:
        self.functions = functions
        self.db = functions.db
        self.table = table
        self.record = record
        self._fields = [f.name for f in dataclasses.fields(record)]

    def _row(self, row: Any) -> T:
        return self.record(**{k: row._mapping[k] for k in self._fields})

    def _where(self, function: str, qualifier: str) -> ColumnElement[bool]:
        return (self.table.c.function_name == function) & (self.table.c.qualifier == qualifier)

    def _find(self, conn: Connection, function: str, qualifier: str) -> T | None:
        row = conn.execute(select(self.table).where(self._where(function, qualifier))).first()
        return self._row(row) if row is not None else None

    def find(self, function: str, qualifier: str) -> T | None:
        with self.db.read() as conn:
            return self._find(conn, function, qualifier)

    def _save(self, conn: Connection, value: T, exists: bool) -> None:
        values = dataclasses.asdict(value)
        where = self._where(values["function_name"], values["qualifier"])
        if exists:
            conn.execute(update(self.table).where(where).values(values))
        else:
            conn.execute(insert(self.table).values(values))

    def _delete(self, function: str, qualifier: str) -> None:
        with self.functions.writing(function) as conn:
            conn.execute(delete(self.table).where(self._where(function, qualifier)))

    def list(self, function: str, marker: str | None, max_items: int) -> Page:
        query = (
            select(self.table)
            .where(self.table.c.function_name == function)
            .order_by(self.table.c.qualifier)
        )
        if marker:
            (after,) = decode_marker(marker, 1)
            query = query.where(self.table.c.qualifier > after)
        with self.db.read() as conn:
            self.functions.record(conn, function)
            rows = conn.execute(query.limit(max_items + 1)).all()
        items = [self._row(r) for r in rows[:max_items]]
        nxt = encode_marker(rows[max_items - 1].qualifier) if len(rows) > max_items else None
        return Page(items, nxt)
