"""Stem cells: environments forked and half-confined ahead of time.

A cold start from the zygote pays for the fork (page tables of a 20+ MB interpreter)
and for joining the cgroup (cgroup v1 migration takes a global lock that sometimes
waits for an RCU grace period: tens of milliseconds at p99). A stem cell has done both
already: it is a child of the zygote in its own namespaces, in its own cgroup, with
its /proc mounted and the sandbox's base as its root (``pivot_root``, which walks every
task on the host: 0.1 ms with no environment held, 1.5 ms with 1,000, 4 ms with 2,000),
blocked on its control socket. Specialising it for a function is only attaching the
function's mounts, which the server makes and hands over as descriptors
(``nimbus.sandbox.function_mounts``), dropping privileges and importing the handler
(as in OpenWhisk's stem cells and Fission's pools; see DESIGN.md).

Cells are kept per (runtime, network) pair, for the pairs that have been asked for,
and refilled in the background after each use: once cold starts are quiet
(``nimbus.sandbox.quiet``) while the pool still holds a cell, at once when it is empty.
A pool holds ``size`` cells; after a burst (more cold starts of a pair within
``BURST_WINDOW_S`` than that) it holds as many as the burst took, up to ``burst``, so the
next burst finds cells instead of queueing on the zygote (a fork from the zygote is
~3x a cell's cold start, and the zygote forks one at a time), and shrinks back to
``size`` once ``shrink_after_s`` pass without such a burst.
Making a cell is idle-priority work in the zygote and the cell, but not in the server,
whose event loop the cold start that took the cell and its first invocation share.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nimbus.sandbox.cgroups import Cgroup
from nimbus.sandbox.quiet import Quiet

log = logging.getLogger(__name__)

Key = tuple[str, bool]  # (runtime, network)


@dataclass
class StemCell:
    """An idle, pre-forked environment process and what the server holds of it."""

    key: Key
    pid: int
    pidfd: int
    ctl: socket.socket
    log_fd: int
    cgroup: Cgroup | None
    net_rules: frozenset = frozenset()  # what its network namespace allows (sandbox/netns.py)
    zygote_pid: int = 0  # whose memory it shares (sandbox/hot_pages.py)

    def discard(self) -> None:
        """Kill and reap (blocking only for an instant: the process is ours)."""
        with contextlib.suppress(ProcessLookupError, OSError):
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        self.close_fds()

    def close_fds(self) -> None:
        self.ctl.close()
        for fd in (self.log_fd, self.pidfd):
            with contextlib.suppress(OSError):
                os.close(fd)


Spawner = Callable[[Key], Awaitable[StemCell]]
MAX_IDLE_DEATHS = 3  # replaced when they die idle; more in a row wait for a take()
BURST_WINDOW_S = 1.0  # cold starts of a pair this close together are one burst
SHRINK_S = 300.0  # a grown pool shrinks back after this long without a burst


class StemCells:
    """Pools of stem cells, one per (runtime, network) in demand."""

    def __init__(self, size: int, spawn: Spawner,
                 release_cgroup: Callable[[Cgroup | None], None],
                 quiet: Quiet | None = None, *, burst: int | None = None,
                 shrink_after_s: float = SHRINK_S) -> None:
        self.size = size
        # No growth with stem cells off (size 0: every cold start forks, as asked).
        self.burst = max(size, burst if burst is not None else size) if size > 0 else 0
        self._shrink_after_s = shrink_after_s
        self._target: dict[Key, int] = {}  # a grown pool's size, by key
        self._takes: dict[Key, deque[float]] = {}  # the last BURST_WINDOW_S's cold starts
        self._shrinking: dict[Key, asyncio.TimerHandle] = {}
        self._spawn = spawn
        self._release_cgroup = release_cgroup
        self._quiet = quiet  # None: refill at once
        self._cells: dict[Key, deque[StemCell]] = {}
        self._filling: dict[Key, asyncio.Task[None]] = {}
        self._wanted: set[Key] = set()  # refills waiting for quiet cold starts
        # Cells that died idle since one was last taken, by key: a cell that cannot
        # confine itself dies each time, so its replacements stop after a few (the next
        # cold start forks directly and reports why).
        self._deaths: dict[Key, int] = {}
        self._closed = False

    def target(self, key: Key) -> int:
        """How many idle cells ``key``'s pool is filled to now."""
        return self._target.get(key, self.size)

    def take(self, key: Key) -> StemCell | None:
        """A live cell for ``key``, or None; asks for a refill either way."""
        self._count(key)
        cells = self._cells.setdefault(key, deque())
        cell = cells.popleft() if cells else None
        if cell is not None:
            asyncio.get_running_loop().remove_reader(cell.pidfd)
            self._deaths.pop(key, None)
        self._want(key, cells)
        return cell

    def _count(self, key: Key) -> None:
        """Note a cold start of ``key``; a burst bigger than the pool grows it."""
        if self.burst <= self.size or self._closed:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        takes = self._takes.setdefault(key, deque())
        takes.append(now)
        while takes[0] < now - BURST_WINDOW_S:
            takes.popleft()
        if len(takes) <= self.size:
            return
        self._target[key] = max(self.target(key), min(len(takes), self.burst))
        handle = self._shrinking.pop(key, None)
        if handle is not None:
            handle.cancel()
        self._shrinking[key] = loop.call_later(self._shrink_after_s, self._shrink_later, key)

    def _shrink_later(self, key: Key) -> None:
        self._shrinking.pop(key, None)
        if self._quiet is None:
            self._shrink(key)
        else:  # stopping cells waits for cold starts to be quiet, as making them does
            self._quiet.defer(functools.partial(self._shrink, key))

    def _shrink(self, key: Key) -> None:
        """No burst for a while: back to ``size`` cells, the surplus idle ones stopped."""
        if key in self._shrinking or self._closed:  # a burst came meanwhile, or closed
            return
        self._target.pop(key, None)
        self._takes.pop(key, None)
        cells = self._cells.get(key)
        loop = asyncio.get_running_loop()
        while cells and len(cells) > self.size:
            cell = cells.pop()
            loop.remove_reader(cell.pidfd)
            cell.discard()
            self._release_cgroup(cell.cgroup)

    def _want(self, key: Key, cells: deque[StemCell]) -> None:
        """A refill of ``key``: once cold starts are quiet, or now if its pool is empty
        (the next cold start would fork from the zygote)."""
        if cells and self._quiet is not None:
            self._wanted.add(key)
            self._quiet.defer(self._refill_wanted)
        else:
            self.refill(key)

    def refill(self, key: Key) -> None:
        """Start filling ``key``'s pool now (unless it is being filled)."""
        if self.size <= 0 or self._closed:
            return
        self._wanted.discard(key)
        task = self._filling.get(key)
        if task is None or task.done():
            self._filling[key] = asyncio.ensure_future(self._fill(key))

    def _refill_wanted(self) -> None:
        wanted, self._wanted = self._wanted, set()
        for key in wanted:
            self.refill(key)

    async def filled(self, key: Key) -> None:
        """Wait for ``key``'s refill, held back or under way (in parts: see ``_fill``),
        to end."""
        while not self._closed:
            if key in self._wanted and self._quiet is not None:
                await self._quiet.ran()
            task = self._filling.get(key)
            if task is not None and not task.done():  # done: ended, or cancelled
                await asyncio.shield(task)
            elif key not in self._wanted:
                return

    async def _fill(self, key: Key) -> None:
        cells = self._cells.setdefault(key, deque())
        failures = 0
        while len(cells) < self.target(key) and not self._closed:
            try:
                cell = await self._spawn(key)
            except Exception as exc:
                failures += 1
                log.warning("cannot make a stem cell for %s: %s", key, exc)
                if failures >= 3:
                    return
                continue
            if self._closed or len(cells) >= self.target(key):  # closed, or shrunk meanwhile
                cell.discard()
                self._release_cgroup(cell.cgroup)
                return
            cells.append(cell)
            asyncio.get_running_loop().add_reader(cell.pidfd, self._died, cell)
            if (self.size <= len(cells) < self.target(key) and self._quiet is not None
                    and self._quiet.busy):
                # What a burst grew the pool by waits for cold starts to be quiet: making
                # cells takes the zygote, which a cold start without a cell needs now.
                self._want(key, cells)
                return

    def _died(self, cell: StemCell) -> None:
        # An idle cell should never exit; if it did (killed from outside, or it could
        # not confine itself), drop it: the next cold start forks directly and reports.
        log.warning("a stem cell for %s exited while idle", cell.key)
        asyncio.get_running_loop().remove_reader(cell.pidfd)
        cells = self._cells.get(cell.key)
        if cells is not None and cell in cells:
            cells.remove(cell)
            deaths = self._deaths[cell.key] = self._deaths.get(cell.key, 0) + 1
            if deaths <= MAX_IDLE_DEATHS:
                self._want(cell.key, cells)
        cell.discard()
        self._release_cgroup(cell.cgroup)

    async def close(self) -> None:
        self._closed = True
        for handle in self._shrinking.values():
            handle.cancel()
        self._shrinking.clear()
        for task in self._filling.values():
            task.cancel()
        await asyncio.gather(*self._filling.values(), return_exceptions=True)
        loop = asyncio.get_running_loop()
        for cells in self._cells.values():
            while cells:
                cell = cells.popleft()
                loop.remove_reader(cell.pidfd)
                cell.discard()
                self._release_cgroup(cell.cgroup)
