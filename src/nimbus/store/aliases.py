"""Aliases in the metadata database (blocking; call off the loop)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from nimbus.errors import InvalidParameterValue, ResourceConflict, ResourceNotFound
from nimbus.models import LATEST, Alias, Page
from nimbus.store.functions import (
    NO_ALIAS,
    FunctionStore,
    check_revision,
    decode_marker,
    encode_marker,
    forget_qualifier,
)
from nimbus.store.schema import aliases


def _row_to_alias(row: Row[Any]) -> Alias:
    m = row._mapping
    return Alias(
        function_name=m["function_name"],
        name=m["name"],
        function_version=m["function_version"],
        description=m["description"],
        routing=dict(m["routing"] or {}),
        revision_id=m["revision_id"],
    )


class AliasStore:
    """Aliases point at a version and may route a share of traffic to one more."""

    def __init__(self, functions: FunctionStore) -> None:
        self.functions = functions
        self.db = functions.db

    def _alias(self, conn: Connection, function: str, name: str, missing: str) -> Alias:
        """The alias; else "Function not found" (no function) or ``missing`` and the
        alias' ARN (Lambda words it per operation)."""
        row = conn.execute(
            select(aliases).where(aliases.c.function_name == function, aliases.c.name == name)
        ).first()
        if row is None:
            self.functions.record(conn, function)
            raise ResourceNotFound(f"{missing}: {self.functions.arn(function, name)}")
        return _row_to_alias(row)

    def _check_targets(self, conn: Connection, alias: Alias) -> None:
        self.functions.version(conn, alias.function_name, alias.function_version)
        if not alias.routing:
            return
        if len(alias.routing) > 1:
            raise InvalidParameterValue(
                "Number of items in AdditionalVersionWeights cannot be greater than 1"
            )
        if alias.function_version == LATEST:
            raise InvalidParameterValue(  # Lambda sends this one without Type
                "$LATEST is not supported for an alias pointing to more than 1 version",
                typed=False,
            )
        for version, weight in alias.routing.items():
            if not version.isdigit():
                raise InvalidParameterValue(
                    f"Invalid function version {version} in AdditionalVersionWeights: "
                    "routing is only supported between published versions."
                )
            if version == alias.function_version:
                raise InvalidParameterValue(
                    f"Invalid function version {version}. Function version {version} is "
                    "already included in routing configuration."
                )
            if not 0.0 <= weight <= 1.0:
                raise InvalidParameterValue(
                    f"Weight {weight} for version {version} must be between 0.0 and 1.0."
                )
            self.functions.version(conn, alias.function_name, version)

    def get(self, function: str, name: str) -> Alias:
        with self.db.read() as conn:
            return self._alias(conn, function, name, NO_ALIAS)

    def create(self, alias: Alias) -> Alias:
        try:
            with self.functions.writing(alias.function_name) as conn:
                try:
                    self.functions.record(conn, alias.function_name, lock=True)
                except ResourceNotFound:  # Lambda names the version it was to point at
                    raise self.functions.not_found(
                        alias.function_name, alias.function_version
                    ) from None
                self._check_targets(conn, alias)
                conn.execute(
                    insert(aliases).values(
                        function_name=alias.function_name,
                        name=alias.name,
                        function_version=alias.function_version,
                        description=alias.description,
                        routing=alias.routing,
                        revision_id=alias.revision_id,
                    )
                )
        except IntegrityError as exc:
            raise ResourceConflict(
                f"Alias already exists: {self.functions.arn(alias.function_name, alias.name)}"
            ) from exc
        return alias

    def update(
        self,
        function: str,
        name: str,
        version: str | None,
        description: str | None,
        routing: dict[str, float] | None,
        expected_revision: str | None,
    ) -> Alias:
        with self.functions.writing(function) as conn:
            self.functions.record(conn, function, lock=True)
            current = self._alias(conn, function, name, "Alias not found")
            check_revision(expected_revision, current.revision_id)
            new = Alias(
                function_name=function,
                name=name,
                function_version=current.function_version if version is None else version,
                description=current.description if description is None else description,
                routing=current.routing if routing is None else routing,
                revision_id=str(uuid.uuid4()),
            )
            self._check_targets(conn, new)
            conn.execute(
                update(aliases)
                .where(aliases.c.function_name == function, aliases.c.name == name)
                .values(
                    function_version=new.function_version,
                    description=new.description,
                    routing=new.routing,
                    revision_id=new.revision_id,
                )
            )
        return new

    def delete(self, function: str, name: str) -> None:
        with self.functions.writing(function) as conn:
            self.functions.record(conn, function, lock=True)
            conn.execute(
                delete(aliases).where(aliases.c.function_name == function, aliases.c.name == name)
            )
            forget_qualifier(conn, function, name)

    def list(self, function: str, version: str | None, marker: str | None, max_items: int) -> Page:
        query = select(aliases).where(aliases.c.function_name == function).order_by(aliases.c.name)
        if version is not None:
            query = query.where(aliases.c.function_version == version)
        if marker:
            (after,) = decode_marker(marker, 1)
            query = query.where(aliases.c.name > after)
        with self.db.read() as conn:
            self.functions.record(conn, function)
            rows = conn.execute(query.limit(max_items + 1)).all()
        items = [_row_to_alias(r) for r in rows[:max_items]]
        nxt = encode_marker(items[-1].name) if len(rows) > max_items else None
        return Page(items, nxt)
