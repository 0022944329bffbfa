"""A change stream's side of PostgreSQL: the server checks, the mapping's publication and
logical replication slot, and reading the slot through SQL functions.

Why SQL functions and not the streaming replication protocol: psycopg 3 (already how
nimbus talks to PostgreSQL) does not speak the replication protocol, and the functions
need nothing but an ordinary connection by a role with the REPLICATION attribute.
``pg_logical_slot_peek_binary_changes`` decodes from the slot's ``confirmed_flush_lsn``
without moving it; ``pg_replication_slot_advance`` moves it once a batch is done, so the
slot itself is the mapping's checkpoint: a restarted nimbus reads on from it. The price is
that each read decodes again what was read but not yet confirmed (a batch or two) and
that waiting for changes is polling (the poller's wait, a few reads a second).

The publication (``publish = 'insert, update, delete'``) is created before the slot, as
decoding must find it in the catalog snapshot of every change it reads.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from nimbus.errors import InvalidParameterValue, SourceUnavailable
from nimbus.events.sources.attribute_values import CatalogType
from nimbus.events.sources.pgoutput import lsn_text, parse_lsn

MIN_SERVER = 110000  # pg_replication_slot_advance came with PostgreSQL 11
CONNECT_TIMEOUT_S = 10
UNDEFINED_OBJECT = "42704"


@dataclass(frozen=True)
class Target:
    """Where a mapping reads: the server, its tables, and the names it owns there."""

    conninfo: str  # a libpq URI (credentials included), without nimbus' parameters
    shown: str  # the server and database, for messages: no credentials
    database: str
    tables: tuple[str, ...]  # as the URI names them ("orders", "sales.orders")
    view: str  # StreamViewType
    slot: str  # slot and publication name: nimbus_<mapping uuid without dashes>

    @property
    def needs_old_rows(self) -> bool:
        return self.view in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES")


@dataclass(frozen=True)
class Table:
    oid: int
    schema: str
    name: str
    replica_identity: str  # d, n, f, i
    owned: bool  # the role may publish it (its owner, a member of that role, a superuser)

    @property
    def qualified(self) -> str:
        return f"{_ident(self.schema)}.{_ident(self.name)}"


def _ident(name: str) -> str:
    plain = name.isidentifier() and name == name.lower() and name.isascii()
    return name if plain else '"' + name.replace('"', '""') + '"'


def _refused(target: Target, what: str, exc: psycopg.Error) -> InvalidParameterValue:
    diag = exc.diag
    hint = f" ({diag.message_hint})" if diag.message_hint else ""
    text = diag.message_primary or str(exc).strip()
    return InvalidParameterValue(f"PostgreSQL at {target.shown} refused {what}: {text}{hint}")


class ReplicationSlot:
    """One connection to a mapping's server, used by one task at a time."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()

    async def connect(self) -> None:
        if self._conn is not None and not self._conn.closed:
            return
        try:
            self._conn = await psycopg.AsyncConnection.connect(
                self.target.conninfo,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_S,
                application_name=self.target.slot,
            )
        except psycopg.OperationalError as exc:
            raise self.unreachable(exc) from None

    def unreachable(self, exc: Exception) -> SourceUnavailable:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return SourceUnavailable(f"PostgreSQL at {self.target.shown} is unreachable: {text}")

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def _rows(self, query: Any, params: Any = None) -> list[tuple[Any, ...]]:
        """Run ``query``; a lost connection is SourceUnavailable (and reopened next time),
        PostgreSQL's own refusals propagate as psycopg errors."""
        async with self._lock:
            await self.connect()
            assert self._conn is not None
            try:
                cursor = await self._conn.execute(query, params)
                return await cursor.fetchall() if cursor.description else []
            except psycopg.OperationalError as exc:
                await self.close()
                raise self.unreachable(exc) from None

    # -- checks ---------------------------------------------------------------------

    async def check(self) -> list[Table]:
        """The server can serve this change stream: InvalidParameterValue saying what to
        set or run where it cannot. Returns the tables, resolved."""
        t = self.target
        try:
            ((version, wal_level, role, may_replicate, database),) = await self._rows(
                "SELECT current_setting('server_version_num')::int, "
                "current_setting('wal_level'), current_user, (SELECT rolsuper OR "
                "rolreplication FROM pg_roles WHERE rolname = current_user), current_database()"
            )
        except psycopg.Error as exc:
            raise _refused(t, "to describe itself", exc) from None
        if version < MIN_SERVER:
            raise InvalidParameterValue(
                f"PostgreSQL at {t.shown} is version {version // 10000}; change streams need "
                "PostgreSQL 11 or later."
            )
        if wal_level != "logical":
            raise InvalidParameterValue(
                f"PostgreSQL at {t.shown} has wal_level = {wal_level}; change streams need "
                "logical decoding: set wal_level = logical (in postgresql.conf, or ALTER "
                "SYSTEM SET wal_level = logical) and restart PostgreSQL."
            )
        if not may_replicate:
            raise InvalidParameterValue(
                f"Role {role} at {t.shown} may not use replication slots: run ALTER ROLE "
                f"{_ident(role)} REPLICATION (or connect as a superuser)."
            )
        tables = [await self._table(name, database) for name in t.tables]
        await self._may_publish(tables, role, database)
        return tables

    async def _may_publish(self, tables: list[Table], role: str, database: str) -> None:
        """Before the mapping's publication exists: the role may create it."""
        t = self.target
        ((exists, may_create),) = await self._rows(
            "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = %s), "
            "has_database_privilege(current_database(), 'CREATE')",
            (t.slot,),
        )
        if exists:
            return
        for table in tables:
            if not table.owned:
                raise InvalidParameterValue(
                    f"Role {role} at {t.shown} does not own {table.qualified}, so it cannot "
                    "publish its changes (CREATE PUBLICATION): connect as the table's owner "
                    "or a superuser."
                )
        if not may_create:
            raise InvalidParameterValue(
                f"Role {role} at {t.shown} may not create a publication in database "
                f"{database}: run GRANT CREATE ON DATABASE {_ident(database)} TO {_ident(role)}."
            )

    async def _table(self, name: str, database: str) -> Table:
        t = self.target
        try:
            found = await self._rows(
                "SELECT c.oid, n.nspname, c.relname, c.relkind, c.relreplident, "
                "EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary), "
                "pg_has_role(c.relowner, 'USAGE') "
                "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.oid = to_regclass(%s)",
                (name,),
            )
        except psycopg.Error as exc:
            raise _refused(t, f"the table name {name!r}", exc) from None
        if not found:
            raise InvalidParameterValue(
                f"Table {name!r} does not exist in database {database} at {t.shown} (or this "
                "role cannot see it)."
            )
        oid, schema, relname, relkind, identity, has_key, owned = found[0]
        table = Table(oid, schema, relname, identity, owned)
        if relkind != "r":
            raise InvalidParameterValue(
                f"{table.qualified} is not an ordinary table; change streams read tables "
                "(for a partitioned table, list its partitions)."
            )
        if identity == "n" or (identity == "d" and not has_key):
            # Published, such a table's UPDATEs and DELETEs would fail in PostgreSQL.
            raise InvalidParameterValue(
                f"{table.qualified} has no primary key or replica identity, so PostgreSQL "
                "cannot say which row a change is about: add a primary key, or run ALTER "
                f"TABLE {table.qualified} REPLICA IDENTITY FULL."
            )
        if t.needs_old_rows and identity != "f":
            raise InvalidParameterValue(
                f"StreamViewType {t.view} needs each change's old row, which PostgreSQL "
                f"logs only for tables with REPLICA IDENTITY FULL: run ALTER TABLE "
                f"{table.qualified} REPLICA IDENTITY FULL, or use NEW_IMAGE or KEYS_ONLY."
            )
        return table

    # -- the publication and the slot ------------------------------------------------

    async def ensure(self, tables: list[Table]) -> int:
        """Create the publication and the slot unless they exist (a restart reuses them);
        returns the slot's confirmed_flush_lsn, where reading starts."""
        t = self.target
        names = sql.SQL(", ").join(sql.Identifier(table.schema, table.name) for table in tables)
        try:
            published = await self._rows(
                "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s",
                (t.slot,),
            )
            exists = await self._rows("SELECT 1 FROM pg_publication WHERE pubname = %s", (t.slot,))
            if not exists:
                await self._rows(
                    sql.SQL("CREATE PUBLICATION {} FOR TABLE {} WITH (publish = {})").format(
                        sql.Identifier(t.slot),
                        names,
                        sql.Literal("insert, update, delete"),
                    )
                )
            elif {tuple(row) for row in published} != {(x.schema, x.name) for x in tables}:
                await self._rows(
                    sql.SQL("ALTER PUBLICATION {} SET TABLE {}").format(
                        sql.Identifier(t.slot), names
                    )
                )
        except psycopg.Error as exc:
            raise _refused(t, f"publication {t.slot}", exc) from None
        try:
            slot = await self._rows(
                "SELECT plugin, database = current_database(), confirmed_flush_lsn::text "
                "FROM pg_replication_slots WHERE slot_name = %s",
                (t.slot,),
            )
            if not slot:
                created = await self._rows(
                    "SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'pgoutput')",
                    (t.slot,),
                )
                return parse_lsn(created[0][0])
        except psycopg.Error as exc:
            raise _refused(t, f"replication slot {t.slot}", exc) from None
        plugin, same_database, confirmed = slot[0]
        if plugin != "pgoutput" or not same_database:
            raise InvalidParameterValue(
                f"Replication slot {t.slot} at {t.shown} exists but is not this mapping's "
                "(another plugin or database): drop it or delete the mapping."
            )
        return parse_lsn(confirmed)

    async def peek(self, max_rows: int) -> list[bytes]:
        """The slot's changes from its confirmed position, whole transactions, in commit
        order, until at least ``max_rows`` rows (messages) or the end of the WAL."""
        try:
            rows = await self._rows(
                "SELECT data FROM pg_logical_slot_peek_binary_changes(%s, NULL, %s, "
                "'proto_version', '1', 'publication_names', %s)",
                (self.target.slot, max_rows, self.target.slot),
            )
        except psycopg.Error as exc:
            raise self._failed("reading", exc) from None
        return [bytes(row[0]) for row in rows]

    def _failed(self, doing: str, exc: psycopg.Error) -> SourceUnavailable:
        # e.g. the slot was dropped by hand: the poller reports it and tries again.
        text = exc.diag.message_primary or str(exc).strip()
        return SourceUnavailable(
            f"PostgreSQL at {self.target.shown}: {doing} replication slot {self.target.slot} "
            f"failed: {text}"
        )

    async def flushed(self) -> int:
        """Where the server's WAL is flushed to: how far a read of the slot goes."""
        rows = await self._rows("SELECT pg_current_wal_flush_lsn()::text")
        return parse_lsn(rows[0][0])

    async def advance(self, lsn: int) -> int:
        """Move the slot's confirmed position to ``lsn`` (a transaction's end)."""
        try:
            rows = await self._rows(
                "SELECT end_lsn::text FROM pg_replication_slot_advance(%s, %s::pg_lsn)",
                (self.target.slot, lsn_text(lsn)),
            )
        except psycopg.Error as exc:
            raise self._failed("advancing", exc) from None
        return parse_lsn(rows[0][0])

    async def drop(self) -> None:
        """Drop the slot and the publication (a deleted mapping); gone already is fine,
        so is a database that no longer exists."""
        t = self.target
        try:
            await self._rows(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                "WHERE slot_name = %s AND database = current_database()",
                (t.slot,),
            )
            await self._rows(
                sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(t.slot))
            )
        except SourceUnavailable as exc:
            # libpq's words (no SQLSTATE on a refused connection): nothing left to drop.
            if f'database "{t.database}" does not exist' in exc.message:
                return
            raise
        except psycopg.Error as exc:
            if exc.sqlstate == UNDEFINED_OBJECT:
                return
            raise SourceUnavailable(
                f"PostgreSQL at {t.shown} could not drop replication slot {t.slot} yet: "
                f"{exc.diag.message_primary or exc}"
            ) from None

    # -- the catalog -----------------------------------------------------------------

    async def types(self, oids: set[int]) -> dict[int, CatalogType]:
        """``pg_type`` rows of ``oids`` and of the types they are built on (domains'
        base types, arrays' elements)."""
        found: dict[int, CatalogType] = {}
        wanted = set(oids)
        while wanted:
            rows = await self._rows(
                "SELECT oid::int8, typcategory, typtype, typbasetype::int8, typelem::int8, "
                "typdelim FROM pg_type WHERE oid = ANY(%s::oid[])",
                (sorted(wanted),),
            )
            for oid, category, typtype, base, element, delimiter in rows:
                found[oid] = CatalogType(oid, category, typtype, base, element, delimiter)
            more = {t.base for t in found.values()} | {t.element for t in found.values()}
            wanted = {oid for oid in more if oid and oid not in found} - set(oids)
            oids = oids | wanted
        return found

    async def primary_keys(self, relation_oids: set[int]) -> dict[int, list[str]]:
        """The primary key columns of each table that has one, in key order."""
        rows = await self._rows(
            "SELECT i.indrelid::int8, a.attname FROM pg_index i "
            "CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n) "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
            "WHERE i.indisprimary AND i.indrelid = ANY(%s::oid[]) ORDER BY 1, k.n",
            (sorted(relation_oids),),
        )
        keys: dict[int, list[str]] = {}
        for oid, name in rows:
            keys.setdefault(oid, []).append(name)
        return keys
