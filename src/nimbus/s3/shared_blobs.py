"""Object bytes shared by the servers of a cluster (``SharedBlobStore``).

On its own, a nimbus keeps each object's bytes in a file under its data dir
(``blobs.py``). Servers sharing one PostgreSQL database share the object rows, so every
server must also reach the bytes: this store keeps each blob in the database too, in
chunks of ``CHUNK`` bytes (``s3_blob_chunks``, migration 0018), written in one
transaction before the row naming the blob commits; the local file stays as the writing
server's cache. A server that lacks a blob's file fetches it from the database into its
own blob directory (whole or not at all: a temporary file renamed into place) and reads
it from there from then on.

Blob ids are random and a blob never changes once written, so a cached file can never be
stale, only unused: an overwrite or a delete names or removes a blob, never rewrites one.
Removing a blob deletes its rows and this server's file; another server's cached copy of
it stays until that server's next start (``collect``). Rows a crash left without an
object or part naming them are deleted after an hour (the grace covers a write in
progress on another server). Objects stored before an installation kept these copies
are copied in at the start of the server that has their files.

Not done: a server lacking a blob fetches all of it before serving any (a range read of
a large object it never read pays for the whole object once), and cached copies of
removed blobs stay until that server's next start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import delete, insert, literal, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from nimbus.clock import now_ms
from nimbus.s3.blobs import BlobStore, new_id
from nimbus.s3.tables import s3_blob_chunks as CHUNKS
from nimbus.store.database import Database

log = logging.getLogger("nimbus.s3.shared_blobs")

CHUNK = 4 << 20  # bytes per row: bounded memory per statement, few rows per blob
GRACE_S = 3600  # rows no object names are kept this long (a write may be under way)


class SharedBlobStore(BlobStore):
    """Blob files under ``root`` with a copy of each in the shared database ``db``
    (blocking, like ``BlobStore``; see the module docstring)."""

    def __init__(self, root: Path, db: Database) -> None:
        super().__init__(root)
        self.db = db
        self._guard = threading.Lock()
        self._fetching: dict[str, threading.Lock] = {}  # blob -> its fetch under way

    def place(self, temp: Path, blob: str) -> None:
        """Store the written file ``temp`` in the database, then put it in place here."""
        self._share(temp, blob)
        super().place(temp, blob)

    def _share(self, path: Path, blob: str) -> None:
        """Copy the file at ``path`` into the database as ``blob`` (one transaction)."""
        with self.db.write() as conn, open(path, "rb") as fh:
            created = now_ms()
            seq = 0
            while True:
                data = fh.read(CHUNK)
                if data or not seq:  # an empty blob is one empty chunk
                    conn.execute(insert(CHUNKS).values(blob=blob, seq=seq, data=data,
                                                       created_ms=created))
                seq += 1
                if len(data) < CHUNK:
                    break

    def open(self, blob: str) -> BinaryIO:
        """The blob's bytes, fetched from the database first if this server lacks them
        (one fetch at a time per blob; ``FileNotFoundError`` when it is gone everywhere)."""
        try:
            return super().open(blob)
        except FileNotFoundError:
            self._here(blob)
        return super().open(blob)

    def _here(self, blob: str) -> None:
        """Fetch the blob unless this server has it (one fetch at a time per blob: a
        concurrent read of the same blob waits for it)."""
        with self._guard:
            fetching = self._fetching.setdefault(blob, threading.Lock())
        with fetching:
            try:
                if not self.path(blob).exists():
                    self._fetch(blob)
            finally:
                with self._guard:
                    if self._fetching.get(blob) is fetching:
                        del self._fetching[blob]

    def link(self, blob: str) -> str:
        """A new blob with the same bytes: copied inside the database, hard-linked here
        when this server has the file (else fetched on first read)."""
        new = new_id()
        with self.db.write() as conn:
            copied = conn.execute(
                insert(CHUNKS).from_select(
                    ["blob", "seq", "data", "created_ms"],
                    select(literal(new), CHUNKS.c.seq, CHUNKS.c.data, literal(now_ms()))
                    .where(CHUNKS.c.blob == blob),
                ).returning(CHUNKS.c.seq)  # (psycopg's rowcount here is -1)
            ).all()
        if not copied:
            if not self.path(blob).exists():
                raise FileNotFoundError(f"blob {blob} is gone")
            self._share(self.path(blob), new)  # stored before the database kept copies
        target = self.path(new)
        with contextlib.suppress(OSError):
            target.parent.mkdir(exist_ok=True)
            os.link(self.path(blob), target)
        return new

    def concat(self, blobs: Iterable[str]) -> str:
        """A new blob of ``blobs`` one after another (parts another server received are
        fetched first)."""
        blobs = list(blobs)
        for blob in blobs:
            self._here(blob)
        return super().concat(blobs)

    def remove(self, blob: str) -> None:
        """Delete the blob here and its rows. Called once the change that dropped it has
        committed: a database error then must not fail that change, so it is logged and
        the rows are left to ``collect`` (no object names them)."""
        try:
            with self.db.write() as conn:
                conn.execute(delete(CHUNKS).where(CHUNKS.c.blob == blob))
        except (SQLAlchemyError, OSError) as exc:
            log.warning("could not delete the shared copy of S3 blob %s (left for the "
                        "next start's collection): %s", blob, exc)
        super().remove(blob)

    def collect(self, referenced: set[str]) -> int:
        """Remove this server's files no row names (a crash's leftovers, and cached
        copies of blobs removed elsewhere), copy into the database the blobs only this
        server has (stored before it kept copies: an upgrade), and delete the database's
        unnamed rows older than the grace period. Returns how many were removed."""
        removed = super().collect(referenced)
        with self.db.read() as conn:
            shared = set(conn.execute(select(CHUNKS.c.blob).distinct()).scalars())
        for blob in sorted(referenced - shared):
            if self.path(blob).exists():  # stored before the database kept copies
                try:
                    self._share(self.path(blob), blob)
                except IntegrityError:
                    pass  # another server with the same file copied it in meanwhile
                except (SQLAlchemyError, OSError) as exc:
                    log.warning("could not copy S3 blob %s into the database (its object "
                                "is readable through this server only): %s", blob, exc)
        before = now_ms() - GRACE_S * 1000
        with self.db.write() as conn:
            old = set(
                conn.execute(select(CHUNKS.c.blob).where(CHUNKS.c.created_ms < before)
                             .distinct()).scalars()
            )
            gone = sorted(old - referenced)
            if gone:
                conn.execute(delete(CHUNKS).where(CHUNKS.c.blob.in_(gone)))
        return removed + len(gone)

    def _fetch(self, blob: str) -> None:
        """Copy the blob from the database into place here (FileNotFoundError if the
        database has none)."""
        temp = self.tmp / new_id()
        try:
            with open(temp, "wb") as out:
                found = False
                with self.db.read() as conn:
                    rows = conn.execution_options(stream_results=True, yield_per=1).execute(
                        select(CHUNKS.c.data).where(CHUNKS.c.blob == blob)
                        .order_by(CHUNKS.c.seq)
                    )
                    for (data,) in rows:
                        found = True
                        out.write(data)
                if not found:
                    raise FileNotFoundError(f"blob {blob} is gone")
                out.flush()
                os.fsync(out.fileno())
            BlobStore.place(self, temp, blob)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            raise
