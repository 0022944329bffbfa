"""The supply of disk-backed ``/tmp`` file systems for one sandbox manager's cold starts.

A cold start takes a ready disk of its EphemeralStorage size from the pool
(``nimbus.sandbox.tmpdisk``), or makes one on the spot when none is ready (a burst, or a
size not asked for before: ~2.5 ms). Refilling the pools and unmounting the disks of
ended environments is the helper process's work (``nimbus.sandbox.disk_helper``), at low
priority, or the server's threads' where the helper is gone. That work waits for cold
starts to be quiet (``nimbus.sandbox.quiet``): its mounts and loop devices take kernel
locks and CPU that a cold start and its first invocation want (done at once, it made
paced cold starts ~25% slower).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from nimbus.sandbox.disk_helper import DiskHelper
from nimbus.sandbox.errors import IsolationUnavailable, SandboxError
from nimbus.sandbox.quiet import Quiet
from nimbus.sandbox.tmpdisk import TmpDisk, TmpDisks

log = logging.getLogger(__name__)

DEFAULT_TMP_MB = 512  # Lambda's default EphemeralStorage: its disks are made at start


class TmpSupply:
    """Ready disks per size for cold starts, and the unmounting of used ones."""

    def __init__(self, directory: Path,
                 background: Callable[[Coroutine[Any, Any, Any]], None],
                 quiet: Quiet) -> None:
        self.disks = TmpDisks(directory)
        self._background = background
        self._quiet = quiet
        self._helper: DiskHelper | None = None
        self._refills: set[int] = set()  # sizes being refilled in the server's threads
        self._asked: dict[int, int] = {}  # size -> disks asked of the helper, not come
        self._sizes_wanted: set[int] = set()  # refills held back (self._quiet)
        self._returned: list[TmpDisk] = []  # disks to unmount, likewise
        self._closed = False

    def open(self) -> None:
        """Prove this host can make disks (a template and a first disk of the default
        size), and start the helper (blocking). Raises IsolationUnavailable."""
        try:
            self.disks.check()
            self.disks.put(self.disks.make(DEFAULT_TMP_MB))
        except OSError as exc:
            self.disks.drain()
            raise IsolationUnavailable(
                f"cannot give functions a disk-backed /tmp: {exc}. Set tmp_storage = "
                "\"memory\" (NIMBUS_TMP_STORAGE=memory) to keep /tmp in memory, counted "
                "against each function's MemorySize"
            ) from exc
        helper = DiskHelper(self.disks.directory, self._made, self._failed)
        try:
            helper.start()
            self._helper = helper
        except OSError as exc:
            log.warning("cannot start the /tmp disk helper (disks are made in the "
                        "server): %s", exc)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start serving on ``loop``: the helper's answers, the default size's pool."""
        if self._helper is not None:
            self._helper.attach(loop)
        self._refill(DEFAULT_TMP_MB)

    async def take(self, size_mb: int) -> TmpDisk:
        """A fresh, empty file system of ``size_mb`` MB for a cold start."""
        disk = self.disks.take(size_mb)
        helper = self._helper
        if (helper is not None and helper.alive) or self.disks.low(size_mb):
            # Asking the helper is one small message: keep its pipeline full.
            self._refill(size_mb)
        if disk is not None:
            return disk
        made = asyncio.ensure_future(asyncio.to_thread(self.disks.make, size_mb))
        try:
            return await asyncio.shield(made)
        except asyncio.CancelledError:
            made.add_done_callback(self._drop_made)
            raise
        except OSError as exc:
            raise SandboxError(f"cannot make a {size_mb} MB /tmp: {exc}") from exc

    def release(self, disk: TmpDisk) -> None:
        """An environment is done with ``disk`` (or never got it): unmount it, once cold
        starts are quiet. Never reused (see ``nimbus.sandbox.tmpdisk``)."""
        if self._closed or self._helper is None:
            self._unmount(disk)
        else:
            self._returned.append(disk)
            self._quiet.defer(self.run_held)

    def run_held(self) -> None:
        """Do the work held back now."""
        returned, self._returned = self._returned, []
        for disk in returned:
            self._unmount(disk)
        wanted, self._sizes_wanted = self._sizes_wanted, set()
        for size_mb in wanted:
            self._refill(size_mb, now=True)

    async def close(self) -> None:
        """Unmount everything: what waits, what the helper holds, the pools."""
        self.run_held()
        self._closed = True
        if self._helper is not None:
            self._helper.close()
            await asyncio.to_thread(self._helper.wait)
        await asyncio.to_thread(self.disks.drain)

    def _made(self, disk: TmpDisk) -> None:
        """A disk from the helper."""
        self._asked[disk.size_mb] = max(0, self._asked.get(disk.size_mb, 1) - 1)
        if self._closed:
            self._unmount(disk)
        else:
            self.disks.put(disk)

    def _failed(self, size_mb: int, error: str) -> None:
        self._asked[size_mb] = max(0, self._asked.get(size_mb, 1) - 1)
        log.warning("cannot make a /tmp disk of %d MB ahead: %s", size_mb, error)

    def _drop_made(self, made: asyncio.Future[TmpDisk]) -> None:
        if not made.cancelled() and made.exception() is None:
            self.release(made.result())

    def _refill(self, size_mb: int, now: bool = False) -> None:
        if self._closed:
            return
        disks, helper = self.disks, self._helper
        if helper is not None and helper.alive:
            if not now and not disks.low(size_mb):  # else: wanted now, not held back
                self._sizes_wanted.add(size_mb)
                self._quiet.defer(self.run_held)
                return
            asked = self._asked.get(size_mb, 0)
            for _ in range(disks.pool_size - disks.count(size_mb) - asked):
                if not helper.make(size_mb):
                    break
                asked += 1
            self._asked[size_mb] = asked
            if helper.alive:
                return
        if size_mb in self._refills:
            return

        async def refill() -> None:
            try:
                await asyncio.to_thread(disks.refill, size_mb)
            except OSError as exc:
                log.warning("cannot make /tmp disks of %d MB ahead: %s", size_mb, exc)
            finally:
                self._refills.discard(size_mb)

        self._refills.add(size_mb)
        self._background(refill())

    def _unmount(self, disk: TmpDisk) -> None:
        """Drop the server's reference to a disk: the last one once its environment is
        gone, so the kernel unmounts it (and the loop device and the image go), a few
        ms spent by the helper at low priority, or else in a thread."""
        helper = self._helper
        if helper is None or not helper.discard(disk):
            self._background(asyncio.to_thread(disk.close))
