"""API keys, usage plans, the keys in each plan, and per-day usage, in the metadata store.

Every change is one transaction (nothing half-stored) and, once committed, tells the
listeners (the usage gate reloads its in-memory index through ``on_change``). Usage
counts arrive in batches from the gate's write-behind, never per request.

In a cluster (``share_changes``), each change also bumps a version row in the same
transaction, which the other servers' gates poll, and deleting a key, a plan or a key's
membership drops their shared quota counters and buckets (``store.shared_limits``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from nimbus.errors import Conflict, NotFound
from nimbus.models import ApiKey, ApiKeyIndex, Page, UsagePlan, UsagePlanStage
from nimbus.store.database import Database
from nimbus.store.schema import (
    api_key_usage,
    api_keys,
    usage_plan_keys,
    usage_plan_stages,
    usage_plans,
)
from nimbus.store.shared_limits import bump_version, forget

_KEY_FIELDS = [f.name for f in dataclasses.fields(ApiKey)]
_PLAN_COLUMNS = [f.name for f in dataclasses.fields(UsagePlan) if f.name != "api_stages"]

VERSION = "api_keys"  # the shared_versions row of keys, plans and memberships
# (key id, plan id, UTC day as an ISO date) -> requests to add
UsageBatch = dict[tuple[str, str, str], int]


def _key(row: Any) -> ApiKey:
    return ApiKey(**{name: row._mapping[name] for name in _KEY_FIELDS})


def key_not_found(key_id: str) -> NotFound:
    return NotFound(f"Invalid API Key identifier specified: {key_id}")


def plan_not_found(plan_id: str) -> NotFound:
    return NotFound(f"Invalid Usage Plan ID specified: {plan_id}")


class ApiKeyStore:
    """Create, read, update and delete API keys and usage plans; record their usage."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.generation = 0  # bumped after every committed change
        self._listeners: list[Callable[[], None]] = []
        self._shared = False

    def share_changes(self) -> None:
        """Tell the other servers of a cluster about every change (PostgreSQL only)."""
        self._shared = True

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` (in the writer's thread) after each committed change."""
        self._listeners.append(listener)

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        with self.db.write() as conn:
            yield conn
            if self._shared:
                bump_version(conn, VERSION)
        self.generation += 1
        for listener in self._listeners:
            listener()

    # -- API keys --------------------------------------------------------------------

    def create_key(self, key: ApiKey) -> ApiKey:
        with self._writing() as conn:
            self._check_value_free(conn, key.value, key.id)
            conn.execute(insert(api_keys).values(dataclasses.asdict(key)))
        return key

    def get_key(self, key_id: str) -> ApiKey:
        with self.db.read() as conn:
            return self._get_key(conn, key_id)

    def list_keys(
        self,
        *,
        name_query: str | None = None,
        customer_id: str | None = None,
        position: str | None = None,
        limit: int = 25,
    ) -> Page:
        query = select(api_keys).order_by(api_keys.c.id).limit(limit + 1)
        if name_query:
            query = query.where(api_keys.c.name.startswith(name_query, autoescape=True))
        if customer_id:
            query = query.where(api_keys.c.customer_id == customer_id)
        if position:
            query = query.where(api_keys.c.id > position)
        with self.db.read() as conn:
            keys = [_key(row) for row in conn.execute(query).all()]
        return _page(keys, limit, lambda k: k.id)

    def update_key(self, key_id: str, apply: Callable[[ApiKey], ApiKey]) -> ApiKey:
        """Read, ``apply`` the change, write: one transaction, so a failing ``apply``
        (bad patch) changes nothing."""
        with self._writing() as conn:
            key = apply(self._get_key(conn, key_id, lock=True))
            values = dataclasses.asdict(key)
            del values["id"]
            conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(values))
        return key

    def delete_key(self, key_id: str) -> None:
        with self._writing() as conn:
            self._get_key(conn, key_id, lock=True)
            conn.execute(delete(api_key_usage).where(api_key_usage.c.key_id == key_id))
            conn.execute(delete(usage_plan_keys).where(usage_plan_keys.c.key_id == key_id))
            conn.execute(delete(api_keys).where(api_keys.c.id == key_id))
            if self._shared:
                forget(conn, key_id=key_id)

    def _get_key(self, conn: Connection, key_id: str, lock: bool = False) -> ApiKey:
        query = select(api_keys).where(api_keys.c.id == key_id)
        if lock:
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            raise key_not_found(key_id)
        return _key(row)

    def _check_value_free(self, conn: Connection, value: str, key_id: str) -> None:
        query = select(api_keys.c.id).where(api_keys.c.value == value, api_keys.c.id != key_id)
        if conn.execute(query).first() is not None:
            raise Conflict("An API key with this value already exists; values must be unique.")

    # -- usage plans -----------------------------------------------------------------

    def create_plan(self, plan: UsagePlan) -> UsagePlan:
        with self._writing() as conn:
            conn.execute(insert(usage_plans).values(_plan_values(plan)))
            self._save_stages(conn, plan)
        return plan

    def get_plan(self, plan_id: str) -> UsagePlan:
        with self.db.read() as conn:
            return self._get_plan(conn, plan_id)

    def list_plans(
        self, *, key_id: str | None = None, position: str | None = None, limit: int = 25
    ) -> Page:
        query = select(usage_plans).order_by(usage_plans.c.id).limit(limit + 1)
        if key_id:
            in_plan = select(usage_plan_keys.c.plan_id).where(usage_plan_keys.c.key_id == key_id)
            query = query.where(usage_plans.c.id.in_(in_plan))
        if position:
            query = query.where(usage_plans.c.id > position)
        with self.db.read() as conn:
            rows = conn.execute(query).all()
            stages = self._stages(conn, [row.id for row in rows])
        plans = [_plan(row, stages.get(row.id, [])) for row in rows]
        return _page(plans, limit, lambda p: p.id)

    def update_plan(self, plan_id: str, apply: Callable[[UsagePlan], UsagePlan]) -> UsagePlan:
        """Read, ``apply`` the change, check that no key of the plan would then be metered
        by two plans on one stage, write: one transaction."""
        with self._writing() as conn:
            plan = apply(self._get_plan(conn, plan_id, lock=True))
            keys = conn.execute(
                select(usage_plan_keys.c.key_id).where(usage_plan_keys.c.plan_id == plan_id)
            ).scalars()
            for key_id in keys:
                self._check_stage_conflicts(conn, key_id, plan)
            values = _plan_values(plan)
            del values["id"]
            conn.execute(update(usage_plans).where(usage_plans.c.id == plan_id).values(values))
            self._save_stages(conn, plan)
        return plan

    def delete_plan(self, plan_id: str) -> None:
        with self._writing() as conn:
            self._get_plan(conn, plan_id, lock=True)
            conn.execute(delete(api_key_usage).where(api_key_usage.c.plan_id == plan_id))
            conn.execute(delete(usage_plan_keys).where(usage_plan_keys.c.plan_id == plan_id))
            conn.execute(delete(usage_plan_stages).where(usage_plan_stages.c.plan_id == plan_id))
            conn.execute(delete(usage_plans).where(usage_plans.c.id == plan_id))
            if self._shared:
                forget(conn, plan_id=plan_id)

    def _get_plan(self, conn: Connection, plan_id: str, lock: bool = False) -> UsagePlan:
        query = select(usage_plans).where(usage_plans.c.id == plan_id)
        if lock:
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            raise plan_not_found(plan_id)
        return _plan(row, self._stages(conn, [plan_id]).get(plan_id, []))

    def _stages(self, conn: Connection, plan_ids: list[str]) -> dict[str, list[UsagePlanStage]]:
        query = (
            select(usage_plan_stages)
            .where(usage_plan_stages.c.plan_id.in_(plan_ids))
            .order_by(usage_plan_stages.c.api_id, usage_plan_stages.c.stage)
        )
        found: dict[str, list[UsagePlanStage]] = {}
        for row in conn.execute(query).all():
            found.setdefault(row.plan_id, []).append(UsagePlanStage(row.api_id, row.stage))
        return found

    def _save_stages(self, conn: Connection, plan: UsagePlan) -> None:
        conn.execute(delete(usage_plan_stages).where(usage_plan_stages.c.plan_id == plan.id))
        rows = [{"plan_id": plan.id, "api_id": s.api_id, "stage": s.stage} for s in plan.api_stages]
        if rows:
            conn.execute(insert(usage_plan_stages), rows)

    def _check_stage_conflicts(self, conn: Connection, key_id: str, plan: UsagePlan) -> None:
        """A key is metered by at most one plan per API stage (as in API Gateway), so the
        gate finds a request's plan with one lookup."""
        wanted = {(s.api_id, s.stage) for s in plan.api_stages}
        if not wanted:
            return
        query = (
            select(usage_plan_stages)
            .join(usage_plan_keys, usage_plan_keys.c.plan_id == usage_plan_stages.c.plan_id)
            .where(usage_plan_keys.c.key_id == key_id, usage_plan_keys.c.plan_id != plan.id)
        )
        for row in conn.execute(query).all():
            if (row.api_id, row.stage) in wanted:
                raise Conflict(
                    f"Usage Plan {plan.id} cannot be used by API Key {key_id}: the key already "
                    f"is in Usage Plan {row.plan_id} for the same API stage "
                    f"{row.api_id}:{row.stage}, and a key can be in only one plan per stage."
                )

    # -- keys in plans ---------------------------------------------------------------

    def add_plan_key(self, plan_id: str, key_id: str) -> ApiKey:
        with self._writing() as conn:
            plan = self._get_plan(conn, plan_id, lock=True)
            key = self._get_key(conn, key_id)
            exists = select(usage_plan_keys).where(
                usage_plan_keys.c.plan_id == plan_id, usage_plan_keys.c.key_id == key_id
            )
            if conn.execute(exists).first() is not None:
                raise Conflict(f"API Key {key_id} is already in Usage Plan {plan_id}.")
            self._check_stage_conflicts(conn, key_id, plan)
            conn.execute(insert(usage_plan_keys).values(plan_id=plan_id, key_id=key_id))
        return key

    def get_plan_key(self, plan_id: str, key_id: str) -> ApiKey:
        with self.db.read() as conn:
            self._get_plan(conn, plan_id)
            row = conn.execute(
                select(api_keys)
                .join(usage_plan_keys, usage_plan_keys.c.key_id == api_keys.c.id)
                .where(usage_plan_keys.c.plan_id == plan_id, api_keys.c.id == key_id)
            ).first()
        if row is None:
            raise NotFound(f"Invalid Usage Plan Key identifier specified: {key_id}")
        return _key(row)

    def list_plan_keys(
        self,
        plan_id: str,
        *,
        name_query: str | None = None,
        position: str | None = None,
        limit: int = 25,
    ) -> Page:
        query = (
            select(api_keys)
            .join(usage_plan_keys, usage_plan_keys.c.key_id == api_keys.c.id)
            .where(usage_plan_keys.c.plan_id == plan_id)
            .order_by(api_keys.c.id)
            .limit(limit + 1)
        )
        if name_query:
            query = query.where(api_keys.c.name.startswith(name_query, autoescape=True))
        if position:
            query = query.where(api_keys.c.id > position)
        with self.db.read() as conn:
            self._get_plan(conn, plan_id)
            keys = [_key(row) for row in conn.execute(query).all()]
        return _page(keys, limit, lambda k: k.id)

    def remove_plan_key(self, plan_id: str, key_id: str) -> None:
        with self._writing() as conn:
            self._get_plan(conn, plan_id, lock=True)
            removed = conn.execute(
                delete(usage_plan_keys).where(
                    usage_plan_keys.c.plan_id == plan_id, usage_plan_keys.c.key_id == key_id
                )
            ).rowcount
            if not removed:
                raise NotFound(f"Invalid Usage Plan Key identifier specified: {key_id}")
            conn.execute(
                delete(api_key_usage).where(
                    api_key_usage.c.plan_id == plan_id, api_key_usage.c.key_id == key_id
                )
            )
            if self._shared:
                forget(conn, key_id=key_id, plan_id=plan_id)

    # -- usage -----------------------------------------------------------------------

    def usage(
        self, plan_id: str, key_ids: Iterable[str], first_day: str, last_day: str
    ) -> dict[str, dict[str, int]]:
        """{key id: {day: requests}} for days in [first_day, last_day] (ISO dates)."""
        query = select(api_key_usage).where(
            api_key_usage.c.plan_id == plan_id,
            api_key_usage.c.key_id.in_(list(key_ids)),
            api_key_usage.c.day >= first_day,
            api_key_usage.c.day <= last_day,
        )
        found: dict[str, dict[str, int]] = {}
        with self.db.read() as conn:
            for row in conn.execute(query).all():
                found.setdefault(row.key_id, {})[row.day] = int(row.used)
        return found

    def add_usage(self, batch: UsageBatch) -> int:
        """Add counted requests; pairs whose key is no longer in the plan (deleted
        meanwhile) are dropped. Returns the number of rows written. No change event:
        usage is not configuration."""
        if not batch:
            return 0
        written = 0
        with self.db.write() as conn:
            pairs = {
                (row.key_id, row.plan_id)
                for row in conn.execute(
                    select(usage_plan_keys.c.key_id, usage_plan_keys.c.plan_id).where(
                        usage_plan_keys.c.key_id.in_({key for key, _, _ in batch})
                    )
                ).all()
            }
            for (key_id, plan_id, day), count in sorted(batch.items()):
                if (key_id, plan_id) not in pairs or count <= 0:
                    continue
                where = (
                    api_key_usage.c.key_id == key_id,
                    api_key_usage.c.plan_id == plan_id,
                    api_key_usage.c.day == day,
                )
                changed = conn.execute(
                    update(api_key_usage).where(*where).values(used=api_key_usage.c.used + count)
                ).rowcount
                if not changed:
                    conn.execute(
                        insert(api_key_usage).values(
                            key_id=key_id, plan_id=plan_id, day=day, used=count
                        )
                    )
                written += 1
        return written

    # -- the gate's view -------------------------------------------------------------

    def index(self, since_day: str) -> ApiKeyIndex:
        """Every key, plan and key-in-plan, with usage from ``since_day`` on: what the
        usage gate keeps in memory. Read in one transaction, so it is consistent."""
        with self.db.read() as conn, conn.begin():
            keys = [_key(row) for row in conn.execute(select(api_keys)).all()]
            rows = conn.execute(select(usage_plans)).all()
            stages = self._stages(conn, [row.id for row in rows])
            plans = {row.id: _plan(row, stages.get(row.id, [])) for row in rows}
            memberships = conn.execute(select(usage_plan_keys)).all()
            usage_rows = conn.execute(
                select(api_key_usage).where(api_key_usage.c.day >= since_day)
            ).all()
        plan_for: dict[tuple[str, str, str], str] = {}
        for row in memberships:
            for stage in plans[row.plan_id].api_stages:
                plan_for[(row.key_id, stage.api_id, stage.stage)] = row.plan_id
        usage: dict[tuple[str, str], dict[str, int]] = {}
        for row in usage_rows:
            usage.setdefault((row.key_id, row.plan_id), {})[row.day] = int(row.used)
        return ApiKeyIndex(
            keys_by_value={key.value: key for key in keys},
            plans=plans,
            plan_for=plan_for,
            usage=usage,
        )


def _plan(row: Any, stages: list[UsagePlanStage]) -> UsagePlan:
    values = {name: row._mapping[name] for name in _PLAN_COLUMNS}
    return UsagePlan(**values, api_stages=list(stages))


def _plan_values(plan: UsagePlan) -> dict[str, Any]:
    values = dataclasses.asdict(plan)
    del values["api_stages"]
    return values


def _page(items: list[Any], limit: int, position: Callable[[Any], str]) -> Page:
    """``items`` holds up to ``limit + 1`` rows: the extra one says there is a next page."""
    if len(items) > limit:
        items = items[:limit]
        return Page(items=items, next_marker=position(items[-1]))
    return Page(items=items, next_marker=None)
