"""The concurrency limiter counts every process that shares its file."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from nimbus.errors import TooManyRequests
from nimbus.invocation.concurrency import (
    ACCOUNT_REASON,
    RESERVED_REASON,
    ConcurrencyLimiter,
)

# Another process: attaches as row 1, holds one slot of reserved function "f", says so.
HOLDER = """
import sys
from nimbus.invocation.concurrency import ConcurrencyLimiter
limiter = ConcurrencyLimiter.attach(__import__("pathlib").Path(sys.argv[1]), 10, 1)
limiter.admit("f", 1, 1)
print("held", flush=True)
sys.stdin.read()
"""


@contextmanager
def slot(limiter: ConcurrencyLimiter, *args: object) -> Iterator[None]:
    ticket = limiter.admit(*args)
    try:
        yield
    finally:
        limiter.release(ticket)


def reason(call) -> str:
    with pytest.raises(TooManyRequests) as info:
        call()
    return str(info.value.extra["Reason"])


def test_account_limit_counts_every_process(tmp_path: Path) -> None:
    server = ConcurrencyLimiter.create(tmp_path / "c", 3, processes=2)
    worker = ConcurrencyLimiter.attach(tmp_path / "c", 3, 1)
    with slot(server, "a", None, 1), slot(worker, "b", None, 1):
        # 3 - 1 reserved elsewhere leaves 2 unreserved, both in use (one per process).
        assert reason(lambda: server.admit("c", None, 1)) == ACCOUNT_REASON
        assert reason(lambda: worker.admit("c", None, 1)) == ACCOUNT_REASON
        assert server.in_flight() == worker.in_flight() == 2
        with slot(server, "r", 1, 1):  # a reserved function does not draw on the rest
            assert worker.in_flight("r") == 1
    with slot(worker, "c", None, 1):
        assert server.in_flight() == 1


def test_reservations_hold_across_processes_and_per_function(tmp_path: Path) -> None:
    server = ConcurrencyLimiter.create(tmp_path / "c", 100, processes=2)
    worker = ConcurrencyLimiter.attach(tmp_path / "c", 100, 1)
    assert reason(lambda: server.admit("zero", 0, 2)) == RESERVED_REASON
    with slot(server, "f", 2, 2), slot(worker, "f", 2, 2):
        assert reason(lambda: worker.admit("f", 2, 2)) == RESERVED_REASON
        with slot(server, "g", 1, 3):
            assert reason(lambda: worker.admit("g", 1, 3)) == RESERVED_REASON
    with slot(worker, "f", 2, 2), slot(worker, "f", 2, 2), slot(server, "g", 1, 3):
        assert server.in_flight("f") == 2


def test_a_dead_process_row_is_cleared(tmp_path: Path) -> None:
    path = tmp_path / "c"
    server = ConcurrencyLimiter.create(path, 10, processes=2)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        assert server.in_flight("f") == 1
        assert reason(lambda: server.admit("f", 1, 1)) == RESERVED_REASON
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        assert server.in_flight("f") == 1  # what it held stays counted...
        server.clear_row(1)  # ...until the supervisor, which reaped it, says so
        with slot(server, "f", 1, 1):
            assert server.in_flight("f") == 1
    finally:
        holder.kill()
        holder.wait()


def test_name_entries_are_reused_once_nothing_counts_against_them(tmp_path: Path) -> None:
    limiter = ConcurrencyLimiter.create(tmp_path / "c", 10, processes=1)
    for n in range(5000):  # far more names than the table holds (1,024)
        with slot(limiter, f"function-{n}", 1, 1):
            pass
    with slot(limiter, "x" * 64, 1, 1):  # Lambda's longest name fits
        assert limiter.in_flight("x" * 64) == 1
        assert limiter.in_flight("x" * 63) == 0


def test_a_new_server_starts_from_zero(tmp_path: Path) -> None:
    first = ConcurrencyLimiter.create(tmp_path / "c", 1, processes=1)
    first.admit("a", None, 0)  # never released: the server died
    first.close()
    again = ConcurrencyLimiter.create(tmp_path / "c", 1, processes=1)
    with slot(again, "a", None, 0):
        assert again.in_flight() == 1


def test_attaching_to_something_else_is_refused(tmp_path: Path) -> None:
    (tmp_path / "c").write_bytes(b"\0" * 100)
    with pytest.raises(RuntimeError, match="not the concurrency file"):
        ConcurrencyLimiter.attach(tmp_path / "c", 10, 1)
