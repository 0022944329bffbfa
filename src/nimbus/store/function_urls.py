"""Function URL configs in the metadata store (blocking; call off the loop).

One config per (function, qualifier), where the qualifier is ``$LATEST`` (the unqualified
function) or an alias. Each has a random ``url_id``, unique across all functions, that
addresses it on the data plane; ``get_by_url_id`` is that lookup (unique index).

Every write goes through ``FunctionStore.writing``, so ``on_change`` listeners hear of it
(and of the function or alias being deleted, which takes its URL configs with it), which
is how a url_id cache stays honest.

What is missing is said in Lambda's words, which depend on the operation: Create, Update
and List say ``Function does not exist`` of a function or alias that does not exist; Get
and Delete say ``The resource you requested does not exist.`` of it, and Get, Update and
Delete say the same where there is no URL config.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import string
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from nimbus.errors import ResourceConflict, ResourceNotFound
from nimbus.models import LATEST, FunctionUrlConfig, Page
from nimbus.store.functions import FunctionStore
from nimbus.store.qualified import QualifiedSettings
from nimbus.store.schema import aliases, function_urls

URL_ID_ALPHABET = string.ascii_lowercase + string.digits
URL_ID_LENGTH = 32
_URL_ID = re.compile(f"[a-z0-9]{{{URL_ID_LENGTH}}}")
# What UpdateFunctionUrlConfig may change; the rest is fixed at creation.
UPDATABLE = frozenset({"auth_type", "cors", "invoke_mode"})
NO_FUNCTION = "Function does not exist"
NO_RESOURCE = "The resource you requested does not exist."


def new_url_id() -> str:
    """32 random lowercase letters and digits (~165 bits), like Lambda's url ids."""
    return "".join(secrets.choice(URL_ID_ALPHABET) for _ in range(URL_ID_LENGTH))


def is_url_id(value: str) -> bool:
    return _URL_ID.fullmatch(value) is not None


class FunctionUrlStore(QualifiedSettings[FunctionUrlConfig]):
    """Create, read, update, delete and list function URL configs; look one up by id."""

    def __init__(self, functions: FunctionStore) -> None:
        super().__init__(functions, function_urls, FunctionUrlConfig)

    # -- change notification -----------------------------------------------------------

    def on_change(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(function_name)`` after each committed change to a function,
        including its URL configs (and its deletion, or an alias's): drop the cached
        configs of that function then."""
        self.functions.on_change(listener)

    @property
    def generation(self) -> int:
        """Bumped on every committed change: a cache filled from a read that raced with
        a change (generation moved meanwhile) should not keep that result."""
        return self.functions.generation

    # -- reading -----------------------------------------------------------------------

    def get_by_url_id(self, url_id: str) -> FunctionUrlConfig | None:
        """The config a data-plane request addresses, or None if there is none."""
        if not is_url_id(url_id):
            return None  # not one of ours: spare the database
        with self.db.read() as conn:
            row = conn.execute(select(function_urls).where(function_urls.c.url_id == url_id))
            found = row.first()
        return self._row(found) if found is not None else None

    def get(self, function: str, qualifier: str) -> FunctionUrlConfig:
        with self.db.read() as conn:
            self._check_target(conn, function, qualifier, NO_RESOURCE)
            return self._existing(conn, function, qualifier)

    def list(self, function: str, marker: str | None, max_items: int) -> Page:
        try:
            return super().list(function, marker, max_items)
        except ResourceNotFound:  # the function does not exist
            raise ResourceNotFound(NO_FUNCTION) from None

    # -- writing -----------------------------------------------------------------------

    def create(
        self,
        function: str,
        qualifier: str,
        auth_type: str,
        cors: dict[str, Any] | None,
        invoke_mode: str,
        now: str,
    ) -> FunctionUrlConfig:
        """A new URL with a fresh url_id; ResourceConflict if the qualifier has one."""
        config = FunctionUrlConfig(
            function_name=function,
            qualifier=qualifier,
            url_id=new_url_id(),
            auth_type=auth_type,
            cors=cors,
            invoke_mode=invoke_mode,
            creation_time=now,
            last_modified=now,
        )
        try:
            with self.functions.writing(function) as conn:
                self._check_target(conn, function, qualifier, NO_FUNCTION, lock=True)
                if self._find(conn, function, qualifier) is not None:
                    raise self._conflict(function, qualifier)
                self._save(conn, config, exists=False)
        except IntegrityError as exc:
            # Only a concurrent create can get here (the function row is locked, and a
            # url_id collision among 36^32 is not a practical concern).
            raise self._conflict(function, qualifier) from exc
        return config

    def update(
        self, function: str, qualifier: str, changes: Mapping[str, Any], now: str
    ) -> FunctionUrlConfig:
        """Apply ``changes`` (members of ``UPDATABLE``; ``cors`` replaces the whole Cors
        settings, None clears them) and stamp ``last_modified``."""
        unknown = set(changes) - UPDATABLE
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        with self.functions.writing(function) as conn:
            self._check_target(conn, function, qualifier, NO_FUNCTION, lock=True)
            current = self._existing(conn, function, qualifier)
            new = dataclasses.replace(current, **changes, last_modified=now)
            self._save(conn, new, exists=True)
        return new

    def delete(self, function: str, qualifier: str) -> None:
        with self.functions.writing(function) as conn:
            self._check_target(conn, function, qualifier, NO_RESOURCE, lock=True)
            self._existing(conn, function, qualifier)
            conn.execute(function_urls.delete().where(self._where(function, qualifier)))

    # -- helpers -----------------------------------------------------------------------

    def _check_target(
        self, conn: Connection, function: str, qualifier: str, missing: str, lock: bool = False
    ) -> None:
        """The function must exist, and the qualifier: $LATEST always does, an alias must
        be there; else ResourceNotFound with ``missing``, the operation's words."""
        try:
            self.functions.record(conn, function, lock=lock)
        except ResourceNotFound:
            raise ResourceNotFound(missing) from None
        if qualifier == LATEST:
            return
        row = conn.execute(
            select(aliases.c.name).where(
                aliases.c.function_name == function, aliases.c.name == qualifier
            )
        ).first()
        if row is None:
            raise ResourceNotFound(missing)

    def _existing(self, conn: Connection, function: str, qualifier: str) -> FunctionUrlConfig:
        """The config (the function and qualifier are known to exist), or Lambda's 404."""
        config = self._find(conn, function, qualifier)
        if config is None:
            raise ResourceNotFound(NO_RESOURCE)
        return config

    def _conflict(self, function: str, qualifier: str) -> ResourceConflict:
        arn = self.functions.arn(function, None if qualifier == LATEST else qualifier)
        return ResourceConflict(  # Lambda's words, two spaces included
            f"Failed to create function url config for [functionArn = {arn}]. Error message:  "
            "FunctionUrlConfig exists for this Lambda function"
        )
