"""EventBridge Scheduler schedules and schedule groups in the metadata store (blocking;
call off the loop).

A schedule is keyed by (group, name); the group ``default`` always exists and has no row.
Deleting a group deletes its schedules. Besides what the API stores, each schedule
carries the runner's bookkeeping: the last tick it claimed and a claimed tick whose event
is not yet queued, claimed by compare-and-set so that two processes never fire one tick
twice (see ``nimbus.events.sources.scheduler``).

Messages are EventBridge Scheduler's: ``Schedule NAME already exists.``, ``Schedule NAME
does not exist.``, ``Schedule group NAME does not exist.``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from nimbus.errors import SchedulerConflict, SchedulerNotFound, SchedulerValidation
from nimbus.store.database import Database
from nimbus.store.schema import schedule_groups, schedules

DEFAULT_GROUP = "default"
# Listeners by database, so that every ScheduleStore over one Database (the API's and the
# runner's) tells the same listeners of a change.
_LISTENERS: weakref.WeakKeyDictionary[Database, list[Callable[[], None]]] = (
    weakref.WeakKeyDictionary()
)


@dataclass
class Schedule:
    """One schedule: what the API stores, and the runner's bookkeeping."""

    group: str
    name: str
    expression: str
    timezone: str
    target: dict[str, Any]
    state: str = "ENABLED"
    start_ms: int | None = None
    end_ms: int | None = None
    description: str | None = None
    flexible_window_minutes: int | None = None  # None: FlexibleTimeWindow Mode OFF
    action_after_completion: str = "NONE"
    kms_key_arn: str | None = None
    created_ms: int = 0
    modified_ms: int = 0
    anchor_ms: int = 0  # rate schedules count from here (StartDate, else created/updated)
    last_tick_ms: int = 0  # ticks up to here are fired or were never due
    pending_tick_ms: int | None = None  # claimed; its event not yet confirmed queued

    @property
    def key(self) -> str:
        return f"{self.group}/{self.name}"


@dataclass
class ScheduleGroup:
    name: str
    created_ms: int | None = None  # None for "default", as AWS reports no dates for it
    modified_ms: int | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class SchedulePage:
    items: list[Schedule]
    next_token: str | None


_COLUMNS = [f.name for f in dataclasses.fields(Schedule) if f.name not in ("group",)]


def _row(schedule: Schedule) -> dict[str, Any]:
    values = {name: getattr(schedule, name) for name in _COLUMNS}
    values["group_name"] = schedule.group
    return values


def _schedule(row: Any) -> Schedule:
    values = dict(row._mapping)
    return Schedule(group=values.pop("group_name"), **values)


def encode_token(group: str, name: str) -> str:
    return base64.urlsafe_b64encode(f"{group}/{name}".encode()).decode()


def decode_token(token: str) -> tuple[str, str]:
    try:
        group, slash, name = base64.urlsafe_b64decode(token.encode()).decode().partition("/")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        slash = ""
    if not slash:
        raise SchedulerValidation("Invalid NextToken: pass the NextToken a listing returned.")
    return group, name


class ScheduleStore:
    """Create, read, replace, delete and list schedules and groups; claim ticks."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._listeners = _LISTENERS.setdefault(db, [])

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (from any thread) after every change of a schedule or group
        made through a store over this database, so a runner of this process wakes up."""
        self._listeners.append(listener)

    def off_change(self, listener: Callable[[], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _changed(self) -> None:
        for listener in list(self._listeners):  # a runner may stop (off_change) meanwhile
            listener()

    # -- groups ------------------------------------------------------------------------

    def _group_exists(self, conn: Connection, name: str) -> bool:
        if name == DEFAULT_GROUP:
            return True
        found = conn.execute(select(schedule_groups.c.name).where(schedule_groups.c.name == name))
        return found.first() is not None

    def create_group(self, name: str, tags: dict[str, str], now_ms: int) -> ScheduleGroup:
        group = ScheduleGroup(name, now_ms, now_ms, tags)
        if name == DEFAULT_GROUP:
            raise SchedulerConflict(f"Schedule group {name} already exists.")
        try:
            with self.db.write() as conn:
                conn.execute(insert(schedule_groups).values(
                    name=name, created_ms=now_ms, modified_ms=now_ms, tags=tags
                ))  # fmt: skip
        except IntegrityError as exc:
            raise SchedulerConflict(f"Schedule group {name} already exists.") from exc
        return group

    def get_group(self, name: str) -> ScheduleGroup:
        if name == DEFAULT_GROUP:
            return ScheduleGroup(DEFAULT_GROUP)
        with self.db.read() as conn:
            row = conn.execute(
                select(schedule_groups).where(schedule_groups.c.name == name)
            ).first()
        if row is None:
            raise SchedulerNotFound(f"Schedule group {name} does not exist.")
        return ScheduleGroup(row.name, row.created_ms, row.modified_ms, dict(row.tags))

    def delete_group(self, name: str) -> None:
        """Delete a group and every schedule in it."""
        if name == DEFAULT_GROUP:
            raise SchedulerValidation("You cannot delete the default schedule group.")
        with self.db.write() as conn:
            gone = conn.execute(delete(schedule_groups).where(schedule_groups.c.name == name))
            if not gone.rowcount:
                raise SchedulerNotFound(f"Schedule group {name} does not exist.")
            conn.execute(delete(schedules).where(schedules.c.group_name == name))
        self._changed()

    def set_tags(self, name: str, add: dict[str, str], remove: list[str]) -> None:
        """Tag or untag a group (the default group has no tags, as on AWS)."""
        with self.db.write() as conn:
            row = conn.execute(
                select(schedule_groups.c.tags).where(schedule_groups.c.name == name)
            ).first()
            if row is None:
                raise SchedulerNotFound(f"Schedule group {name} does not exist.")
            tags = {k: v for k, v in dict(row.tags).items() if k not in remove} | add
            conn.execute(
                update(schedule_groups).where(schedule_groups.c.name == name).values(tags=tags)
            )

    def list_groups(self, prefix: str | None = None) -> list[ScheduleGroup]:
        with self.db.read() as conn:
            query = select(schedule_groups).order_by(schedule_groups.c.name)
            if prefix:
                query = query.where(schedule_groups.c.name.startswith(prefix, autoescape=True))
            rows = conn.execute(query).all()
        groups = [ScheduleGroup(r.name, r.created_ms, r.modified_ms, dict(r.tags)) for r in rows]
        if not prefix or DEFAULT_GROUP.startswith(prefix):
            groups.insert(0, ScheduleGroup(DEFAULT_GROUP))
        return groups

    # -- schedules ---------------------------------------------------------------------

    def create(self, schedule: Schedule) -> Schedule:
        try:
            with self.db.write() as conn:
                if not self._group_exists(conn, schedule.group):
                    raise SchedulerNotFound(f"Schedule group {schedule.group} does not exist.")
                conn.execute(insert(schedules).values(**_row(schedule)))
        except IntegrityError as exc:
            raise SchedulerConflict(f"Schedule {schedule.name} already exists.") from exc
        self._changed()
        return schedule

    def get(self, group: str, name: str) -> Schedule:
        with self.db.read() as conn:
            row = conn.execute(
                select(schedules).where(schedules.c.group_name == group, schedules.c.name == name)
            ).first()
            if row is None:
                self._missing(conn, group, name)
        return _schedule(row)

    def _missing(self, conn: Connection, group: str, name: str) -> None:
        if not self._group_exists(conn, group):
            raise SchedulerNotFound(f"Schedule group {group} does not exist.")
        raise SchedulerNotFound(f"Schedule {name} does not exist.")

    def replace(self, schedule: Schedule) -> Schedule:
        """UpdateSchedule: everything but the creation date and a pending tick is replaced
        (the runner's bookkeeping restarts from ``schedule.last_tick_ms``)."""
        with self.db.write() as conn:
            c = schedules.c
            current = conn.execute(
                select(c.created_ms, c.expression, c.timezone, c.start_ms, c.anchor_ms,
                       c.last_tick_ms)
                .where(c.group_name == schedule.group, c.name == schedule.name)
                .with_for_update()
            ).first()
            if current is None:
                self._missing(conn, schedule.group, schedule.name)
            assert current is not None
            schedule.created_ms = current.created_ms
            if (current.expression, current.timezone, current.start_ms) == (
                schedule.expression, schedule.timezone, schedule.start_ms
            ):
                # Same timing (a deploy tool re-applying the schedule, a new Input): the
                # ticks go on as they were; a tick waiting in its flexible window still
                # fires, and a rate schedule keeps its phase.
                schedule.anchor_ms = current.anchor_ms
                schedule.last_tick_ms = current.last_tick_ms
            values = _row(schedule)
            del values["pending_tick_ms"], values["created_ms"]
            conn.execute(
                update(schedules)
                .where(schedules.c.group_name == schedule.group, schedules.c.name == schedule.name)
                .values(**values)
            )
        self._changed()
        return self.get(schedule.group, schedule.name)

    def delete(self, group: str, name: str) -> None:
        with self.db.write() as conn:
            gone = conn.execute(
                delete(schedules).where(schedules.c.group_name == group, schedules.c.name == name)
            )
            if not gone.rowcount:
                self._missing(conn, group, name)
        self._changed()

    def page(
        self,
        group: str | None = None,
        prefix: str | None = None,
        state: str | None = None,
        token: str | None = None,
        limit: int = 100,
    ) -> SchedulePage:
        """One page in (group, name) order; ``token`` is the last page's NextToken."""
        query = select(schedules).order_by(schedules.c.group_name, schedules.c.name)
        if group is not None:
            query = query.where(schedules.c.group_name == group)
        if prefix:
            query = query.where(schedules.c.name.startswith(prefix, autoescape=True))
        if state:
            query = query.where(schedules.c.state == state)
        if token:
            after_group, after_name = decode_token(token)
            query = query.where(
                or_(
                    schedules.c.group_name > after_group,
                    and_(schedules.c.group_name == after_group, schedules.c.name > after_name),
                )
            )
        with self.db.read() as conn:
            if group is not None and not self._group_exists(conn, group):
                raise SchedulerNotFound(f"Schedule group {group} does not exist.")
            rows = conn.execute(query.limit(limit + 1)).all()
        items = [_schedule(r) for r in rows[:limit]]
        more = len(rows) > limit
        return SchedulePage(items, encode_token(items[-1].group, items[-1].name) if more else None)

    # -- what the runner needs ---------------------------------------------------------

    def enabled(self) -> list[Schedule]:
        """Every enabled schedule, and any schedule with a tick still to queue."""
        with self.db.read() as conn:
            rows = conn.execute(
                select(schedules).where(
                    or_(schedules.c.state == "ENABLED", schedules.c.pending_tick_ms.is_not(None))
                )
            ).all()
        return [_schedule(r) for r in rows]

    def claim(self, schedule: Schedule, tick_ms: int) -> bool:
        """Take ``tick_ms`` for firing: only if nobody moved the schedule on since it was
        read (another process fired it, or the user updated it). One conditional write,
        so of two processes claiming one tick exactly one wins."""
        with self.db.write() as conn:
            won = conn.execute(
                update(schedules)
                .where(
                    schedules.c.group_name == schedule.group,
                    schedules.c.name == schedule.name,
                    schedules.c.last_tick_ms == schedule.last_tick_ms,
                    schedules.c.modified_ms == schedule.modified_ms,
                    schedules.c.pending_tick_ms.is_(None),
                )
                .values(last_tick_ms=tick_ms, pending_tick_ms=tick_ms)
            ).rowcount
        return bool(won)

    def settle(self, schedule: Schedule, tick_ms: int, delete_it: bool = False) -> None:
        """The event of ``tick_ms`` is queued: clear it (and delete a completed one-time
        schedule whose ActionAfterCompletion is DELETE)."""
        where = (
            schedules.c.group_name == schedule.group,
            schedules.c.name == schedule.name,
            schedules.c.pending_tick_ms == tick_ms,
        )
        with self.db.write() as conn:
            if delete_it:
                conn.execute(delete(schedules).where(*where))
            else:
                conn.execute(update(schedules).where(*where).values(pending_tick_ms=None))
