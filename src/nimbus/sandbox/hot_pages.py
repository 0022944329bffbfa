"""The zygote's pages a cold start writes, learned once, so stem cells copy them early.

A stem cell is forked from its runtime's zygote and shares its memory copy-on-write:
the first write to each shared page after the fork is a page fault that copies 4 KiB.
The runtime's init and first invocation write ~130 such pages (reference counts,
dicts, the allocator's pools), ~3 us each on a virtual machine, *after* the
cell has been handed its function: on the cold path. Which pages those are depends on
the zygote's layout, which every cell of the zygote shares, and little on the function.

So the first cold start from a stem cell of a zygote is watched: its page map
(``/proc/<pid>/pagemap``, in the zygote's private writable mappings) is read just before
the hand-over and again after the first invocation, and the pages present both times
whose frame changed in between (copied) are what a cold start writes. The cells the
zygote forks from then on fault exactly those in while they idle
(``madvise(MADV_POPULATE_WRITE)``, ``nimbus.guest.jail.prefault``). An environment then
holds the pages it would have copied anyway, and its cold start skips those faults.
Pages a cell writes while it warms up are its own already and not learned; pages the
zygote copies away meanwhile (it keeps forking) keep their frame in the cell and are
not counted either.

Frame numbers need CAP_SYS_ADMIN; without them a page counts when it became mapped by
the cell alone (which also counts pages the zygote copied away meanwhile). Reading
another process's page map needs root or the same user.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

PAGE = os.sysconf("SC_PAGE_SIZE")
_PRESENT = 1 << 63
_EXCLUSIVE = 1 << 56  # "page exclusively mapped" (Linux 4.2+)
_FILE = 1 << 61  # a page of a file (or shared): mapped, not copied
_FRAME = (1 << 55) - 1
# A bound on what one learned cold start can make every later cell copy: the runtime's
# own writes are ~130 pages; a function that wrote much of its zygote's image in its
# first invocation would otherwise make each idle cell (and each environment) bigger.
MAX_PAGES = 512
WATCH_S = 2.0  # how long a watched cold start has to teach before another is watched
_SKIP = ("[stack]", "[vvar]", "[vdso]", "[vsyscall]", "[vvar_vclock]")

Run = tuple[int, int]  # (first address, pages)
Span = tuple[int, int]  # (start, end) addresses


def private_writable(pid: int) -> list[Span]:
    """``pid``'s private writable mappings, as (start, end) addresses."""
    ranges = []
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            fields = line.split()
            perms = fields[1]
            if perms[0:2] != "rw" or perms[3] != "p":
                continue
            if len(fields) > 5 and fields[5] in _SKIP:
                continue
            start, _, end = fields[0].partition("-")
            ranges.append((int(start, 16), int(end, 16)))
    return ranges


def _overlap(ours: list[Span], theirs: list[Span]) -> Iterable[Span]:
    """The address ranges in both (each sorted and disjoint, as /proc/<pid>/maps is)."""
    i = j = 0
    while i < len(ours) and j < len(theirs):
        start = max(ours[i][0], theirs[j][0])
        end = min(ours[i][1], theirs[j][1])
        if start < end:
            yield start, end
        if ours[i][1] < theirs[j][1]:
            i += 1
        else:
            j += 1


@dataclass
class Snapshot:
    """A cell's page-map entries over the zygote's private writable mappings."""

    spans: list[Span]
    entries: list[bytes] = field(repr=False)


def snapshot(pid: int, zygote_pid: int) -> Snapshot:
    """Read the page map of ``pid`` (a cell of the zygote ``zygote_pid``); OSError when
    either process is gone or unreadable."""
    spans = list(_overlap(private_writable(pid), private_writable(zygote_pid)))
    return Snapshot(spans, _read(pid, spans))


def _read(pid: int, spans: list[Span]) -> list[bytes]:
    fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    try:
        return [os.pread(fd, (end - start) // PAGE * 8, start // PAGE * 8)
                for start, end in spans]
    finally:
        os.close(fd)


def _written(old: int, new: int) -> bool:
    """A page shared with the zygote then, copied since: what a fault cost. Pages not
    there before (fresh allocations, a huge page's 512) are not learned: a cell would
    hold them for nothing if the next function does not allocate the same."""
    if not old & _PRESENT or not new & _PRESENT or new & _FILE:
        return False
    if old & _FRAME or new & _FRAME:  # frame numbers visible: a copy has a new one
        return old & _FRAME != new & _FRAME
    return bool(new & _EXCLUSIVE and not old & _EXCLUSIVE)


def written_since(pid: int, before: Snapshot) -> list[Run]:
    """The pages ``pid`` wrote since ``before`` was taken, as runs of consecutive pages,
    at most ``MAX_PAGES`` in all (OSError: gone or unreadable)."""
    runs: list[Run] = []
    total = 0
    after = _read(pid, before.spans)
    for (start, _end), old_raw, new_raw in zip(before.spans, before.entries, after, strict=True):
        if old_raw == new_raw:
            continue
        old, new = memoryview(old_raw).cast("Q"), memoryview(new_raw).cast("Q")
        first = start // PAGE
        for i in range(min(len(old), len(new))):
            if old[i] == new[i] or not _written(old[i], new[i]):
                continue
            page = first + i
            if runs and runs[-1][0] // PAGE + runs[-1][1] == page:
                runs[-1] = (runs[-1][0], runs[-1][1] + 1)
            else:
                runs.append((page * PAGE, 1))
            total += 1
            if total >= MAX_PAGES:
                return runs
    return runs


class HotPages:
    """What has been learned, per runtime, of the zygote it was learned in."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._runs: dict[str, tuple[int, list[Run]]] = {}  # runtime -> (zygote pid, runs)
        # runtime -> when a cold start was last watched: one at a time (a snapshot is
        # ~2 ms of the cold start it precedes), another if it has not taught anything
        # within WATCH_S (it failed, or its environment never ran an invocation).
        self._watched: dict[str, float] = {}
        self._clock = clock

    def of(self, runtime: str, zygote_pid: int) -> list[Run] | None:
        """The runs a new cell of this zygote should fault in (None: not known)."""
        learned = self._runs.get(runtime)
        return learned[1] if learned is not None and learned[0] == zygote_pid else None

    async def before(self, runtime: str, zygote_pid: int, pid: int) -> Snapshot | None:
        """Just before cell ``pid`` is handed its function: its page map, if this
        zygote's cold starts are still to be learned (None: known, or unreadable)."""
        now = self._clock()
        if (self.of(runtime, zygote_pid) is not None
                or now - self._watched.get(runtime, -WATCH_S) < WATCH_S):
            return None
        self._watched[runtime] = now
        try:
            return await asyncio.to_thread(snapshot, pid, zygote_pid)
        except Exception as exc:  # no pagemap here: cells fault as before
            log.debug("cannot read the page map of a stem cell of %s: %s", runtime, exc)
            return None

    async def learn(self, runtime: str, zygote_pid: int, pid: int, before: Snapshot,
                    current: Callable[[], bool]) -> None:
        """After the cell's first invocation: what it wrote since ``before``, kept if
        nothing was learned meanwhile and ``current()`` still holds (the process and
        its zygote are the ones read). Best effort: never fails the invocation."""
        if self.of(runtime, zygote_pid) is not None or not current():
            return
        try:
            runs = await asyncio.to_thread(written_since, pid, before)
        except Exception as exc:  # gone, or unreadable: learn from a later cold start
            log.debug("cannot learn the pages a cold start of %s writes: %s", runtime, exc)
            return
        if runs and current() and self.of(runtime, zygote_pid) is None:
            self._runs[runtime] = (zygote_pid, runs)
