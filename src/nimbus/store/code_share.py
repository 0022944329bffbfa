"""Deployment packages in the shared database, so every node of a cluster can run them.

The code store (``code.py``) keeps packages on the local disk of the node that received
the upload. With several servers (or worker nodes) on one PostgreSQL, another node must
find the zip too: this module keeps a copy of each zip in the database, in chunks of
``CHUNK`` bytes (``code_chunks``, migration 0016), and a node that lacks a package
fetches it from here, checks its SHA-256 and stores it as if it had been uploaded there.

Rows are written once per digest (content-addressed: an identical upload finds them and
writes nothing), in one transaction, so a reader sees a whole package or none. The
embedded mode (SQLite) does not use this: its one node already has every package.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    LargeBinary,
    String,
    Table,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from nimbus.clock import now_ms
from nimbus.store.database import Database
from nimbus.store.schema import metadata

CHUNK = 4 << 20  # bytes per row: bounded memory per statement, few rows per package

code_chunks = Table(
    "code_chunks",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("data", LargeBinary, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
)


class CodeShare:
    """Zips by SHA-256 in the shared database (blocking; run it off the event loop)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def has(self, sha_hex: str) -> bool:
        with self.db.read() as conn:
            found = conn.execute(
                select(code_chunks.c.seq).where(code_chunks.c.sha256 == sha_hex).limit(1)
            ).first()
        return found is not None

    def put(self, sha_hex: str, zip_path: Path) -> None:
        """Store the zip at ``zip_path`` (whose digest is ``sha_hex``) unless it is here;
        if it is, make it fresh again, so garbage collection's grace period covers the
        upload whose metadata is being written now."""
        created = now_ms()
        with self.db.write() as conn:
            touched = conn.execute(
                update(code_chunks)
                .where(code_chunks.c.sha256 == sha_hex)
                .values(created_ms=created)
            ).rowcount
        if touched:
            return
        try:
            with self.db.write() as conn, open(zip_path, "rb") as fh:
                seq = 0
                while True:
                    data = fh.read(CHUNK)
                    if not data and seq:
                        break
                    conn.execute(
                        insert(code_chunks).values(
                            sha256=sha_hex, seq=seq, data=data, created_ms=created
                        )
                    )
                    seq += 1
                    if len(data) < CHUNK:
                        break
        except IntegrityError:
            pass  # another node stored the same package meanwhile: it is here

    def fetch(self, sha_hex: str, dest: BinaryIO) -> bool:
        """Write the zip ``sha_hex`` into ``dest``; False if the database has none. The
        bytes are checked against the digest (a ``ValueError`` if they differ)."""
        digest = hashlib.sha256()
        found = False
        with self.db.read() as conn:
            rows = conn.execution_options(stream_results=True, yield_per=1).execute(
                select(code_chunks.c.data)
                .where(code_chunks.c.sha256 == sha_hex)
                .order_by(code_chunks.c.seq)
            )
            for (data,) in rows:
                found = True
                digest.update(data)
                dest.write(data)
        if found and digest.hexdigest() != sha_hex:
            raise ValueError(f"the stored package {sha_hex} does not match its digest")
        return found

    def collect_garbage(self, referenced: set[str], grace_seconds: float = 3600) -> int:
        """Delete packages no version or layer references, older than the grace period
        (an upload whose metadata is still being written is never taken). Returns count."""
        before = now_ms() - int(grace_seconds * 1000)
        with self.db.write() as conn:
            old = {
                row.sha256
                for row in conn.execute(
                    select(code_chunks.c.sha256)
                    .where(code_chunks.c.created_ms < before)
                    .distinct()
                )
            }
            gone = sorted(old - referenced)
            if gone:
                # Still old: an upload that refreshed a package since the select keeps it.
                conn.execute(delete(code_chunks).where(code_chunks.c.sha256.in_(gone),
                                                       code_chunks.c.created_ms < before))
        return len(gone)
