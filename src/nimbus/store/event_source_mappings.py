"""Lambda event source mappings in the metadata store (blocking; call off the loop).

A mapping's ``state`` follows Lambda's: the API writes the transitional one (Creating,
Enabling, Disabling, Updating, Deleting) and the process that runs (or stops) its poller
settles it (Enabled, Disabled, or the row's removal). Settling is conditional on the
mapping's ``revision``, so it never overwrites a change made meanwhile.

Processes learn of changes made through this process at once (``listen``), and of
changes made elsewhere by reading the table again.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, delete, insert, or_, select, update

from nimbus.errors import ResourceConflict, ResourceNotFound
from nimbus.models import Page
from nimbus.store.database import Database
from nimbus.store.functions import decode_marker, encode_marker, marker_number
from nimbus.store.schema import event_source_mappings as table

NOT_FOUND = "The resource you requested does not exist."
# States a mapping is in while its poller should run.
RUNNING_STATES = ("Creating", "Enabling", "Enabled", "Updating")


@dataclass
class MappingSettings:
    """A mapping's options, as stored (None: not applicable to its source)."""

    batch_size: int
    maximum_batching_window: int
    filters: list[str] = field(default_factory=list)  # FilterCriteria.Filters[].Pattern
    function_response_types: list[str] = field(default_factory=list)
    maximum_retry_attempts: int | None = None
    bisect_batch_on_function_error: bool | None = None
    maximum_record_age: int | None = None
    on_failure: str | None = None  # DestinationConfig.OnFailure.Destination
    starting_position: str | None = None
    starting_position_timestamp: float | None = None
    maximum_concurrency: int | None = None  # ScalingConfig.MaximumConcurrency
    filters_given: bool = False  # FilterCriteria was set (possibly to no filters)
    destination_given: bool = False  # DestinationConfig was set (possibly empty)


@dataclass
class EventSourceMapping:
    uuid: str
    function_name: str
    qualifier: str | None
    event_source_arn: str
    kind: str  # "sqs", or the broker URI's scheme: "redis", "amqp", "nats", "mqtt"
    enabled: bool
    state: str
    state_reason: str
    settings: MappingSettings
    revision: int = 1
    created_ms: int = 0
    last_modified: float = 0.0
    last_processing_result: str | None = None

    @property
    def should_run(self) -> bool:
        return self.enabled and self.state in RUNNING_STATES


def _row(row: Any) -> EventSourceMapping:
    m = row._mapping
    return EventSourceMapping(
        uuid=m["uuid"],
        function_name=m["function_name"],
        qualifier=m["qualifier"],
        event_source_arn=m["event_source_arn"],
        kind=m["kind"],
        enabled=bool(m["enabled"]),
        state=m["state"],
        state_reason=m["state_reason"],
        settings=MappingSettings(**m["settings"]),
        revision=m["revision"],
        created_ms=m["created_ms"],
        last_modified=m["last_modified"],
        last_processing_result=m["last_processing_result"],
    )


def _values(mapping: EventSourceMapping) -> dict[str, Any]:
    values = dataclasses.asdict(mapping)
    values["settings"] = dataclasses.asdict(mapping.settings)
    return values


Listener = Callable[[str], object]
# Listeners per database: every MappingStore over one Database tells the same ones.
_listeners: weakref.WeakKeyDictionary[Database, list[Listener]] = weakref.WeakKeyDictionary()


class MappingStore:
    """Create, read, update and delete event source mappings."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def listen(db: Database, listener: Listener) -> None:
        """Call ``listener(uuid)`` after each change committed through this process."""
        _listeners.setdefault(db, []).append(listener)

    @staticmethod
    def unlisten(db: Database, listener: Listener) -> None:
        found = _listeners.get(db, [])
        if listener in found:
            found.remove(listener)

    def _changed(self, uuid: str) -> None:
        for listener in list(_listeners.get(self.db, [])):
            listener(uuid)

    def create(self, mapping: EventSourceMapping, duplicate: Callable[[str], str]) -> None:
        """Store a new mapping; ResourceConflict with ``duplicate(existing uuid)`` if one
        already maps the same source to the same function and qualifier."""
        with self.db.write() as conn:
            existing = conn.execute(
                select(table.c.uuid).where(
                    table.c.event_source_arn == mapping.event_source_arn,
                    table.c.function_name == mapping.function_name,
                    table.c.qualifier.is_(None)
                    if mapping.qualifier is None
                    else table.c.qualifier == mapping.qualifier,
                )
            ).first()
            if existing is not None:
                raise ResourceConflict(duplicate(existing.uuid))
            conn.execute(insert(table).values(**_values(mapping)))
        self._changed(mapping.uuid)

    def find(self, uuid: str) -> EventSourceMapping | None:
        with self.db.read() as conn:
            row = conn.execute(select(table).where(table.c.uuid == uuid)).first()
        return None if row is None else _row(row)

    def get(self, uuid: str) -> EventSourceMapping:
        found = self.find(uuid)
        if found is None:
            raise ResourceNotFound(NOT_FOUND)
        return found

    def replace(
        self,
        uuid: str,
        change: Callable[[EventSourceMapping], EventSourceMapping],
        duplicate: Callable[[str], str] | None = None,
    ) -> EventSourceMapping:
        """Apply ``change`` to the stored mapping in one transaction (a new revision);
        ResourceNotFound if it is gone. A change of function is checked for duplicates."""
        with self.db.write() as conn:
            row = conn.execute(select(table).where(table.c.uuid == uuid)).first()
            if row is None:
                raise ResourceNotFound(NOT_FOUND)
            current = _row(row)
            changed = change(dataclasses.replace(current))
            changed.revision = current.revision + 1
            if duplicate is not None and (
                changed.function_name,
                changed.qualifier,
            ) != (current.function_name, current.qualifier):
                self._check_duplicate(conn, changed, duplicate)
            conn.execute(update(table).where(table.c.uuid == uuid).values(**_values(changed)))
        self._changed(uuid)
        return changed

    @staticmethod
    def _check_duplicate(
        conn: Connection, mapping: EventSourceMapping, duplicate: Callable[[str], str]
    ) -> None:
        existing = conn.execute(
            select(table.c.uuid, table.c.qualifier).where(
                table.c.event_source_arn == mapping.event_source_arn,
                table.c.function_name == mapping.function_name,
                table.c.uuid != mapping.uuid,
            )
        ).all()
        for row in existing:
            if row.qualifier == mapping.qualifier:
                raise ResourceConflict(duplicate(row.uuid))

    def settle(
        self,
        uuid: str,
        revision: int,
        state: str,
        last_processing_result: str | None = None,
    ) -> bool:
        """Set the state the poller reached, unless the mapping changed meanwhile
        (another revision) or is gone; True if it was set."""
        values: dict[str, Any] = {"state": state}
        if last_processing_result is not None:
            values["last_processing_result"] = last_processing_result
        with self.db.write() as conn:
            done = conn.execute(
                update(table)
                .where(table.c.uuid == uuid, table.c.revision == revision)
                .values(**values)
            ).rowcount
        return bool(done)

    def note_result(self, uuid: str, result: str) -> None:
        """LastProcessingResult, whatever the revision (blocking)."""
        column = table.c.last_processing_result
        with self.db.write() as conn:
            conn.execute(
                update(table)
                .where(table.c.uuid == uuid, or_(column.is_(None), column != result))
                .values(last_processing_result=result)
            )

    def remove(self, uuid: str, revision: int | None = None) -> bool:
        """Delete the row (once its poller stopped); at ``revision`` only, if given."""
        with self.db.write() as conn:
            query = delete(table).where(table.c.uuid == uuid)
            if revision is not None:
                query = query.where(table.c.revision == revision)
            done = conn.execute(query).rowcount
        return bool(done)

    def all(self) -> list[EventSourceMapping]:
        with self.db.read() as conn:
            rows = conn.execute(select(table).order_by(table.c.created_ms, table.c.uuid)).all()
        return [_row(r) for r in rows]

    def list(
        self,
        function_name: str | None,
        qualifier: str | None,
        event_source_arn: str | None,
        marker: str | None,
        max_items: int,
    ) -> Page:
        query = select(table).order_by(table.c.created_ms, table.c.uuid)
        if function_name is not None:
            query = query.where(table.c.function_name == function_name)
            if qualifier is not None:
                query = query.where(table.c.qualifier == qualifier)
        if event_source_arn is not None:
            query = query.where(table.c.event_source_arn == event_source_arn)
        if marker:
            created, uuid = decode_marker(marker, 2)
            after = marker_number(created)
            query = query.where(
                (table.c.created_ms > after)
                | ((table.c.created_ms == after) & (table.c.uuid > uuid))
            )
        with self.db.read() as conn:
            rows = conn.execute(query.limit(max_items + 1)).all()
        items = [_row(r) for r in rows[:max_items]]
        next_marker = None
        if len(rows) > max_items:
            last = items[-1]
            next_marker = encode_marker(last.created_ms, last.uuid)
        return Page(items, next_marker)
