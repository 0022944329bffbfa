"""Functions and their versions in the metadata database (blocking; call off the loop)."""

from __future__ import annotations

import base64
import dataclasses
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from nimbus.errors import (
    InvalidParameterValue,
    PreconditionFailed,
    ResourceConflict,
    ResourceNotFound,
)
from nimbus.models import LATEST, FunctionRecord, FunctionVersion, Page
from nimbus.store.change_feed import FUNCTIONS, notify
from nimbus.store.database import Database
from nimbus.store.env_cipher import EnvCipher, is_sealed
from nimbus.store.schema import QUALIFIER_SETTINGS, aliases, function_versions, functions

ArnFn = Callable[..., str]

_VERSION_COLUMNS = [f.name for f in dataclasses.fields(FunctionVersion)]


def forget_qualifier(conn: Connection, function: str, qualifier: str) -> None:
    """Delete what belonged to a deleted alias or version: its event invoke config,
    provisioned concurrency, function URL and resource policy."""
    for table in QUALIFIER_SETTINGS:
        conn.execute(
            delete(table).where(table.c.function_name == function, table.c.qualifier == qualifier)
        )


def encode_marker(*parts: object) -> str:
    raw = "\x1f".join(str(p) for p in parts)
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_marker(marker: str, arity: int) -> list[str]:
    try:
        parts = base64.urlsafe_b64decode(marker.encode()).decode().split("\x1f")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidParameterValue(
            "The Marker is not one this service issued. Pass NextMarker from the previous "
            "response unchanged."
        ) from exc
    if len(parts) != arity:
        raise InvalidParameterValue(
            "The Marker is not one this service issued. Pass NextMarker from the previous "
            "response unchanged."
        )
    return parts


def marker_number(number: str) -> int:
    """A number out of a decoded marker: ASCII digits that fit a SQL integer, or the marker
    is not one nimbus issued (a client-made one must not reach the query)."""
    if not (number.isascii() and number.isdigit() and len(number) <= 18):
        raise InvalidParameterValue(
            "The Marker is not one this service issued. Pass NextMarker from the previous "
            "response unchanged."
        )
    return int(number)


def _version_number(version: str) -> int:
    return 0 if version == LATEST else int(version)


def _row_to_version(row: Any, cipher: EnvCipher | None) -> FunctionVersion:
    values = {c: row._mapping[c] for c in _VERSION_COLUMNS}
    if cipher is not None:  # environment variables are sealed at rest (env_cipher.py)
        values["environment"] = cipher.open(
            values["environment"], values["function_name"], values["version"]
        )
    return FunctionVersion(**values)


def _version_values(v: FunctionVersion, cipher: EnvCipher | None) -> dict[str, Any]:
    values = dataclasses.asdict(v)
    values["version_number"] = _version_number(v.version)
    if cipher is not None:
        values["environment"] = cipher.seal(v.environment, v.function_name, v.version)
    return values


# Publishing a version gives the version a RevisionId of its own and $LATEST a new one,
# as on Lambda (a RevisionId read before publishing no longer guards an update). $LATEST's
# new RevisionId is derived from the version's: "$LATEST has not changed since the last
# version was published" is then "$LATEST's RevisionId is still the one derived from that
# version's", with nothing more stored (every update gives $LATEST a random one).
_PUBLISHED = uuid.UUID("6f1d0a52-3c0e-4f7b-9a51-4be1d3f0c2a7")


# What a published SnapStart version shows until its snapshot is ready (Lambda's
# StateReasonCode "Creating"; it reports "Active" and no reason once ready).
SNAPSHOT_PENDING = {
    "StateReason": "Lambda is initializing your function and creating its snapshot.",
    "StateReasonCode": "Creating",
}


def snapstart_on(version: FunctionVersion) -> bool:
    """Whether ``version`` (published) starts from a snapshot: SnapStart ApplyOn
    PublishedVersions on a runtime with SnapStart (nimbus: its Python runtimes)."""
    apply_on = (version.extra.get("SnapStart") or {}).get("ApplyOn")
    return (apply_on == "PublishedVersions" and version.version != LATEST
            and snapstart_runtime(version.runtime))


def snapstart_runtime(runtime: str | None) -> bool:
    """Lambda's SnapStart runtimes nimbus has: python3.12 and later."""
    if not runtime or not runtime.startswith("python3."):
        return False
    minor = runtime.removeprefix("python3.")
    return minor.isdigit() and int(minor) >= 12


def revision_after_publishing(version_revision: str) -> str:
    """$LATEST's RevisionId once a version of RevisionId ``version_revision`` is
    published from it."""
    return str(uuid.uuid5(_PUBLISHED, version_revision))


# How Lambda's GetAlias, AddPermission and RemovePermission say an alias does not exist
# (UpdateAlias says "Alias not found", other operations "Function not found"), followed
# by the alias' ARN.
NO_ALIAS = "Cannot find alias arn"


def check_revision(expected: str | None, actual: str) -> None:
    if expected is not None and expected != actual:
        raise PreconditionFailed(
            "The Revision Id provided does not match the latest Revision Id. Call the "
            "GetFunction/GetAlias API to retrieve the latest Revision Id"
        )


class FunctionStore:
    """Create, read, update and delete functions, versions, concurrency and tags."""

    def __init__(self, db: Database, arn: ArnFn, cipher: EnvCipher | None = None) -> None:
        self.db = db
        self.arn = arn
        self.cipher = cipher  # None: environment variables stored as plaintext (tests)
        self.generation = 0  # bumped after every committed change
        self._listeners: list[Callable[[str], object]] = []

    def on_change(self, listener: Callable[[str], object]) -> None:
        """Call ``listener(function_name)`` after each committed change to a function
        (its versions, aliases, concurrency or tags): caches invalidate through it."""
        self._listeners.append(listener)

    @contextmanager
    def writing(self, name: str) -> Iterator[Connection]:
        """A write transaction about function ``name``; listeners hear of it on commit,
        here and (PostgreSQL) in every other process of the installation (change_feed.py)."""
        with self.db.write() as conn:
            yield conn
            if not self.db.is_sqlite:
                notify(conn, FUNCTIONS, name)
        self.changed(name)

    def names(self) -> list[str]:
        """Every function's name."""
        with self.db.read() as conn:
            return list(conn.execute(select(functions.c.name)).scalars())

    def created_times(self) -> dict[str, str]:
        """Every function's creation time (FunctionRecord.created_at), by name."""
        with self.db.read() as conn:
            return {name: created for name, created in
                    conn.execute(select(functions.c.name, functions.c.created_at))}

    def changed(self, name: str) -> None:
        """Tell the listeners that function ``name`` changed: called on each commit here,
        and by an async worker when the process that committed forwards the news."""
        self.generation += 1
        for listener in self._listeners:
            listener(name)

    # -- reading ---------------------------------------------------------------------

    def not_found(self, name: str, qualifier: str | None = None) -> ResourceNotFound:
        if qualifier and qualifier != LATEST:
            return ResourceNotFound(f"Function not found: {self.arn(name, qualifier)}")
        return ResourceNotFound(f"Function not found: {self.arn(name)}")

    def record(self, conn: Connection, name: str, lock: bool = False) -> FunctionRecord:
        query = select(functions).where(functions.c.name == name)
        if lock:
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            raise self.not_found(name)
        return FunctionRecord(**row._mapping)

    def get_record(self, name: str) -> FunctionRecord:
        with self.db.read() as conn:
            return self.record(conn, name)

    def version(self, conn: Connection, name: str, version: str) -> FunctionVersion:
        row = conn.execute(
            select(function_versions).where(
                function_versions.c.function_name == name,
                function_versions.c.version == version,
            )
        ).first()
        if row is None:
            raise self.not_found(name, version)
        return _row_to_version(row, self.cipher)

    def seal_environments(self) -> int:
        """Seal the environment variables of rows written before they were encrypted at
        rest (the server, at start): how many rows were sealed."""
        if self.cipher is None:
            return 0
        fv = function_versions
        sealed = 0
        with self.db.write() as conn:
            rows = conn.execute(select(fv.c.function_name, fv.c.version, fv.c.environment)).all()
            for name, version, environment in rows:
                if not environment or is_sealed(environment):
                    continue
                conn.execute(
                    update(fv)
                    .where(fv.c.function_name == name, fv.c.version == version)
                    .values(environment=self.cipher.seal(environment, name, version))
                )
                sealed += 1
        return sealed

    def get_version(self, name: str, version: str = LATEST) -> FunctionVersion:
        with self.db.read() as conn:
            return self.version(conn, name, version)

    def list_functions(self, marker: str | None, max_items: int, all_versions: bool) -> Page:
        fv = function_versions
        query = select(fv).order_by(fv.c.function_name, fv.c.version_number)
        if not all_versions:
            query = query.where(fv.c.version == LATEST)
        if marker:
            name, number = decode_marker(marker, 2)
            query = query.where(
                or_(
                    fv.c.function_name > name,
                    and_(fv.c.function_name == name, fv.c.version_number > marker_number(number)),
                )
            )
        with self.db.read() as conn:
            rows = conn.execute(query.limit(max_items + 1)).all()
        items = [_row_to_version(r, self.cipher) for r in rows[:max_items]]
        nxt = None
        if len(rows) > max_items:
            last = items[-1]
            nxt = encode_marker(last.function_name, _version_number(last.version))
        return Page(items, nxt)

    def list_versions(self, name: str, marker: str | None, max_items: int) -> Page:
        fv = function_versions
        query = select(fv).where(fv.c.function_name == name).order_by(fv.c.version_number)
        if marker:
            (number,) = decode_marker(marker, 1)
            query = query.where(fv.c.version_number > marker_number(number))
        with self.db.read() as conn:
            self.record(conn, name)
            rows = conn.execute(query.limit(max_items + 1)).all()
        items = [_row_to_version(r, self.cipher) for r in rows[:max_items]]
        nxt = encode_marker(_version_number(items[-1].version)) if len(rows) > max_items else None
        return Page(items, nxt)

    def code_references(self) -> set[str]:
        with self.db.read() as conn:
            return set(conn.execute(select(function_versions.c.code_sha256).distinct()).scalars())

    def usage(self) -> tuple[int, int]:
        """(function count, total code size of every version)."""
        with self.db.read() as conn:
            count = conn.execute(select(func.count()).select_from(functions)).scalar_one()
            size = conn.execute(select(func.sum(function_versions.c.code_size))).scalar()
        return int(count), int(size or 0)

    def reserved_total(self, conn: Connection, excluding: str | None = None) -> int:
        query = select(func.sum(functions.c.reserved_concurrency))
        if excluding:
            query = query.where(functions.c.name != excluding)
        return int(conn.execute(query).scalar() or 0)

    # -- writing ---------------------------------------------------------------------

    def create(
        self, latest: FunctionVersion, tags: dict[str, str], publish: bool
    ) -> FunctionVersion:
        """Insert a new function; returns $LATEST or, with ``publish``, version 1."""
        record = FunctionRecord(
            name=latest.function_name, created_at=latest.last_modified, tags=tags
        )
        try:
            with self.writing(latest.function_name) as conn:
                conn.execute(insert(functions).values(dataclasses.asdict(record)))
                conn.execute(insert(function_versions).values(_version_values(latest, self.cipher)))
                if publish:
                    return self._publish(conn, latest.function_name, None, None, None)
        except IntegrityError as exc:
            raise ResourceConflict(f"Function already exist: {latest.function_name}") from exc
        return latest

    def update_latest(
        self,
        name: str,
        change: Callable[[FunctionVersion], FunctionVersion],
        expected_revision: str | None,
        publish: bool = False,
    ) -> FunctionVersion:
        """Apply ``change`` to $LATEST atomically, checking RevisionId first."""
        with self.writing(name) as conn:
            self.record(conn, name, lock=True)
            current = self.version(conn, name, LATEST)
            check_revision(expected_revision, current.revision_id)
            new = change(current)
            if new.revision_id == current.revision_id:  # every update is a new revision
                new = new.replace(revision_id=str(uuid.uuid4()))
            conn.execute(
                update(function_versions)
                .where(
                    function_versions.c.function_name == name,
                    function_versions.c.version == LATEST,
                )
                .values(_version_values(new, self.cipher))
            )
            if publish:
                return self._publish(conn, name, None, None, None)
        return new

    def publish(
        self,
        name: str,
        description: str | None,
        code_sha256_b64: str | None,
        expected_revision: str | None,
    ) -> FunctionVersion:
        with self.writing(name) as conn:
            return self._publish(conn, name, description, code_sha256_b64, expected_revision)

    def _publish(
        self,
        conn: Connection,
        name: str,
        description: str | None,
        code_sha256_b64: str | None,
        expected_revision: str | None,
    ) -> FunctionVersion:
        record = self.record(conn, name, lock=True)
        latest = self.version(conn, name, LATEST)
        check_revision(expected_revision, latest.revision_id)
        if code_sha256_b64 is not None:
            actual = base64.b64encode(bytes.fromhex(latest.code_sha256)).decode()
            if code_sha256_b64 != actual:
                raise InvalidParameterValue(
                    f"CodeSHA256 ({code_sha256_b64}) is different from current CodeSHA256 "
                    f"in $LATEST ({actual}). Please try again with the CodeSHA256 in $LATEST."
                )
        # Lambda publishes a new version when $LATEST was updated since the last one was
        # published (any update, even one that changed nothing); otherwise it returns that
        # version, unless it was deleted, and $LATEST keeps its RevisionId. Numbers are
        # never reused.
        last = conn.execute(
            select(function_versions).where(
                function_versions.c.function_name == name,
                function_versions.c.version == str(record.last_published),
            )
        ).first()
        if last is not None and latest.revision_id == revision_after_publishing(last.revision_id):
            return _row_to_version(last, self.cipher)
        number = record.last_published + 1
        published = latest.replace(
            version=str(number),
            description=latest.description if description is None else description,
            revision_id=str(uuid.uuid4()),
        )
        if snapstart_on(published):
            # As Lambda: Pending until its snapshot (nimbus: its template) is made.
            published = published.replace(
                state="Pending", extra={**published.extra, **SNAPSHOT_PENDING})
        conn.execute(insert(function_versions).values(_version_values(published, self.cipher)))
        conn.execute(
            update(functions).where(functions.c.name == name).values(last_published=number)
        )
        conn.execute(
            update(function_versions)
            .where(
                function_versions.c.function_name == name,
                function_versions.c.version == LATEST,
            )
            .values(revision_id=revision_after_publishing(published.revision_id))
        )
        return published

    def set_state(self, name: str, version: str, state: str, reason: str | None = None,
                  reason_code: str | None = None) -> bool:
        """Set a published version's State (and StateReason/StateReasonCode, or none):
        SnapStart's Pending -> Active | Failed. False if the version is gone."""
        with self.writing(name) as conn:
            row = conn.execute(
                select(function_versions).where(
                    function_versions.c.function_name == name,
                    function_versions.c.version == version,
                )
            ).first()
            if row is None:
                return False
            current = _row_to_version(row, self.cipher)
            extra = {k: v for k, v in current.extra.items()
                     if k not in ("StateReason", "StateReasonCode")}
            if reason is not None:
                extra["StateReason"] = reason
            if reason_code is not None:
                extra["StateReasonCode"] = reason_code
            conn.execute(
                update(function_versions)
                .where(
                    function_versions.c.function_name == name,
                    function_versions.c.version == version,
                )
                .values(state=state, extra=extra)
            )
            return True

    def delete(self, name: str, qualifier: str | None) -> None:
        with self.writing(name) as conn:
            self.record(conn, name, lock=True)
            if qualifier is None:
                conn.execute(delete(aliases).where(aliases.c.function_name == name))
                conn.execute(
                    delete(function_versions).where(function_versions.c.function_name == name)
                )
                conn.execute(delete(functions).where(functions.c.name == name))
                return
            if qualifier == LATEST:
                raise InvalidParameterValue(
                    "$LATEST version cannot be deleted without deleting the function."
                )
            if not qualifier.isdigit():
                raise InvalidParameterValue("Deletion of aliases is not currently supported.")
            try:
                self.version(conn, name, qualifier)
            except ResourceNotFound:
                return  # deleting a version that is not there succeeds, as on Lambda
            users = (
                conn.execute(
                    select(aliases.c.name).where(
                        aliases.c.function_name == name,
                        aliases.c.function_version == qualifier,
                    )
                )
                .scalars()
                .all()
            )
            routed = [
                a.name
                for a in conn.execute(select(aliases).where(aliases.c.function_name == name)).all()
                if qualifier in (a.routing or {})
            ]
            if users or routed:
                names = ", ".join(sorted(set(users) | set(routed)))
                raise ResourceConflict(
                    f"Unable to delete version because the following aliases reference "
                    f"it: [{names}]"
                )
            conn.execute(
                delete(function_versions).where(
                    function_versions.c.function_name == name,
                    function_versions.c.version == qualifier,
                )
            )
            forget_qualifier(conn, name, qualifier)

    def set_reserved_concurrency(
        self, name: str, value: int | None, account_limit: int, unreserved_minimum: int
    ) -> None:
        with self.writing(name) as conn:
            self.record(conn, name, lock=True)
            if value is not None:
                others = self.reserved_total(conn, excluding=name)
                if account_limit - others - value < unreserved_minimum:
                    raise InvalidParameterValue(  # Lambda sends this one without Type
                        "Specified ReservedConcurrentExecutions for function decreases "
                        "account's UnreservedConcurrentExecution below its minimum value of "
                        f"[{unreserved_minimum}].",
                        typed=False,
                    )
            conn.execute(
                update(functions).where(functions.c.name == name).values(reserved_concurrency=value)
            )

    def reserved_sum(self) -> int:
        with self.db.read() as conn:
            return self.reserved_total(conn)

    def update_tags(
        self, name: str, add: dict[str, str] | None = None, remove: list[str] | None = None
    ) -> dict[str, str]:
        with self.writing(name) as conn:
            tags = dict(self.record(conn, name, lock=True).tags)
            tags.update(add or {})
            for key in remove or []:
                tags.pop(key, None)
            conn.execute(update(functions).where(functions.c.name == name).values(tags=tags))
        return tags
