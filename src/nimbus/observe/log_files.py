"""Invocation logs on the embedded backend: append-only JSON-lines files per function.

A row per invocation in SQLite cost an async worker ~20-35 µs of CPU per event (the
insert itself, its thread's hand-offs of the GIL) and a function URL's server as much
per request; appending a batch to a file is one ``write`` for hundreds of records.
Layout, under ``<data_dir>/logs/<function name>/``::

    current.jsonl          the segment being appended to
    <ns>-<pid>.jsonl       earlier segments, renamed when current grew past SEGMENT_BYTES

Every process (the server, each async worker) appends whole batches with one
``O_APPEND`` write, which Linux never interleaves with another writer's, so lines stay
intact; a line that is not (a disk that filled mid-write) is skipped when read. Records
are written within ``BATCH_WINDOW_S`` of their invocation; a crash of the writing process
loses at most that window, as with the database. Old segments are plain files: removing
them is how logs are pruned (``prune``, for the retention setting).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path
from typing import BinaryIO

import orjson

from nimbus.models import FUNCTION_NAME_PATTERN

SEGMENT_BYTES = 32 * 1024 * 1024
CURRENT = "current.jsonl"
_FUNCTION_NAME = re.compile(FUNCTION_NAME_PATTERN)
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC


def encode_record(record: object) -> bytes:
    """A record (a dataclass) as the JSON line ``append`` writes."""
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


class LogFiles:
    """Appends invocation log records to, and reads them back from, per-function files."""

    def __init__(self, directory: Path, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes

    def folder(self, function_name: str) -> Path:
        """The function's folder. Its name becomes a path, so only a name Lambda allows
        for a function (letters, digits, ``-``, ``_``) is ever joined to the directory."""
        if not _FUNCTION_NAME.fullmatch(function_name):
            raise ValueError(f"not a function name: {function_name!r}")
        return self.directory / function_name

    def append(self, function_name: str, lines: list[bytes]) -> None:
        """Append records of one function (each from ``encode_record``) in one write."""
        folder = self.folder(function_name)
        # Led by a newline: a line torn by an earlier failed write ends there, alone.
        data = b"\n" + b"".join(lines)
        path = folder / CURRENT
        try:
            fd = os.open(path, _APPEND, 0o600)
        except FileNotFoundError:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, _APPEND, 0o600)
        try:
            view = memoryview(data)
            while view:  # one write unless the disk is nearly full
                view = view[os.write(fd, view) :]
            full = os.fstat(fd).st_size >= self.segment_bytes
        finally:
            os.close(fd)
        if full:
            # Another writer may rename it first (then this fails) or still append to the
            # renamed file through its open descriptor: either way nothing is lost.
            with contextlib.suppress(FileNotFoundError):
                path.rename(folder / _segment_name())

    def prune(self, before_ms: int) -> int:
        """Remove segments whose newest record is older than ``before_ms``; returns how
        many. A ``current`` segment is never removed (a writer may have it open: its
        batch would vanish) but renamed, to go at a later prune once nothing was written
        to it since; and when its oldest record is past the limit, it is renamed too, so
        no record outlives the limit by more than its own age."""
        removed = 0
        try:
            folders = list(os.scandir(self.directory))
        except FileNotFoundError:
            return 0
        for folder in folders:
            if not folder.is_dir():
                continue
            try:
                entries = list(os.scandir(folder.path))
            except FileNotFoundError:
                continue
            for entry in entries:
                try:
                    newest_ms = entry.stat().st_mtime * 1000
                    if entry.name == CURRENT:
                        if newest_ms < before_ms or _oldest_ms(entry.path) < before_ms:
                            os.rename(entry.path, f"{folder.path}/{_segment_name()}")
                    elif newest_ms < before_ms:
                        os.unlink(entry.path)
                        removed += 1
                except (FileNotFoundError, ValueError):
                    continue  # renamed or removed by another process meanwhile
            with contextlib.suppress(OSError):  # not empty (or in use again): kept
                os.rmdir(folder.path)
        return removed

    def read(self, function_name: str, since_ms: int, limit: int) -> list[dict]:
        """The newest ``limit`` records at or after ``since_ms``, oldest first.

        Files are read backwards, so the cost follows ``limit``, not the segment's size.
        Writers append in batches, so a file is in time order only to within a batch
        window: reading goes on until a record older than the oldest one kept (or than
        ``since_ms``) by ``SKEW_MS``, which no batch spans."""
        folder = self.folder(function_name)
        try:
            names = sorted(n for n in os.listdir(folder) if n != CURRENT)
        except FileNotFoundError:
            return []
        names.append(CURRENT)
        found: list[dict] = []  # newest first, as read
        horizon = since_ms - SKEW_MS  # records older than this cannot matter
        for name in reversed(names):
            path = folder / name
            try:
                if os.stat(path).st_mtime * 1000 < horizon:
                    break  # this segment and every older one end before the horizon
                with open(path, "rb") as f:
                    horizon = _read_back(f, found, since_ms, limit, horizon)
            except FileNotFoundError:
                continue  # renamed meanwhile: its new name is older and comes later
        found.reverse()
        found.sort(key=lambda r: r["timestamp_ms"])  # stable: file order within a time
        return found[-limit:]


# Writers append a batch within about BATCH_WINDOW_S of its records' timestamps: far less.
SKEW_MS = 2000
_CHUNK = 256 * 1024


def _read_back(f: BinaryIO, found: list[dict], since_ms: int, limit: int, horizon: int) -> int:
    """Append ``f``'s records at or after ``since_ms`` to ``found``, newest first, until
    one is older than the horizon; returns the horizon (raised once ``limit`` are found)."""
    pos = f.seek(0, os.SEEK_END)
    rest = b""
    while pos > 0:
        size = min(_CHUNK, pos)
        pos -= size
        f.seek(pos)
        lines = (f.read(size) + rest).split(b"\n")
        rest = lines.pop(0) if pos > 0 else b""  # may be the end of a line further back
        for line in reversed(lines):
            record = _record(line)
            if record is None:
                continue
            stamp = record["timestamp_ms"]
            if stamp < horizon:
                return horizon
            if stamp >= since_ms:
                found.append(record)
                if len(found) >= limit:
                    horizon = max(horizon, stamp - SKEW_MS)
    return horizon


def _segment_name() -> str:
    """A name for a finished segment that sorts by the time it was finished."""
    return f"{time.time_ns():020d}-{os.getpid()}.jsonl"


def _oldest_ms(path: str) -> float:
    """The timestamp of a segment's first intact record (inf when it has none)."""
    with open(path, "rb") as f:
        for line in f:
            record = _record(line.rstrip(b"\n"))
            if record is not None:
                return record["timestamp_ms"]
    return float("inf")


def _record(line: bytes) -> dict | None:
    if not line:
        return None
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None  # a torn line
    if not isinstance(record, dict) or not isinstance(record.get("timestamp_ms"), int):
        return None
    return record
