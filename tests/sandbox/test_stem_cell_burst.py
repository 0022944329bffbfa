"""A burst of cold starts grows the stem-cell pool of its (runtime, network) pair to what
the burst took (up to ``stem_cells_burst``), so the next burst finds cells instead of
queueing on the zygote; the pool shrinks back once bursts stop."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from nimbus.sandbox import SandboxManager
from nimbus.sandbox.quiet import Quiet
from nimbus.sandbox.stemcells import BURST_WINDOW_S, StemCell, StemCells
from tests.sandbox.conftest import invocation, package, spec
from tests.sandbox.test_quiet import KEY, _Spawner


def _burst(cells: StemCells, k: int) -> list[StemCell | None]:
    return [cells.take(KEY) for _ in range(k)]


async def _close(cells: StemCells, taken: list[StemCell], spawn: _Spawner) -> None:
    """The pool, the cells the test took from it, and the fake cells' socket ends."""
    await cells.close()
    for cell in taken:
        cell.discard()
    for sock in spawn.sockets:
        sock.close()


async def test_a_burst_grows_the_pool_to_what_it_took_and_it_shrinks_back(
        now: list[float]) -> None:
    spawn = _Spawner()
    cells = StemCells(2, spawn, lambda _cgroup: None, None, burst=5, shrink_after_s=300)
    taken: list[StemCell] = []
    try:
        cells.refill(KEY)
        await asyncio.wait_for(cells.filled(KEY), 10)
        # Two cold starts a second apart are no burst: the pool stays at 2.
        taken += [c for c in _burst(cells, 1) if c]
        now[0] += BURST_WINDOW_S + 0.01
        taken += [c for c in _burst(cells, 1) if c]
        await asyncio.wait_for(cells.filled(KEY), 10)
        assert cells.target(KEY) == 2 and len(cells._cells[KEY]) == 2

        # Four at once: two cells, two would fork from the zygote; the pool grows to 4.
        now[0] += BURST_WINDOW_S + 0.01
        got = _burst(cells, 4)
        taken += [c for c in got if c]
        assert sum(c is None for c in got) == 2
        await asyncio.wait_for(cells.filled(KEY), 10)
        assert cells.target(KEY) == 4 and len(cells._cells[KEY]) == 4

        # Seven at once: the pool grows to burst (5), no further.
        now[0] += BURST_WINDOW_S + 0.01
        got = _burst(cells, 7)
        taken += [c for c in got if c]
        assert sum(c is not None for c in got) == 4  # the burst before was ready for
        await asyncio.wait_for(cells.filled(KEY), 10)
        assert cells.target(KEY) == 5 and len(cells._cells[KEY]) == 5

        # No burst for shrink_after_s: back to 2 idle cells, the surplus stopped.
        surplus = list(cells._cells[KEY])[2:]
        now[0] += 299.9
        for _ in range(3):  # the loop's clock is the test's: turns, not sleeps
            await asyncio.sleep(0)
        assert len(cells._cells[KEY]) == 5  # not yet
        now[0] += 0.11
        for _ in range(3):
            await asyncio.sleep(0)
        assert cells.target(KEY) == 2 and len(cells._cells[KEY]) == 2
        for cell in surplus:  # killed and reaped
            with pytest.raises(ChildProcessError):
                os.waitpid(cell.pid, 0)
    finally:
        await _close(cells, taken, spawn)


async def test_what_a_burst_grew_the_pool_by_waits_for_cold_starts_to_be_quiet(
        now: list[float]) -> None:
    spawn = _Spawner()
    quiet = Quiet(quiet_s=60, delay_s=60)  # only flush() lets held-back work run here
    cells = StemCells(2, spawn, lambda _cgroup: None, quiet, burst=5)
    taken: list[StemCell] = []
    try:
        cells.refill(KEY)
        await asyncio.wait_for(cells.filled(KEY), 10)
        quiet.begin()  # cold starts under way
        taken += [c for c in _burst(cells, 4) if c]
        # Emptied: refilled at once, to the pool's own size; the growth waits.
        for _ in range(200):
            if len(cells._cells[KEY]) == 2 and quiet.holding:
                break
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert len(cells._cells[KEY]) == 2 and quiet.holding and cells.target(KEY) == 4
        waiting = asyncio.ensure_future(cells.filled(KEY))
        quiet.end()
        quiet.flush()  # quiet now: the rest of the growth is made
        await asyncio.wait_for(waiting, 10)
        assert len(cells._cells[KEY]) == 4
    finally:
        await _close(cells, taken, spawn)


async def test_no_growth_with_stem_cells_off_or_no_burst_setting() -> None:
    assert StemCells(0, _Spawner(), lambda _cgroup: None, burst=8).burst == 0
    assert StemCells(2, _Spawner(), lambda _cgroup: None).burst == 2  # None: size
    assert StemCells(3, _Spawner(), lambda _cgroup: None, burst=1).burst == 3


@pytest.mark.sandbox
def test_after_a_burst_the_next_burst_is_served_by_stem_cells(tmp_path: Path) -> None:
    code = package(tmp_path, {"app.py": "def handler(event, context):\n    return 1\n"})
    fn = spec(code)

    async def cold(manager: SandboxManager) -> str:
        env = await manager.start(fn)
        try:
            assert (await env.invoke(invocation())).payload == b"1"
            return env.origin
        finally:
            await env.stop()

    async def scenario() -> list[list[str]]:
        manager = SandboxManager(tmp_path / "work", stem_cells=1, stem_cells_burst=3)
        try:
            await cold(manager)  # the pool learns what is in demand
            bursts = []
            for _ in range(2):
                await manager.refilled(fn)
                bursts.append(sorted(await asyncio.gather(*(cold(manager) for _ in range(3)))))
            return bursts
        finally:
            await manager.close()

    first, second = asyncio.run(scenario())
    assert first == ["stem cell", "zygote", "zygote"]  # one cell; two forked on demand
    assert second == ["stem cell"] * 3  # the pool grew to the burst
