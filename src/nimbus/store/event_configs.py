"""Event invoke configs (async retries, max age, destinations) in the metadata store."""

from __future__ import annotations

import dataclasses

from sqlalchemy import delete, insert, select, update

from nimbus.errors import ResourceNotFound
from nimbus.models import EventInvokeConfig, Page
from nimbus.store.functions import FunctionStore, decode_marker, encode_marker
from nimbus.store.schema import event_invoke_configs as table

_FIELDS = [f.name for f in dataclasses.fields(EventInvokeConfig)]


def _row(row: object) -> EventInvokeConfig:
    return EventInvokeConfig(**{k: row._mapping[k] for k in _FIELDS})  # type: ignore[attr-defined]


class EventConfigStore:
    """One config per (function, qualifier); invocations use their qualifier's config."""

    def __init__(self, functions: FunctionStore) -> None:
        self.functions = functions
        self.db = functions.db

    def _where(self, function: str, qualifier: str):  # type: ignore[no-untyped-def]
        return (table.c.function_name == function) & (table.c.qualifier == qualifier)

    def find(self, function: str, qualifier: str) -> EventInvokeConfig | None:
        with self.db.read() as conn:
            row = conn.execute(select(table).where(self._where(function, qualifier))).first()
        return _row(row) if row else None

    def get(self, function: str, qualifier: str) -> EventInvokeConfig:
        config = self.find(function, qualifier)
        if config is None:
            self.functions.get_record(function)
            raise ResourceNotFound(
                "The function "
                f"{self.functions.arn(function, None if qualifier == '$LATEST' else qualifier)} "
                "doesn't have an EventInvokeConfig"
            )
        return config

    def put(self, config: EventInvokeConfig, merge: bool) -> EventInvokeConfig:
        """Put replaces the whole config; Update (``merge``) keeps unspecified members."""
        with self.functions.writing(config.function_name) as conn:
            self.functions.record(conn, config.function_name, lock=True)
            where = self._where(config.function_name, config.qualifier)
            row = conn.execute(select(table).where(where)).first()
            if row is not None and merge:
                current = _row(row)
                changes = {k: v for k, v in dataclasses.asdict(config).items() if v is not None}
                config = dataclasses.replace(current, **changes)
            values = dataclasses.asdict(config)
            if row is None:
                conn.execute(insert(table).values(values))
            else:
                conn.execute(update(table).where(where).values(values))
        return config

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
