"""The invocation log store: batches written to the table (PostgreSQL), or to
per-function files on the embedded backend, read back intact and in order."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

from nimbus.observe.log_files import SEGMENT_BYTES, LogFiles
from nimbus.observe.logs import InvocationLog, LogStore
from nimbus.store.database import Database


def record(n: int) -> InvocationLog:
    return InvocationLog(
        request_id=f"req-{n}",
        function_name="fn",
        version="$LATEST",
        log_stream="2024/01/01/[$LATEST]abc",
        timestamp_ms=1000 + n,
        text=f"START RequestId: req-{n}\nline {n}\n",
        duration_ms=1.25,
        billed_ms=2,
        memory_size=128,
        max_memory_used=20,
        init_ms=None if n % 2 else 3.5,
        error_type="Boom" if n % 7 == 0 else None,
    )


def test_a_batch_of_any_length_is_stored_in_order(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'nimbus.db'}")
    db.migrate()
    logs = LogStore(db)
    written = [record(n) for n in range(203)]
    logs.write(written)
    assert logs.read("fn", limit=1000) == written
    db.dispose()


def files_store(tmp_path: Path, segment_bytes: int = SEGMENT_BYTES) -> tuple[Database, LogStore]:
    db = Database(f"sqlite:///{tmp_path / 'nimbus.db'}")
    db.migrate()
    return db, LogStore(db, LogFiles(tmp_path / "logs", segment_bytes))


def test_files_keep_every_field_and_the_order(tmp_path: Path) -> None:
    db, logs = files_store(tmp_path)
    written = [record(n) for n in range(203)]
    logs.write(written)
    assert logs.read("fn", limit=1000) == written
    assert logs.read("fn", limit=5) == written[-5:]
    assert logs.read("fn", since_ms=1200, limit=1000) == written[200:]
    assert logs.read("other", limit=10) == []
    db.dispose()


def test_processes_append_to_the_same_files(tmp_path: Path) -> None:
    db, server = files_store(tmp_path, segment_bytes=2000)
    worker = LogStore(db, LogFiles(tmp_path / "logs", 2000))  # another process's writer
    written = [record(n) for n in range(120)]
    for i in range(0, 120, 10):
        (server if i % 20 else worker).write(written[i : i + 10])
    segments = sorted(p.name for p in (tmp_path / "logs" / "fn").iterdir())
    assert len(segments) > 3  # rotated as they grew
    assert server.read("fn", limit=1000) == written
    assert worker.read("fn", limit=7) == written[-7:]
    db.dispose()


def test_a_torn_line_is_skipped(tmp_path: Path) -> None:
    db, logs = files_store(tmp_path)
    logs.write([record(1)])
    with open(tmp_path / "logs" / "fn" / "current.jsonl", "ab") as f:
        f.write(b'{"request_id": "req-2", "funct')  # a write cut short by a full disk
    logs.write([record(3)])
    assert [r.request_id for r in logs.read("fn")] == ["req-1", "req-3"]
    db.dispose()


def test_rows_stored_before_the_files_are_still_read(tmp_path: Path) -> None:
    db, logs = files_store(tmp_path)
    LogStore(db).write([record(1), record(2)])  # an older nimbus wrote rows
    logs.write([record(3), record(4)])
    assert [r.request_id for r in logs.read("fn")] == ["req-1", "req-2", "req-3", "req-4"]
    assert [r.request_id for r in logs.read("fn", limit=3)] == ["req-2", "req-3", "req-4"]
    db.dispose()


def test_reading_backwards_across_chunks_and_out_of_order_batches(
    tmp_path: Path, monkeypatch
) -> None:
    from nimbus.observe import log_files

    monkeypatch.setattr(log_files, "_CHUNK", 97)  # lines straddle every chunk boundary
    db, logs = files_store(tmp_path, segment_bytes=20_000)
    # Two writers' batches interleave in the file slightly out of time order, as they
    # do when the server and a worker flush within the same batch window.
    # 100 ms apart: the newest few are found long before the start of the file.
    written = [replace(record(n), timestamp_ms=1_000_000 + 100 * n) for n in range(400)]
    for i in range(0, 400, 20):
        batch = written[i : i + 20]
        logs.write(batch[10:] if i % 40 else batch[:10])
        logs.write(batch[:10] if i % 40 else batch[10:])
    assert len(list((tmp_path / "logs" / "fn").iterdir())) >= 4
    assert logs.read("fn", limit=1000) == written
    for limit in (1, 15, 33, 250):
        assert logs.read("fn", limit=limit) == written[-limit:]
    since = written[390].timestamp_ms
    assert logs.read("fn", since_ms=since, limit=5) == written[-5:]
    assert logs.read("fn", since_ms=since, limit=50) == written[390:]
    db.dispose()


DAY_MS = 86_400_000


def aged(n: int, at_ms: int) -> InvocationLog:
    return replace(record(n), timestamp_ms=at_ms)


def set_mtime(folder: Path, at_ms: int) -> None:
    for path in folder.iterdir():
        os.utime(path, (at_ms / 1000, at_ms / 1000))


def test_expired_segments_are_deleted_and_recent_ones_kept(tmp_path: Path) -> None:
    db, logs = files_store(tmp_path, segment_bytes=2000)
    now = int(time.time() * 1000)
    folder = tmp_path / "logs" / "fn"
    for n in range(41):  # one batch each: several segments, and a current one
        logs.write([aged(n, now - 10 * DAY_MS)])
    set_mtime(folder, now - 10 * DAY_MS)
    assert len(list(folder.iterdir())) > 2 and (folder / "current.jsonl").exists()
    logs.prune(now - 5 * DAY_MS)
    # Only the current segment is left, renamed (a writer may have had it open)...
    (left,) = folder.iterdir()
    assert left.name != "current.jsonl"
    logs.prune(now - 5 * DAY_MS)
    assert not folder.exists()  # ...and gone at the next prune: nothing came since
    assert logs.read("fn", limit=100) == []

    recent = [aged(n, now - DAY_MS + n) for n in range(40)]
    logs.write(recent)
    logs.prune(now - 5 * DAY_MS)
    assert logs.read("fn", limit=100) == recent
    db.dispose()


def test_a_current_segment_with_expired_records_is_closed_for_the_next_prune(
    tmp_path: Path,
) -> None:
    db, logs = files_store(tmp_path)
    now = int(time.time() * 1000)
    old, new = aged(1, now - 10 * DAY_MS), aged(2, now)
    logs.write([old])
    logs.write([new])  # same segment: its file was written just now
    logs.prune(now - 5 * DAY_MS)
    folder = tmp_path / "logs" / "fn"
    assert [p.name for p in folder.iterdir()] != ["current.jsonl"]  # renamed
    assert logs.read("fn", limit=10) == [old, new]  # kept while it holds a recent one
    later = aged(3, now + 1)
    logs.write([later])
    assert logs.read("fn", limit=10) == [old, new, later]
    db.dispose()


def test_expired_rows_are_deleted_from_the_table(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'nimbus.db'}")
    db.migrate()
    logs = LogStore(db)
    now = int(time.time() * 1000)
    logs.write([aged(1, now - 10 * DAY_MS), aged(2, now)])
    logs.prune(now - 5 * DAY_MS)
    assert [r.request_id for r in logs.read("fn")] == ["req-2"]
    db.dispose()


@pytest.mark.parametrize("name", ["..", "../x", "a/b", "", "/etc", "x" * 65, "a\x00b"])
def test_only_function_names_become_folders(tmp_path: Path, name: str) -> None:
    files = LogFiles(tmp_path / "logs")
    with pytest.raises(ValueError, match="not a function name"):
        files.append(name, [b"{}\n"])
    with pytest.raises(ValueError, match="not a function name"):
        files.read(name, 0, 10)
    assert not (tmp_path / "logs").exists()
