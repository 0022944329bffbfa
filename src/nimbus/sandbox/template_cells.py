"""A SnapStart template's cells: environments forked from it ahead of time.

Forking a template costs a copy of its page tables (~7 ms for a 200 MB one here), and
moving the child into a cgroup of its own costs a cgroup migration (milliseconds on
cgroup v1, sometimes tens). A cell has paid both: it was forked from the template at
idle priority, moved at once into the environment cgroup it will keep (memory =
MemorySize), has its own mount namespace, and waits on its control socket, running
nothing of the function, until a cold start claims it (``nimbus.guest.template``).
What it touched between the fork and the move (a few pages) and its page tables are
charged to the template's cgroup; everything after, to its own.

A template keeps ``size`` cells (2 by default), refilled in the background after each
claim, as stem cells are (``nimbus.sandbox.stemcells``, whose pool this reuses); a
claim with no cell ready forks one on the spot. Cells die with their template: it
discards them when it closes, and they live in the PID namespace its keeper holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
from typing import TYPE_CHECKING

from nimbus.sandbox.cgroups import Cgroup
from nimbus.sandbox.errors import SandboxError
from nimbus.sandbox.stemcells import StemCell, StemCells

if TYPE_CHECKING:
    from nimbus.sandbox.manager import SandboxManager
    from nimbus.sandbox.templates import Template

CELLS = 2  # cells kept per template
_KEY = ("template", False)  # a template has one kind of cell: the pool's only key


def move_into(pid: int, cgroup: Cgroup) -> None:
    """Move ``pid`` into ``cgroup`` from outside (the server is root on the host)."""
    for procs in cgroup.procs_files:
        fd = os.open(procs, os.O_WRONLY)
        try:
            os.write(fd, str(pid).encode())
        finally:
            os.close(fd)


def move_idle(pid: int, cgroup: Cgroup) -> None:
    """``move_into`` from a thread of the server at idle priority for the time of it (as
    a stem cell joins its cgroup at idle priority): a cgroup v1 migration waits for RCU
    and takes global locks, and at normal priority it slows down a cold start under way
    (its first invoke ~6-14 ms instead of ~1 ms here)."""
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # this thread only
    try:
        move_into(pid, cgroup)
    finally:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def _set_priority(pid: int, policy: int) -> None:
    # Best effort: a template or cell that just died answers ESRCH, and that is seen
    # where it matters (its fork reply, its claim).
    with contextlib.suppress(OSError):
        if os.sched_getscheduler(pid) != policy:
            os.sched_setscheduler(pid, policy, os.sched_param(0))


class TemplateCells:
    """The cells of one template, and forking one now when none is ready."""

    def __init__(self, template: Template, manager: SandboxManager, size: int = CELLS) -> None:
        self._template = template
        self._manager = manager
        # Refilled once cold starts are quiet, as the manager's stem cells are.
        self._pool = StemCells(size, lambda _key: self.make(background=True),
                               manager._release_cgroup, manager._quiet)
        self._urgent = 0  # cold starts waiting for a fork: no idle priority meanwhile

    @property
    def pids(self) -> list[int]:
        """The cells forked and waiting now."""
        return [cell.pid for cell in self._pool._cells.get(_KEY, ())]

    @property
    def ready(self) -> int:
        return len(self._pool._cells.get(_KEY, ()))

    def refill(self) -> None:
        self._pool.refill(_KEY)

    async def filled(self) -> None:
        """Wait for the refill under way (if any) to end."""
        await self._pool.filled(_KEY)

    def take(self) -> StemCell | None:
        """A ready cell, or None; refills either way."""
        return self._pool.take(_KEY)

    async def make(self, background: bool) -> StemCell:
        """Fork a cell and move it into a cgroup of its own. ``background``: at idle
        priority (a refill), else now (a cold start with no cell ready)."""
        m = self._manager
        memory_mb = self._template.spec.memory_mb
        cgroup: Cgroup | None = None
        if background and m._pool is not None:
            cgroup = await asyncio.to_thread(self._idle_cgroup, memory_mb)
        else:
            cgroup = m._take_cgroup(memory_mb)
        try:
            pid, ctl, log_r = await self._fork(background)
        except BaseException:
            m._release(None, cgroup)
            raise
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            pidfd = -1
        cell = StemCell(_KEY, pid, pidfd, ctl, log_r, cgroup)
        try:
            if pidfd < 0:
                raise SandboxError("a cell forked from the SnapStart template is gone")
            if cgroup is not None:
                if background:
                    await asyncio.to_thread(move_idle, pid, cgroup)
                else:
                    move_into(pid, cgroup)
        except BaseException:
            cell.discard()
            m._release(None, cgroup)
            raise
        return cell

    def _idle_cgroup(self, memory_mb: int) -> Cgroup:
        pool = self._manager._pool
        assert pool is not None
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # this thread only
        try:
            cgroup = pool.take()
            cgroup.configure(memory_mb, self._manager.pids_max)
        finally:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        return cgroup

    async def _fork(self, background: bool) -> tuple[int, socket.socket, int]:
        """One fork from the template: (pid, control socket, log pipe's read end)."""
        template = self._template
        ctl_ours, ctl_theirs = socket.socketpair()
        log_r, log_w = os.pipe2(os.O_CLOEXEC)
        loop = asyncio.get_running_loop()
        if not background:
            self._urgent += 1
            _set_priority(template.process.pid, os.SCHED_OTHER)  # speeds up a refill too
        try:
            async with template.lock:
                idle = background and not self._urgent
                _set_priority(template.process.pid, os.SCHED_IDLE if idle else os.SCHED_OTHER)
                await template.resume()  # stopped and frozen between forks
                try:
                    socket.send_fds(template.fork_sock, [b"{}"], [ctl_theirs.fileno(), log_w])
                    raw = await loop.sock_recv(template.fork_sock, 65536)
                except OSError as exc:
                    raise SandboxError(f"the SnapStart template died: {exc}") from exc
                finally:
                    template.pause()
            if not raw:
                raise SandboxError("the SnapStart template died")
            reply = json.loads(raw)
            if "error" in reply:
                raise SandboxError(f"cannot fork from the SnapStart template: {reply['error']}")
        except BaseException:
            ctl_ours.close()
            os.close(log_r)
            raise
        finally:
            if not background:
                self._urgent -= 1
            ctl_theirs.close()
            os.close(log_w)
        return int(reply["pid"]), ctl_ours, log_r

    async def close(self) -> None:
        """Kill and reap the waiting cells, and stop making more."""
        await self._pool.close()
