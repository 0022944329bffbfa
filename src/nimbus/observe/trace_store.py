"""Where segments are kept: an append-only JSON-lines log per process in the data dir,
and the server's index of the most recent traces read from all of them.

Why files and not the metadata store: segments come from every process that runs
functions (the server and its async workers) and from functions' own X-Ray SDKs, at the
rate of invocations; a database row each would put a write on every warm invocation, and
a table needs a migration for data that is only ever kept for a while. A process instead
buffers its segments and appends them to ``traces/<process>.<n>.jsonl`` a tenth of a
second later, off the event loop. Bounded: a file is rotated at ``max_bytes`` and a
process keeps its two newest, so the data dir holds at most 2 x ``max_bytes`` per
process (8 MB each by default: tens of thousands of invocations); they outlive restarts.

When an OpenTelemetry collector is configured, every segment a process appends is also
queued for export to it (otlp_export.SpanExport), from a thread of its own.

The server reads them lazily (``TraceStore.refresh``, on each trace API call), each file
from where it stopped, and keeps the ``max_traces`` most recent traces in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nimbus import codec
from nimbus.threads import blocking

if TYPE_CHECKING:
    from nimbus.observe.otlp_export import SpanExport

log = logging.getLogger("nimbus.observe.trace_store")

MAX_BYTES = 8 * 1024 * 1024
MAX_TRACES = 5000
MAX_SEGMENTS_PER_TRACE = 500  # X-Ray's own limit on a trace's documents is similar
FLUSH_DELAY_S = 0.1
MAX_BUFFERED = 20_000  # segments waiting for a flush; beyond it the oldest are dropped
_FILE = re.compile(r"(?P<tag>[\w-]+)\.(?P<seq>\d+)\.jsonl")


class SegmentLog:
    """A process's segment writer: ``append`` is cheap and synchronous (the event loop's
    side), a flush task writes the buffered lines in a thread; ``export`` (if any) gets
    each document too."""

    def __init__(
        self,
        directory: Path,
        tag: str,
        max_bytes: int = MAX_BYTES,
        export: SpanExport | None = None,
    ) -> None:
        self.directory = directory
        self.tag = tag
        self.max_bytes = max_bytes
        self.export = export
        # Documents, serialised by the flush (in its thread), not on the invocation's path.
        self._buffer: list[dict[str, Any]] = []
        self._lock = threading.Lock()  # file writes: the flush task and flush()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._seq: int | None = None
        self.dropped = 0

    def append(self, doc: dict[str, Any]) -> None:
        if len(self._buffer) >= MAX_BUFFERED:
            del self._buffer[: MAX_BUFFERED // 10]
            self.dropped += MAX_BUFFERED // 10
        self._buffer.append(doc)
        if self._wake is not None:
            self._wake.set()
        if self.export is not None:
            self.export.submit(doc)

    def start(self) -> None:
        """Flush from a task on the running loop (else only ``flush`` writes), and start
        the export's thread."""
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._flusher())
        if self.export is not None:
            self.export.start()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush_async()
        if self.export is not None:
            await blocking(self.export.close)

    async def _flusher(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            await asyncio.sleep(FLUSH_DELAY_S)  # gathers a burst into one write
            self._wake.clear()
            await self.flush_async()

    async def flush_async(self) -> None:
        """Write what is buffered, from the event loop (the write runs in a thread)."""
        lines, self._buffer = self._buffer, []  # taken on the loop, where append runs
        if lines:
            try:
                await blocking(self._write, lines)
            except OSError:
                log.exception("writing trace segments failed")

    def flush(self) -> None:
        """Write what is buffered (blocking; from the thread that appends)."""
        lines, self._buffer = self._buffer, []
        if lines:
            self._write(lines)

    def _write(self, docs: list[dict[str, Any]]) -> None:
        # orjson: every invocation writes a segment or two, and the standard library's
        # encoder was the async worker's largest new cost per event.
        data = b"".join(_line(d) for d in docs)
        with self._lock:
            path = self._current()
            with open(path, "ab") as f:
                f.write(data)
                size = f.tell()
            if size >= self.max_bytes:
                self._rotate()

    def _current(self) -> Path:
        if self._seq is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._seq = max(self._sequences(), default=0)
        return self.directory / f"{self.tag}.{self._seq}.jsonl"

    def _sequences(self) -> list[int]:
        seqs = []
        for entry in os.scandir(self.directory):
            match = _FILE.fullmatch(entry.name)
            if match and match["tag"] == self.tag:
                seqs.append(int(match["seq"]))
        return seqs

    def _rotate(self) -> None:
        assert self._seq is not None
        self._seq += 1
        for seq in self._sequences():
            if seq < self._seq - 1:  # keep the file just filled and the new one
                with contextlib.suppress(FileNotFoundError):
                    (self.directory / f"{self.tag}.{seq}.jsonl").unlink()


class TraceStore:
    """The server's view: the most recent traces of every process's segment log."""

    def __init__(self, directory: Path, max_traces: int = MAX_TRACES) -> None:
        self.directory = directory
        self.max_traces = max_traces
        self._offsets: dict[str, int] = {}  # file name -> bytes read (names never reused)
        self._traces: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def refresh(self) -> None:
        """Read what the segment logs gained since the last call (blocking)."""
        with self._lock:
            try:
                names = [e.name for e in os.scandir(self.directory) if _FILE.fullmatch(e.name)]
            except FileNotFoundError:
                return
            # Oldest first within a process, so a restart's first read keeps their order.
            names.sort(key=lambda n: (n.split(".")[0], int(n.split(".")[1])))
            for name in names:
                self._read(name)
            self._offsets = {n: o for n, o in self._offsets.items() if n in names}

    def _read(self, name: str) -> None:
        offset = self._offsets.get(name, 0)
        try:
            with open(self.directory / name, "rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1  # a line being written is read next time
        if end == 0:
            return
        self._offsets[name] = offset + end
        for line in data[:end].splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict):
                self.add(doc)

    def add(self, doc: dict[str, Any]) -> None:
        root = doc.get("trace_id")
        if not isinstance(root, str):
            return
        segments = self._traces.get(root)
        if segments is None:
            segments = self._traces[root] = []
            while len(self._traces) > self.max_traces:
                self._traces.popitem(last=False)
        for i, held in enumerate(segments):
            if held.get("id") == doc.get("id"):  # an in-progress document completed
                segments[i] = doc
                return
        if len(segments) < MAX_SEGMENTS_PER_TRACE:
            segments.append(doc)

    def trace(self, root: str) -> list[dict[str, Any]] | None:
        segments = self._traces.get(root)
        return list(segments) if segments is not None else None

    def traces(self) -> Iterable[tuple[str, list[dict[str, Any]]]]:
        """Every trace held, newest first."""
        return reversed(list(self._traces.items()))

    def segments_since(self, since: float) -> list[dict[str, Any]]:
        """The documents of traces with a segment that ended at or after ``since``."""
        out: list[dict[str, Any]] = []
        for segments in self._traces.values():
            if any(end_of(s) >= since for s in segments):
                out.extend(segments)
        return out


def _line(doc: dict[str, Any]) -> bytes:
    """A document's line; one that cannot be encoded is left out (and logged), never
    the batch it came with."""
    try:
        return codec.dumps(doc) + b"\n"
    except (TypeError, ValueError):  # orjson's JSONEncodeError is a TypeError
        log.warning("a trace segment could not be stored: %.200r", doc)
        return b""


def end_of(doc: dict[str, Any]) -> float:
    """When a segment document ended (its start while in progress), epoch seconds."""
    end = doc.get("end_time", doc.get("start_time", 0))
    return float(end) if isinstance(end, int | float) else 0.0
