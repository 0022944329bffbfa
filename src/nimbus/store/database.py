"""Engine creation and schema migration for the metadata database.

SQLite (WAL) under the data dir by default; PostgreSQL when ``database_url`` points at
one. Writers on SQLite take the write lock up front (``BEGIN IMMEDIATE``) so that a
read-then-write transaction never fails half-way on a lock upgrade.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text

from nimbus.private_files import secure_sqlite

MIGRATIONS = Path(__file__).parent / "migrations"
PG_TIMEOUTS: dict[str, int] = {
    "connect_timeout": 10, "keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
    "keepalives_count": 5, "tcp_user_timeout": 15000,
}
# Any 64-bit constant: serialises concurrent migrators on one PostgreSQL database.
_PG_MIGRATION_LOCK = 0x6E696D627573


class Database:
    """An engine plus the transaction helpers the repositories use."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            path = make_url(url).database
            if path and path != ":memory:" and not path.startswith("file:"):
                # 0600 before SQLite creates it (its -wal and -shm take its mode): it
                # holds environment variables, policies and dead-lettered payloads.
                secure_sqlite(Path(path))
        self.engine = _make_engine(url)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn = conn.execution_options(nimbus_write=True)
            with conn.begin():
                yield conn

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent, safe to race)."""
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.connect() as conn:
            if not self.is_sqlite:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
                conn.commit()
            try:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                conn.commit()
            finally:
                if not self.is_sqlite:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATION_LOCK})
                    conn.commit()

    def ping(self) -> None:
        """Read the schema version: proves the database file (or server) answers with
        our schema, which ``SELECT 1`` would not."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT version_num FROM alembic_version")).one()

    def dispose(self) -> None:
        self.engine.dispose()


def libpq_url(url: str) -> str:
    """A SQLAlchemy ``postgresql+psycopg://`` URL as libpq reads it."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"


def _make_engine(url: str) -> Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if not url.startswith("sqlite"):
        # A database that stops answering (a partition, a dead host) must fail a request
        # within seconds, not after the kernel's ~15 minutes of TCP retries: libpq gives
        # up on a connect after 10 s and on unacknowledged data (the pool's ping, a
        # query) after 15 s, and keepalives notice a silent peer on an idle connection.
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20,
                             connect_args=PG_TIMEOUTS)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: object) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")  # WAL+NORMAL survives process crashes
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("nimbus_write")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine
