"""Stem cells copy, while they idle, the zygote pages a cold start writes
(``nimbus.sandbox.hot_pages``): learned from the first cell a zygote's function ran in,
so that later cold starts take no copy-on-write fault for them."""

from __future__ import annotations

import ctypes
import errno
import json
import mmap
import os
import struct
import time
from pathlib import Path

import pytest

from nimbus.guest import jail, libc
from nimbus.sandbox import SandboxManager, hot_pages
from tests.sandbox.conftest import invocation, package, spec

PAGE = hot_pages.PAGE


def _pages(runs: list[hot_pages.Run]) -> set[int]:
    return {address + i * PAGE for address, count in runs for i in range(count)}


class Child:
    """A forked child of this process sharing ``region``; ``run(step)`` makes it run
    the next of its steps and waits for it."""

    def __init__(self, steps: list) -> None:
        self._go_r, self._go_w = os.pipe()
        self._done_r, self._done_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            try:
                os.close(self._go_w)
                os.close(self._done_r)
                for step in steps:
                    os.read(self._go_r, 1)
                    os.write(self._done_w, step() or b".")
                os.read(self._go_r, 1)  # until end(): its memory is read after its steps
            finally:
                os._exit(0)  # a failed step closes its end: run() sees b""
        os.close(self._go_r)
        os.close(self._done_w)

    def run(self) -> bytes:
        os.write(self._go_w, b"x")
        answer = os.read(self._done_r, 4096)
        if not answer:
            raise AssertionError("the child's step failed (its error is printed above)")
        return answer

    def end(self) -> None:
        os.close(self._go_w)
        os.waitpid(self.pid, 0)
        os.close(self._done_r)


def _region(pages: int) -> tuple[mmap.mmap, int]:
    region = mmap.mmap(-1, pages * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    for i in range(pages):
        region[i * PAGE] = 1  # present here before the fork: shared after it
    return region, ctypes.addressof(ctypes.c_char.from_buffer(region))


def _entries(pid: int | str, addresses: list[int]) -> list[int]:
    """The page-map entries of ``addresses`` in process ``pid`` ("self": this one)."""
    fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
    try:
        return [struct.unpack("<Q", os.pread(fd, 8, address // PAGE * 8))[0]
                for address in addresses]
    finally:
        os.close(fd)


def _own(entry: int) -> bool:
    """Present and mapped by this process alone: copied, or never shared."""
    return bool(entry >> 63 & 1 and entry >> 56 & 1)


def _frames_visible() -> bool:
    """Page frame numbers read as 0 without CAP_SYS_ADMIN; copies are told by them."""
    region, base = _region(1)
    (entry,) = _entries("self", [base])
    del base
    region.close()
    return bool(entry & ((1 << 55) - 1))


needs_frames = pytest.mark.skipif(not _frames_visible(),
                                  reason="page frame numbers need CAP_SYS_ADMIN")


@needs_frames
def test_what_a_forked_child_wrote_since_a_snapshot_and_nothing_else() -> None:
    region, base = _region(16)

    def write() -> None:
        region[3 * PAGE] = 2
        region[7 * PAGE + 100] = 2

    child = Child([lambda: None, write])
    try:
        child.run()  # idle, as a stem cell before its hand-over
        before = hot_pages.snapshot(child.pid, os.getpid())
        region[5 * PAGE] = 9  # the zygote (this process) copies a page away meanwhile
        child.run()
        written = _pages(hot_pages.written_since(child.pid, before))
        assert {base + 3 * PAGE, base + 7 * PAGE} <= written
        # Page 5 is the child's alone now, but it did not write it.
        assert not {base + i * PAGE for i in (0, 1, 2, 4, 5, 6, 8, 15)} & written
    finally:
        child.end()


@needs_frames
def test_one_cold_start_is_watched_at_a_time_and_only_a_current_one_teaches() -> None:
    import asyncio

    region, base = _region(4)
    now = [100.0]
    learned = hot_pages.HotPages(clock=lambda: now[0])

    def write() -> None:
        region[PAGE] = 2

    child = Child([lambda: None, write])

    async def scenario() -> None:
        me = os.getpid()
        first = await learned.before("python3.12", me, child.pid)
        assert first is not None
        # A burst: the next cold starts are not watched while the first may teach...
        assert await learned.before("python3.12", me, child.pid) is None
        now[0] += hot_pages.WATCH_S
        # ...unless it has not taught within WATCH_S (it failed, or never invoked).
        second = await learned.before("python3.12", me, child.pid)
        assert second is not None
        child.run()
        # An environment stopped meanwhile, or a zygote replaced, teaches nothing.
        await learned.learn("python3.12", me, child.pid, first, lambda: False)
        assert learned.of("python3.12", me) is None
        await learned.learn("python3.12", me, child.pid, first, lambda: True)
        assert base + PAGE in _pages(learned.of("python3.12", me) or [])
        assert learned.of("python3.12", me + 1) is None  # another zygote's layout
        now[0] += hot_pages.WATCH_S
        assert await learned.before("python3.12", me, child.pid) is None  # learned

    try:
        child.run()
        asyncio.run(scenario())
    finally:
        child.end()


def test_prefault_copies_the_pages_it_is_given_and_skips_what_is_not_mapped() -> None:
    region, base = _region(8)

    def prefault() -> bytes:
        before = [_own(e) for e in _entries("self", [base + i * PAGE for i in range(8)])]
        # Page 1 of the address space is never mapped: skipped, the rest still done.
        jail.prefault([[PAGE, 1], [base + 2 * PAGE, 2], [base + 6 * PAGE, 1]])
        after = [_own(e) for e in _entries("self", [base + i * PAGE for i in range(8)])]
        return json.dumps([before, after, region[2 * PAGE], region[6 * PAGE]]).encode()

    child = Child([prefault])
    try:
        before, after, *contents = json.loads(child.run())
        assert before == [False] * 8  # shared with this process
        assert after == [False, False, True, True, False, False, True, False]
        assert contents == [1, 1]  # copied, not changed
    finally:
        child.end()


def _populate_write_works() -> bool:
    own = bytearray(2 * PAGE)
    address = (ctypes.addressof(ctypes.c_char.from_buffer(own)) // PAGE + 1) * PAGE
    return libc.populate_write(address, PAGE) != errno.EINVAL


@pytest.mark.sandbox
@pytest.mark.skipif(not _populate_write_works(), reason="MADV_POPULATE_WRITE needs Linux 5.14+")
def test_cells_made_after_the_first_cold_start_hold_its_pages_already(tmp_path: Path) -> None:
    import asyncio

    code = package(tmp_path, {"app.py": "def handler(event, context):\n    return 1\n"})
    fn = spec(code)

    def coverage(pid: int, learned: set[int]) -> float:
        """The share of ``learned`` that ``pid`` holds as its own (copied) pages."""
        return sum(map(_own, _entries(pid, sorted(learned)))) / len(learned)

    async def scenario() -> None:
        manager = SandboxManager(tmp_path / "work")
        try:
            await (await manager.start(fn)).stop()  # the pool learns what is in demand
            await manager.refilled(fn)
            before = {c.pid for cells in manager._cells._cells.values() for c in cells}
            env = await manager.start(fn)
            assert env.origin == "stem cell"
            assert (await env.invoke(invocation())).function_error is None
            await env.stop()  # at once, as a benchmark's cold start does: learned already
            zygote = manager._zygotes["python3.12"].pid
            runs = manager._hot_pages.of("python3.12", zygote)
            assert runs is not None
            learned = _pages(runs)
            assert 30 < len(learned) <= hot_pages.MAX_PAGES
            await manager.refilled(fn)
            cells = {c.pid for cells in manager._cells._cells.values() for c in cells}
            made_after = cells - before
            assert made_after
            # The control: a cell made before holds what its warm-up wrote, which a cold
            # start's learned pages are not.
            for pid in cells & before:
                assert coverage(pid, learned) < 0.5
            for pid in made_after:
                # At idle priority after its warm-up; nothing announces it.
                deadline = time.monotonic() + 20
                while coverage(pid, learned) < 0.99 and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                assert coverage(pid, learned) >= 0.99
            env = await manager.start(fn)  # and a cold start from such a cell works
            assert (await env.invoke(invocation())).payload == b"1"
            await env.stop()
        finally:
            await manager.close()

    asyncio.run(scenario())
