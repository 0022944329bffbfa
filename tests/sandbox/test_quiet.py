"""Refills wait for cold starts to be quiet: ``nimbus.sandbox.quiet`` and the stem-cell
pool that hands it its refills (a cell's replacement, made at once, slowed the cold
start that took the cell and its first invocation by a quarter)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from nimbus.sandbox import EnvironmentSpec, SandboxError, SandboxManager
from nimbus.sandbox.quiet import Quiet
from nimbus.sandbox.stemcells import StemCell, StemCells

KEY = ("python3.12", False)




async def test_work_runs_once_cold_starts_are_quiet_but_never_later_than_the_delay(
    now: list[float],
) -> None:
    quiet = Quiet(quiet_s=0.01, delay_s=0.05)
    ran: list[str] = []
    start = now[0]
    quiet.defer(lambda: ran.append("refill"))
    assert quiet.holding and not ran
    for _ in range(6):  # a cold start begins or ends every 8 ms: each one postpones it
        now[0] += 0.008
        quiet.hold()
        await _turns()
        assert not ran
    now[0] = start + 0.049  # 1 ms after the last: not quiet, and not yet delay_s
    await _turns()
    assert not ran
    now[0] = start + 0.05  # the oldest work has waited delay_s: it runs though busy
    await _turns()
    assert ran == ["refill"] and not quiet.holding


async def test_work_waits_for_a_long_cold_start_to_end_or_for_the_delay(
    now: list[float],
) -> None:
    quiet = Quiet(quiet_s=0.01, delay_s=0.05)
    ran: list[int] = []
    start = now[0]
    quiet.begin()  # an init that imports a large library
    quiet.defer(lambda: ran.append(1))
    now[0] = start + 0.03  # quiet_s has passed, but the cold start is under way
    await _turns()
    assert not ran
    quiet.end()  # its first invocation follows: quiet_s more
    now[0] = start + 0.039
    await _turns()
    assert not ran
    now[0] = start + 0.04
    await _turns()
    assert ran == [1]
    quiet.begin()  # one that outlasts the delay: the work runs at delay_s
    quiet.defer(lambda: ran.append(2))
    now[0] = start + 0.089
    await _turns()
    assert ran == [1]
    now[0] = start + 0.09
    await _turns()
    assert ran == [1, 2]
    quiet.end()


async def test_a_quiet_spell_lets_work_run_and_after_close_work_runs_at_once(
    now: list[float],
) -> None:
    quiet = Quiet(quiet_s=0.01, delay_s=0.05)
    ran: list[int] = []
    quiet.defer(lambda: ran.append(1))
    now[0] += 0.009
    await _turns()
    assert not ran
    now[0] += 0.001  # 10 ms without a cold start
    await _turns()
    assert ran == [1]
    quiet.close()
    quiet.defer(lambda: ran.append(2))
    assert ran == [1, 2] and not quiet.holding


async def _turns() -> None:
    """Let the event loop run what is due (its clock is the test's)."""
    for _ in range(3):
        await asyncio.sleep(0)


async def test_the_same_work_asked_twice_runs_once_and_a_failure_spares_the_rest() -> None:
    quiet = Quiet(quiet_s=60, delay_s=60)
    ran: list[str] = []

    class Pool:
        def refill(self) -> None:
            ran.append("pool")

    def broken() -> None:
        raise RuntimeError("boom")

    pool = Pool()
    quiet.defer(broken)
    quiet.defer(pool.refill)
    quiet.defer(pool.refill)
    quiet.flush()
    assert ran == ["pool"] and not quiet.holding
    await asyncio.wait_for(quiet.ran(), 1)  # nothing waits: at once


class _Spawner:
    """Stem cells as real idle processes (a cell's discard kills and reaps its pid)."""

    def __init__(self) -> None:
        self.made = 0
        self.sockets: list[socket.socket] = []

    async def __call__(self, key: tuple[str, bool]) -> StemCell:
        self.made += 1
        pid = os.posix_spawn("/bin/sleep", ["sleep", "60"], {})
        ours, theirs = socket.socketpair()
        self.sockets.append(theirs)
        log_r, log_w = os.pipe()
        os.close(log_w)
        return StemCell(key, pid, os.pidfd_open(pid), ours, log_r, None)


async def test_a_taken_cell_is_replaced_once_cold_starts_are_quiet() -> None:
    spawn = _Spawner()
    quiet = Quiet(quiet_s=60, delay_s=60)  # only flush() lets it run here
    cells = StemCells(2, spawn, lambda _cgroup: None, quiet)
    taken: list[StemCell] = []

    def take() -> None:
        cell = cells.take(KEY)
        assert cell is not None
        taken.append(cell)

    try:
        cells.refill(KEY)
        await asyncio.wait_for(cells.filled(KEY), 10)
        assert spawn.made == 2

        take()
        await asyncio.sleep(0)  # a refill started now would have begun
        assert spawn.made == 2 and quiet.holding  # held back: one cell is left

        # filled() waits for the refill held back, not only for one under way.
        waiting = asyncio.ensure_future(cells.filled(KEY))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        quiet.flush()  # cold starts went quiet
        await asyncio.wait_for(waiting, 10)
        assert spawn.made == 3

        # The last cell taken: the next cold start would fork from the zygote, so
        # the pool is refilled at once (the quiet period never ends here).
        take()
        take()
        await asyncio.wait_for(cells.filled(KEY), 10)
        assert spawn.made == 5
        take()
        # The one cell left dies while idle: the pool is empty, so refilled at once.
        [last] = cells._cells[KEY]
        os.kill(last.pid, 9)
        await asyncio.wait_for(_until(lambda: len(cells._cells[KEY]) == 2), 10)
        assert spawn.made == 7 and quiet.holding  # not the refill held back
        take()
        take()  # empty: a refill starts at once, and close() cancels it
    finally:
        await cells.close()
        quiet.flush()  # a closed pool refills nothing
        for cell in taken:
            cell.discard()
        for sock in spawn.sockets:
            sock.close()
    assert spawn.made == 7
    await asyncio.wait_for(cells.filled(KEY), 1)  # after close: returns, not CancelledError


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.01)


async def test_a_cold_start_holds_background_work_until_it_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SandboxManager.start: the gate knows a cold start is under way, failed or not."""
    manager = SandboxManager(tmp_path / "work", isolation="process", stem_cells=0)
    seen: list[int] = []

    async def prepared() -> None:
        return None

    async def started(spec: object) -> None:
        seen.append(manager._quiet._starting)
        raise SandboxError("no room")

    monkeypatch.setattr(manager, "_prepare", prepared)
    monkeypatch.setattr(manager, "_start", started)
    with pytest.raises(SandboxError):
        await manager.start(cast(EnvironmentSpec, SimpleNamespace(snapstart=False)))
    assert seen == [1] and manager._quiet._starting == 0


async def test_cells_that_keep_dying_idle_stop_being_replaced() -> None:
    """A cell that cannot confine itself dies at once, every time: a few replacements,
    then none until a cold start takes from the pool (and forks directly, reporting)."""
    spawn = _Spawner()
    quiet = Quiet(quiet_s=60, delay_s=60)  # a refill held back never runs here
    cells = StemCells(2, spawn, lambda _cgroup: None, quiet)
    try:
        cells.refill(KEY)
        await asyncio.wait_for(cells.filled(KEY), 10)
        await _kill_idle(cells)  # two deaths: the pool left empty is refilled at once
        await asyncio.wait_for(cells.filled(KEY), 10)
        assert spawn.made == 4
        await _kill_idle(cells)  # four in a row: no more
        await asyncio.sleep(0.1)
        assert spawn.made == 4 and not cells._cells[KEY]
        assert cells.take(KEY) is None  # a cold start: the pool is refilled for it
        await asyncio.wait_for(cells.filled(KEY), 10)
        assert spawn.made == 6
    finally:
        await cells.close()
        for sock in spawn.sockets:
            sock.close()


async def _kill_idle(cells: StemCells) -> None:
    victims = list(cells._cells[KEY])
    for cell in victims:
        os.kill(cell.pid, 9)
    await asyncio.wait_for(_until(lambda: all(c not in cells._cells[KEY] for c in victims)), 10)
