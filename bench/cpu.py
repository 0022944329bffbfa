"""CPU time by process kind, read from /proc, for the benchmarks' per-event figures.

On a shared, noisy host, req/s moves by a quarter within minutes; the CPU each part
spends per event says where the time goes. A snapshot covers a server's process tree
(nimbus: server, async workers, sandboxes) and the calling process with its finished
children (the load generator: this process, or wrk); the difference of two snapshots,
divided by the events between them, is the figure, with the share of the machine that
was idle meanwhile. Linux only.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user+system seconds) of a live process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


def _kind(pid: int, root: int) -> str:
    if pid == root:
        return "server"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        return "sandbox"
    return "worker" if b"nimbus.workers.worker" in cmdline else "sandbox"


def _idle_and_total() -> tuple[int, int]:
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    return ticks[3] + ticks[4], sum(ticks)  # idle + iowait, everything


@dataclass
class Snapshot:
    """CPU seconds so far of every process under a root, by pid, and of this one."""

    seconds: dict[int, tuple[str, float]]  # pid -> (kind, seconds)
    own: float
    idle: int
    total: int

    @classmethod
    def take(cls, root: int) -> Snapshot:
        parents: dict[int, int] = {}
        times: dict[int, float] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit() and (stat := _stat(int(entry))) is not None:
                parents[int(entry)], times[int(entry)] = stat
        tree, frontier = {root}, {root}
        while frontier:
            frontier = {p for p, parent in parents.items() if parent in frontier}
            tree |= frontier
        own = sum(
            u.ru_utime + u.ru_stime
            for u in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
        )
        idle, total = _idle_and_total()
        return cls(
            {pid: (_kind(pid, root), times[pid]) for pid in tree if pid in times},
            own,
            idle,
            total,
        )

    def per_event(self, later: Snapshot, events: int) -> dict[str, float]:
        """Microseconds of CPU per event by kind since this snapshot (processes that
        exited in between are not counted), and the idle share of the machine."""
        spent: dict[str, float] = {}
        for pid, (kind, seconds) in later.seconds.items():
            before = self.seconds.get(pid, (kind, 0.0))[1]
            spent[kind] = spent.get(kind, 0.0) + seconds - before
        spent["load_generator"] = later.own - self.own
        out = {kind: round(s * 1e6 / max(1, events), 1) for kind, s in sorted(spent.items())}
        ticks = max(1, later.total - self.total)
        out["idle_pct"] = round(100 * (later.idle - self.idle) / ticks, 1)
        return out
