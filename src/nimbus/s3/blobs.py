"""Object bytes on local disk: one plain file per blob under ``<root>/blobs/<xx>/<id>``.

A blob is written to ``<root>/tmp`` (hashing as it goes), fsynced, and renamed into place
(then its directory fsynced), so a blob is either whole or absent; the store's row that
names it is committed only after that. Blobs are never changed once in place: an
overwrite writes a new blob and unlinks the old one after its row is gone, and a reader
holding the old file open still reads it whole. A copy is a hard link.

Anything a crash leaves behind (temp files; a blob whose row never committed) is
removed at start-up (``collect``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from nimbus.s3.checksums import Checksum, new_checksum

READ_CHUNK = 256 * 1024


def new_id() -> str:
    return uuid.uuid4().hex


class BlobWriter:
    """A blob being written: ``write`` (blocking) hashes and appends; ``commit`` puts it
    in place; ``discard`` removes it. MD5 always (the ETag), one checksum on request."""

    def __init__(self, store: BlobStore, checksum: str | None = None) -> None:
        self.store = store
        self.id = new_id()
        self.temp = store.tmp / self.id
        self.file: BinaryIO | None = open(self.temp, "wb")  # noqa: SIM115 (closed in commit)
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.checksum: Checksum | None = new_checksum(checksum) if checksum else None
        self.size = 0
        self.committed = False

    def write(self, data: bytes) -> None:
        assert self.file is not None
        self.md5.update(data)
        if self.checksum is not None:
            self.checksum.update(data)
        self.file.write(data)
        self.size += len(data)

    def copy_from(self, source: BinaryIO, length: int) -> None:
        """Append ``length`` bytes of ``source`` (from its position), hashing them."""
        remaining = length
        while remaining > 0:
            chunk = source.read(min(READ_CHUNK * 4, remaining))
            if not chunk:
                raise OSError(f"blob ended {remaining} bytes early")
            self.write(chunk)
            remaining -= len(chunk)

    @property
    def etag(self) -> str:
        return self.md5.hexdigest()

    def commit(self) -> str:
        """Flush, fsync and rename into place; the blob's id."""
        assert self.file is not None
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        self.file = None
        self.store.place(self.temp, self.id)
        self.committed = True
        return self.id

    def discard(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.committed:
            self.store.remove(self.id)
        else:
            with contextlib.suppress(FileNotFoundError):
                self.temp.unlink()


class BlobStore:
    """The blob files of one nimbus (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.tmp = root / "tmp"
        self.blobs.mkdir(parents=True, exist_ok=True)
        # Whatever is in tmp was being written when the last process stopped.
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, blob: str) -> Path:
        return self.blobs / blob[:2] / blob

    def writer(self, checksum: str | None = None) -> BlobWriter:
        return BlobWriter(self, checksum)

    def open(self, blob: str) -> BinaryIO:
        return open(self.path(blob), "rb")

    def place(self, temp: Path, blob: str) -> None:
        target = self.path(blob)
        parent = target.parent
        if not parent.is_dir():
            parent.mkdir(exist_ok=True)
            _fsync_dir(self.blobs)
        os.rename(temp, target)
        _fsync_dir(parent)

    def link(self, blob: str) -> str:
        """A new blob with the same bytes (a hard link; a copy where links fail)."""
        new = new_id()
        target = self.path(new)
        target.parent.mkdir(exist_ok=True)
        try:
            os.link(self.path(blob), target)
        except OSError:
            temp = self.tmp / new
            shutil.copyfile(self.path(blob), temp)
            with open(temp, "rb+") as f:
                os.fsync(f.fileno())
            self.place(temp, new)
            return new
        _fsync_dir(target.parent)
        return new

    def concat(self, blobs: Iterable[str]) -> str:
        """A new blob of ``blobs`` one after another (the kernel copies: no bytes pass
        through this process where ``copy_file_range`` works)."""
        new = new_id()
        temp = self.tmp / new
        try:
            with open(temp, "wb") as out:
                for blob in blobs:
                    with open(self.path(blob), "rb") as source:
                        _copy_all(source, out)
                out.flush()
                os.fsync(out.fileno())
            self.place(temp, new)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            raise
        return new

    def remove(self, blob: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(blob).unlink()

    def ids(self) -> Iterator[str]:
        for shard in self.blobs.iterdir():
            if shard.is_dir():
                for entry in shard.iterdir():
                    yield entry.name

    def collect(self, referenced: set[str]) -> int:
        """Remove the blobs no row names (left by a crash between rename and commit)."""
        removed = 0
        for blob in list(self.ids()):
            if blob not in referenced:
                self.remove(blob)
                removed += 1
        return removed


def _copy_all(source: BinaryIO, out: BinaryIO) -> None:
    out.flush()
    src, dst = source.fileno(), out.fileno()
    try:
        while True:
            copied = os.copy_file_range(src, dst, 64 * 1024 * 1024)
            if copied == 0:
                return
    except OSError:
        # Not on this filesystem: through user space, a chunk at a time. The output
        # position is where copy_file_range left it; the input's too.
        shutil.copyfileobj(source, out, READ_CHUNK * 4)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
