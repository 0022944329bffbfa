"""Dead letters: accepted events that exhausted retries or age, kept with the reason
until someone re-drives them."""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import Row, insert, select, update

from nimbus.errors import ResourceNotFound
from nimbus.models import DeadLetter
from nimbus.store.database import Database
from nimbus.store.schema import dead_letters as table

_FIELDS = [f.name for f in dataclasses.fields(DeadLetter)]


def _row(row: Row[Any]) -> DeadLetter:
    return DeadLetter(**{k: row._mapping[k] for k in _FIELDS})


class DeadLetterStore:
    """Append-only, except for marking a letter re-driven."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, letter: DeadLetter) -> int:
        values = {k: v for k, v in dataclasses.asdict(letter).items() if k != "id"}
        with self.db.write() as conn:
            key = conn.execute(insert(table).values(values)).inserted_primary_key
            assert key is not None  # an INSERT of one row always has one
            return int(key[0])

    def get(self, letter_id: int) -> DeadLetter:
        with self.db.read() as conn:
            row = conn.execute(select(table).where(table.c.id == letter_id)).first()
        if row is None:
            raise ResourceNotFound(f"Dead letter {letter_id} not found.")
        return _row(row)

    def list(
        self,
        function: str | None = None,
        queue: str | None = None,
        include_redriven: bool = False,
        after_id: int = 0,
        limit: int = 100,
    ) -> list[DeadLetter]:
        query = select(table).where(table.c.id > after_id).order_by(table.c.id).limit(limit)
        if function:
            query = query.where(table.c.function_name == function)
        if queue:
            query = query.where(table.c.queue == queue)
        if not include_redriven:
            query = query.where(table.c.redriven_ms.is_(None))
        with self.db.read() as conn:
            return [_row(r) for r in conn.execute(query).all()]

    def mark_redriven(self, letter_id: int, when_ms: int) -> bool:
        """True if this call re-drove it (False: someone already had)."""
        with self.db.write() as conn:
            result = conn.execute(
                update(table)
                .where(table.c.id == letter_id, table.c.redriven_ms.is_(None))
                .values(redriven_ms=when_ms)
            )
            return result.rowcount == 1
