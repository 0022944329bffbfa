"""Per-invocation logs in Lambda's format, kept in the store for later reading.

Each invocation's log is the function's own output framed by Lambda's lines::

    START RequestId: <id> Version: <v>
    ...what the function printed...
    END RequestId: <id>
    REPORT RequestId: <id>\tDuration: 1.23 ms\tBilled Duration: 2 ms\tMemory Size: 128 MB\t
    Max Memory Used: 20 MB\tInit Duration: 4.56 ms\t

With ``LoggingConfig.LogFormat`` JSON (``render_json``) the same invocation is Lambda's
JSON log instead: platform events as ``{"time", "type", "record"}`` objects
(``platform.start``, ``platform.report``; ``platform.initStart``, ``platform.runtimeDone``
... at DEBUG) kept by SystemLogLevel, and the function's lines kept by
ApplicationLogLevel (``log_config``), unchanged.

Records are written in batches by a background task so the invoke path never waits
on the disk: on the embedded backend to per-function files (``log_files.py``), on
PostgreSQL to the ``invocation_logs`` table, where every node can read them. The server
deletes records past the retention setting (``log_retention_days``) once an hour.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import delete, insert, select

from nimbus import codec
from nimbus.clock import now_ms
from nimbus.observe.log_config import INFO, SEVERITY, LogConfig
from nimbus.observe.log_files import LogFiles, encode_record
from nimbus.store.database import Database
from nimbus.store.schema import invocation_logs
from nimbus.threads import blocking

log = logging.getLogger("nimbus.logs")
PRUNE_EVERY_S = 3600.0  # or a quarter of the retention, when that is shorter
TAIL_BYTES = 4096
BATCH_WINDOW_S = 0.1  # how long a log record waits for others to share its write


@dataclass
class InvocationLog:
    request_id: str
    function_name: str
    version: str
    log_stream: str
    timestamp_ms: int
    text: str
    duration_ms: float
    billed_ms: int
    memory_size: int
    max_memory_used: int
    init_ms: float | None
    error_type: str | None


def billed(duration_ms: float, init_ms: float | None = None, *, restored: bool = False,
           init_failed: bool = False) -> int:
    """Lambda's Billed Duration, whole milliseconds (at least 1): the invocation's, and on
    a cold start its Init Duration as well (billed for every runtime and package since
    1 August 2025). A SnapStart restore (``restored``: ``init_ms`` is the restore) is
    billed apart, as Billed Restore Duration; a failed init's duration is its init,
    billed once (``init_failed``)."""
    if restored or init_failed:
        init_ms = None
    return max(1, math.ceil(duration_ms + (init_ms or 0.0)))


def render(
    request_id: str,
    version: str,
    function_output: bytes,
    duration_ms: float,
    memory_size: int,
    max_memory_used: int,
    init_ms: float | None,
    init_output: bytes = b"",
    restored: bool = False,
    xray: str = "",
    billed_ms: int | None = None,
) -> str:
    """One invocation's log; what the function printed while initialising comes first,
    before START, as in Lambda's log stream. ``restored``: the environment started from
    a SnapStart template, and ``init_ms`` is its restore phase (Lambda's Restore Duration
    and Billed Restore Duration, in place of Init Duration). ``xray``: the REPORT's
    ``XRAY TraceId`` part (tracing.report_xray). ``billed_ms``: the Billed Duration, when
    the caller has it already (else ``billed``'s)."""
    body = _lines(function_output)
    init = _lines(init_output)
    if billed_ms is None:
        billed_ms = billed(duration_ms, init_ms, restored=restored)
    report = (
        f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
        f"Billed Duration: {billed_ms} ms\tMemory Size: {memory_size} MB\t"
        f"Max Memory Used: {max_memory_used} MB\t"
    )
    if init_ms is not None and restored:
        report += (f"Restore Duration: {init_ms:.2f} ms\t"
                   f"Billed Restore Duration: {math.ceil(init_ms)} ms\t")
    elif init_ms is not None:
        report += f"Init Duration: {init_ms:.2f} ms\t"
    report += xray
    return (
        f"{init}START RequestId: {request_id} Version: {version}\n{body}"
        f"END RequestId: {request_id}\n{report}\n"
    )


def _lines(output: bytes) -> str:
    text = output.decode("utf-8", "replace")
    return text if not text or text.endswith("\n") else text + "\n"


def render_json(
    config: LogConfig,
    request_id: str,
    version: str,
    function_arn: str,
    function_output: bytes,
    duration_ms: float,
    memory_size: int,
    max_memory_used: int,
    init_ms: float | None,
    init_output: bytes = b"",
    *,
    function_name: str = "",
    error_type: str | None = None,
    produced_bytes: int = 0,
    init_failed: bool = False,
    end_ms: int | None = None,
    restored: bool = False,
    billed_ms: int | None = None,
) -> str:
    """One invocation's log in Lambda's JSON format: platform events kept by the
    function's SystemLogLevel, its own lines (unchanged) by its ApplicationLogLevel.

    Which level each platform event has is Lambda's mapping: ``start`` and a successful
    ``report`` INFO, ``runtimeDone`` and the init events of an on-demand start DEBUG, any
    of them WARN when their status is not ``success``. ``initStart`` is DEBUG because
    nimbus has no runtime version to put in it. ``error_type`` (with ``init_failed``, of
    the init phase) makes the status ``timeout`` for ``Sandbox.Timedout``, else
    ``error``."""
    assert config.application_level is not None and config.system_level is not None
    system = SEVERITY[config.system_level]
    application = SEVERITY[config.application_level]
    end = now_ms() if end_ms is None else end_ms
    start = end - round(duration_ms)
    out: list[str] = []

    def platform(level: str, at_ms: int, kind: str, record: dict[str, Any]) -> None:
        if SEVERITY[level] >= system:
            event = {"time": _iso(at_ms), "type": f"platform.{kind}", "record": record}
            out.append(codec.dumps(event).decode())

    phase = {"initializationType": "on-demand", "phase": "init"}
    if init_ms is not None:
        platform("DEBUG", start - round(init_ms), "initStart",
                 {**phase, "functionName": function_name, "functionVersion": version})
    _keep(out, init_output, application)
    if init_ms is not None:
        if init_failed:
            failed = {"status": "error", "errorType": error_type or "Runtime.Unknown"}
            platform("WARN", start, "initRuntimeDone", {**phase, **failed})
            platform("WARN", start, "initReport",
                     {**phase, **failed, "metrics": {"durationMs": round(init_ms, 3)}})
        else:
            ok = {"status": "success"}
            platform("DEBUG", start, "initRuntimeDone", {**phase, **ok})
            platform("DEBUG", start, "initReport",
                     {**phase, **ok, "metrics": {"durationMs": round(init_ms, 3)}})
    platform("INFO", start, "start",
             {"requestId": request_id, "functionArn": function_arn, "version": version})
    _keep(out, function_output, application)
    status: dict[str, Any] = {"status": "success"}
    if error_type == "Sandbox.Timedout":
        status = {"status": "timeout"}
    elif error_type is not None:
        status = {"status": "error", "errorType": error_type}
    if not init_failed:
        platform("DEBUG" if error_type is None else "WARN", end, "runtimeDone", {
            "requestId": request_id, **status,
            "metrics": {"durationMs": round(duration_ms, 3), "producedBytes": produced_bytes},
        })
    metrics: dict[str, Any] = {
        "durationMs": round(duration_ms, 3),
        "billedDurationMs": billed_ms if billed_ms is not None else billed(
            duration_ms, init_ms, restored=restored, init_failed=init_failed),
        "memorySizeMB": memory_size,
        "maxMemoryUsedMB": max_memory_used,
    }
    if init_ms is not None and restored:
        metrics["restoreDurationMs"] = round(init_ms, 3)
        metrics["billedRestoreDurationMs"] = math.ceil(init_ms)
    elif init_ms is not None:
        metrics["initDurationMs"] = round(init_ms, 3)
    platform("INFO" if error_type is None else "WARN", end, "report",
             {"requestId": request_id, "metrics": metrics, **status})
    return "\n".join(out) + "\n" if out else ""


def _keep(out: list[str], output: bytes, threshold: int) -> None:
    """Append the lines of ``output`` at ``threshold`` or above to ``out``, unchanged."""
    if not output:
        return
    lines = output.decode("utf-8", "replace").split("\n")
    if lines[-1] == "":
        lines.pop()
    if threshold == 0:  # TRACE: everything
        out.extend(lines)
        return
    out.extend(line for line in lines if line_level(line) >= threshold)


def line_level(line: str) -> int:
    """The severity of one line of output: its JSON object's ``"level"``, else INFO."""
    if not line.lstrip().startswith("{"):
        return INFO
    try:
        record = codec.loads(line)
    except (ValueError, RecursionError):  # not JSON, or nested past what json.loads takes
        return INFO
    level = record.get("level") if isinstance(record, dict) else None
    return SEVERITY.get(level.upper(), INFO) if isinstance(level, str) else INFO


def _iso(ms: int) -> str:
    """Lambda's event time: ``2024-01-31T12:00:00.123Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def tail(text: str) -> bytes:
    """The last 4 KB, as Lambda returns in X-Amz-Log-Result."""
    return text.encode()[-TAIL_BYTES:]


class LogStore:
    """Writes invocation logs in batches; reads a function's newest back."""

    def __init__(self, db: Database, files: LogFiles | None = None) -> None:
        self.db = db
        self.files = files
        self._pending: list[InvocationLog] = []  # for the table
        self._lines: dict[str, list[bytes]] = {}  # for the files, by function, encoded
        self._arrived = asyncio.Event()
        self._writing = asyncio.Lock()  # one batch at a time, in order
        self._task: asyncio.Task[None] | None = None
        self._pruner: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._drain())

    def start_pruning(self, retention_days: float) -> None:
        """Delete records older than ``retention_days`` now and from time to time (0:
        never). One process of a nimbus does it: the server."""
        if retention_days > 0:
            loop = asyncio.get_running_loop()
            self._pruner = loop.create_task(self._prune_forever(retention_days * 86400))

    async def _prune_forever(self, retention_s: float) -> None:
        every = min(PRUNE_EVERY_S, retention_s / 4)
        while True:
            try:
                await blocking(self.prune, now_ms() - int(retention_s * 1000))
            except Exception:  # a full disk or a busy database: try again next time
                log.exception("could not delete expired invocation logs")
            await asyncio.sleep(every)

    def prune(self, before_ms: int) -> None:
        """Delete the records older than ``before_ms`` (blocking)."""
        if self.files is not None:
            removed = self.files.prune(before_ms)
            if removed:
                log.info("deleted %d expired invocation log segment(s)", removed)
        # With files too: rows written before them expire the same way.
        with self.db.write() as conn:
            conn.execute(delete(invocation_logs).where(invocation_logs.c.timestamp_ms < before_ms))

    def append(self, record: InvocationLog) -> None:
        if self.files is None:
            self._pending.append(record)
        else:
            # Encoded now (about a microsecond) rather than by the writer thread: a
            # batch encoded there held the GIL for a millisecond every BATCH_WINDOW_S,
            # and every request in flight waited for it (function URL p99 5.6-5.9 ms
            # against 3.9-4.2 without log writes). The thread only joins and writes.
            lines = self._lines.get(record.function_name)
            if lines is None:
                lines = self._lines[record.function_name] = []
            lines.append(encode_record(record))
        self._arrived.set()

    async def _drain(self) -> None:
        while True:
            await self._arrived.wait()
            # Let the records of the next tenth of a second share the write: under load a
            # transaction per handful of rows (and a thread hand-off each) cost the
            # async worker about a third of its CPU.
            await asyncio.sleep(BATCH_WINDOW_S)
            self._arrived.clear()
            try:
                await self._write_pending()
            except Exception:  # a log write must never take the server down
                log.exception("could not store invocation logs")

    async def _write_pending(self) -> None:
        async with self._writing:
            records, lines = self._take()
            if records or lines:
                await blocking(self._store, records, lines)

    def write(self, records: list[InvocationLog]) -> None:
        """Store ``records`` now, in order (blocking; for tools and tests)."""
        for record in records:
            self.append(record)
        self._store(*self._take())

    def _take(self) -> tuple[list[InvocationLog], dict[str, list[bytes]]]:
        records, self._pending = self._pending, []
        lines, self._lines = self._lines, {}
        return records, lines

    def _store(self, records: list[InvocationLog], lines: dict[str, list[bytes]]) -> None:
        if lines:
            assert self.files is not None
            for name, function_lines in lines.items():
                self.files.append(name, function_lines)
        if records:
            with self.db.write() as conn:
                conn.execute(insert(invocation_logs), [asdict(r) for r in records])

    async def flush(self) -> None:
        """Write whatever is waiting, after any write under way (at shutdown, and for
        readers that need what has run)."""
        await self._write_pending()

    async def close(self) -> None:
        for task in (self._task, self._pruner):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.flush()

    def read(self, function_name: str, since_ms: int = 0, limit: int = 100) -> list[InvocationLog]:
        """The newest ``limit`` records of a function at or after ``since_ms``, oldest
        first (with files, the table's rows too: those written before they were used)."""
        rows = self._read_table(function_name, since_ms, limit)
        if self.files is None:
            return rows
        from_files = [_record(r) for r in self.files.read(function_name, since_ms, limit)]
        if not rows:
            return from_files
        merged = sorted(rows + from_files, key=lambda r: r.timestamp_ms)
        return merged[-limit:]

    def _read_table(self, function_name: str, since_ms: int, limit: int) -> list[InvocationLog]:
        query = (
            select(invocation_logs)
            .where(
                invocation_logs.c.function_name == function_name,
                invocation_logs.c.timestamp_ms >= since_ms,
            )
            .order_by(invocation_logs.c.id.desc())
            .limit(limit)
        )
        with self.db.read() as conn:
            rows = conn.execute(query).all()
        return [_record(r._mapping) for r in reversed(rows)]



def _record(values: Mapping[Any, Any]) -> InvocationLog:
    """A record from a table row or a log file's line (a field it lacks is None)."""
    fields: dict[str, Any] = {name: values.get(name) for name in InvocationLog.__dataclass_fields__}
    return InvocationLog(**fields)
