"""What only the SQLite backend promises: its file, its lock, its group commit."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nimbus.queue.backend import QueuedEvent, QueueError
from nimbus.queue.backends.sqlite import SqliteQueue


def event(n: int) -> QueuedEvent:
    return QueuedEvent("fn", None, b"{}", f"req-{n}")


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[SqliteQueue]:
    q = SqliteQueue(tmp_path / "data" / "queue.db")  # creates the data dir
    await q.open()
    yield q
    await q.close()


async def test_file_is_wal_with_full_sync(queue: SqliteQueue) -> None:
    await queue.put(event(1))
    db = sqlite3.connect(queue.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 1
    db.close()


async def test_concurrent_puts_share_commits(queue: SqliteQueue) -> None:
    before = queue.commits
    await asyncio.gather(*(queue.put(event(i)) for i in range(2000)))
    assert queue.commits - before < 100


async def test_one_process_owns_the_file(queue: SqliteQueue) -> None:
    other = SqliteQueue(queue.path)
    with pytest.raises(QueueError, match="in use"):
        await other.open()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(QueueError, match="schema version 99"):
        await SqliteQueue(path).open()


async def test_a_bad_event_fails_alone(queue: SqliteQueue) -> None:
    good = asyncio.gather(*(queue.put(event(i)) for i in range(10)))
    with pytest.raises(TypeError):
        await queue.put(QueuedEvent("fn", None, "not bytes", "bad"))
    assert len(await good) == 10


async def test_a_lease_nobody_received_is_handed_back(queue: SqliteQueue) -> None:
    await queue.put(event(1))
    leasing = asyncio.create_task(queue.lease(10, 300))
    await asyncio.sleep(0)  # the request is on its way to the writer
    leasing.cancel()
    await queue.stats()  # the cancelled lease has been settled, and handed back
    (lease,) = await queue.lease(10, 300)
    assert lease.event.request_id == "req-1"


async def test_closed_queue_refuses_requests(tmp_path: Path) -> None:
    q = SqliteQueue(tmp_path / "queue.db")
    with pytest.raises(QueueError, match="not open"):
        await q.stats()
    await q.open()
    await q.close()
    await q.close()  # idempotent
    with pytest.raises(QueueError, match="not open"):
        await q.lease(1, 1)


async def test_acks_and_puts_in_one_commit_settle_each_on_its_own(queue: SqliteQueue) -> None:
    # Requests sent together share a transaction, where a run of puts and acks is
    # written as one insert and one delete: each still gets the answer it would alone.
    await queue.put_many([event(i) for i in range(3)])
    first, second, third = await queue.lease(3, 60)
    await queue.retry(third, 0, 0)
    (third_again,) = await queue.lease(1, 60)  # a new token: `third` is now stale
    results = await asyncio.gather(
        queue.ack(first),
        queue.put(event(10)),
        queue.ack(first),  # the same lease again: already done
        queue.ack(second),
        queue.ack(third),  # stale token, then the current one for the same event
        queue.ack(third_again),
        queue.put(event(11)),
    )
    assert [r for r in results if isinstance(r, bool)] == [True, False, True, False, True]
    stats = await queue.stats()
    assert stats.depth == 2 and stats.in_flight == 0
    leased = await queue.lease(10, 60)
    assert [lease.event.request_id for lease in leased] == ["req-10", "req-11"]


async def test_large_put_runs_are_cut_into_chunks_in_order(queue: SqliteQueue) -> None:
    ids = await queue.put_many([event(i) for i in range(300)])  # 128 + 128 + 32 + 8 + 4
    assert [int(i) for i in ids] == list(range(int(ids[0]), int(ids[0]) + 300))
    leased = await queue.lease(300, 60)
    assert [lease.event.request_id for lease in leased] == [f"req-{i}" for i in range(300)]
    assert all(await asyncio.gather(*(queue.ack(lease) for lease in leased)))
    assert (await queue.stats()).depth == 0


# The events table as schema version 1 created it (with columns nothing read).
_VERSION_1 = """
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, visible_ms INTEGER NOT NULL,
    due_ms INTEGER NOT NULL, token TEXT, enqueued_ms INTEGER NOT NULL,
    not_before_ms INTEGER NOT NULL, attempts INTEGER NOT NULL, kind TEXT NOT NULL,
    function_name TEXT NOT NULL, qualifier TEXT, request_id TEXT NOT NULL, trace_id TEXT,
    extra TEXT, payload BLOB NOT NULL
);
CREATE INDEX events_visible ON events (visible_ms);
CREATE INDEX events_leased ON events (visible_ms) WHERE token IS NOT NULL;
CREATE INDEX events_enqueued ON events (enqueued_ms);
INSERT INTO events VALUES (7, 0, 0, NULL, 1700000000000, 0, 1, 'invoke', 'fn', 'live',
    'req-old', 'Root=1-abc', '{"n": 1}', X'7B7D');
PRAGMA user_version = 1;
"""


async def test_a_version_1_queue_keeps_its_events(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    old = sqlite3.connect(path)
    old.executescript(_VERSION_1)
    old.close()
    queue = SqliteQueue(path)
    await queue.open()
    try:
        (lease,) = await queue.lease(10, 30)
        assert lease.id == "7"
        assert lease.event == QueuedEvent(
            "fn", "live", b"{}", "req-old", "Root=1-abc", 1700000000000, 1, 0
        )
        await queue.put(event(2))  # and takes new ones in the new shape
        assert [lease.event.request_id for lease in await queue.lease(10, 30)] == ["req-2"]
    finally:
        await queue.close()
    columns = [row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(events)")]
    assert "kind" not in columns and "extra" not in columns
