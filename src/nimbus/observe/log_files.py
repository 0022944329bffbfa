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
them is how logs are pruned.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import orjson

SEGMENT_BYTES = 32 * 1024 * 1024
CURRENT = "current.jsonl"


class LogFiles:
    """Appends invocation log records to, and reads them back from, per-function files."""

    def __init__(self, directory: Path, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes

    def append(self, function_name: str, records: list[object]) -> None:
        """Append records (dataclasses orjson can encode) of one function, in one write."""
        folder = self.directory / function_name
        # Led by a newline: a line torn by an earlier failed write ends there, alone.
        data = b"\n" + b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records)
        path = folder / CURRENT
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
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
                path.rename(folder / f"{time.time_ns():020d}-{os.getpid()}.jsonl")

    def read(self, function_name: str, since_ms: int, limit: int) -> list[dict]:
        """The newest ``limit`` records at or after ``since_ms``, oldest first."""
        folder = self.directory / function_name
        try:
            names = sorted(n for n in os.listdir(folder) if n != CURRENT)
        except FileNotFoundError:
            return []
        names.append(CURRENT)
        segments: list[list[dict]] = []  # newest first
        count = 0
        for name in reversed(names):
            path = folder / name
            try:
                if os.stat(path).st_mtime * 1000 < since_ms:
                    break  # this segment and every older one end before since_ms
                data = path.read_bytes()
            except FileNotFoundError:
                continue  # renamed meanwhile: its new name is older and comes later
            if count >= limit:
                # Segments overlap by at most a batch window at their boundary: one more
                # segment than needed covers it.
                segments.append(_records(data, since_ms))
                break
            segments.append(_records(data, since_ms))
            count += len(segments[-1])
        found = [record for segment in reversed(segments) for record in segment]
        found.sort(key=lambda r: r["timestamp_ms"])  # stable: file order within a time
        return found[-limit:]


def _records(data: bytes, since_ms: int) -> list[dict]:
    out = []
    for line in data.splitlines():
        if not line:
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # a torn line
        if isinstance(record, dict) and record.get("timestamp_ms", -1) >= since_ms:
            out.append(record)
    return out
