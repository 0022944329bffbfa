"""Provisioned concurrency configs (how many environments to keep initialised)."""

from __future__ import annotations

import dataclasses

from sqlalchemy import delete, insert, select, update

from nimbus.errors import ProvisionedConcurrencyConfigNotFound
from nimbus.models import Page, ProvisionedConfig
from nimbus.store.functions import FunctionStore, decode_marker, encode_marker
from nimbus.store.schema import provisioned_concurrency as table

_FIELDS = [f.name for f in dataclasses.fields(ProvisionedConfig)]


def _row(row: object) -> ProvisionedConfig:
    return ProvisionedConfig(**{k: row._mapping[k] for k in _FIELDS})  # type: ignore[attr-defined]


class ProvisionedStore:
    def __init__(self, functions: FunctionStore) -> None:
        self.functions = functions
        self.db = functions.db

    def _where(self, function: str, qualifier: str):  # type: ignore[no-untyped-def]
        return (table.c.function_name == function) & (table.c.qualifier == qualifier)

    def put(self, config: ProvisionedConfig) -> ProvisionedConfig:
        with self.functions.writing(config.function_name) as conn:
            self.functions.record(conn, config.function_name, lock=True)
            where = self._where(config.function_name, config.qualifier)
            values = dataclasses.asdict(config)
            if conn.execute(select(table.c.qualifier).where(where)).first() is None:
                conn.execute(insert(table).values(values))
            else:
                conn.execute(update(table).where(where).values(values))
        return config

    def get(self, function: str, qualifier: str) -> ProvisionedConfig:
        with self.db.read() as conn:
            self.functions.record(conn, function)
            row = conn.execute(select(table).where(self._where(function, qualifier))).first()
        if row is None:
            raise ProvisionedConcurrencyConfigNotFound(
                f"No Provisioned Concurrency Config found for this function "
                f"({self.functions.arn(function, qualifier)})"
            )
        return _row(row)

    def delete(self, function: str, qualifier: str) -> None:
        self.get(function, qualifier)
        with self.functions.writing(function) as conn:
            conn.execute(delete(table).where(self._where(function, qualifier)))

    def list(self, function: str, marker: str | None, max_items: int) -> Page:
        query = select(table).where(table.c.function_name == function).order_by(table.c.qualifier)
        if marker:
            (after,) = decode_marker(marker, 1)
            query = query.where(table.c.qualifier > after)
        with self.db.read() as conn:
            self.functions.record(conn, function)
            rows = conn.execute(query.limit(max_items + 1)).all()
        items = [_row(r) for r in rows[:max_items]]
        nxt = encode_marker(items[-1].qualifier) if len(rows) > max_items else None
        return Page(items, nxt)

    def all(self) -> list[ProvisionedConfig]:
        with self.db.read() as conn:
            return [_row(r) for r in conn.execute(select(table)).all()]
