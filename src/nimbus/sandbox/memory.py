"""Max Memory Used of one environment: memory only, not the page cache of /tmp.

The environment's cgroup peak (``memory.max_usage_in_bytes``, ``memory.peak``) is the
figure, as before, while the function has not put anything on its disk-backed /tmp:
then it is exact, and cheap (one ``pread`` per invocation). Once /tmp has held data
(one ``fstatvfs`` of it, ~1 us, says so), the peak also counts the page cache of those
writes, up to the whole MemorySize: a 128 MB function that wrote 400 MB peaks at 128 MB
although it allocated a few. From then on, each invocation's figure is

    max(peak - the most unmapped page cache seen, the most (usage - that cache) seen)

from samples of ``memory.stat`` (~20 us each): every ``SAMPLE_S`` while the invocation
runs (the manager's sampler) and at its end, where the peak is also reset to the
current usage (with the samples), so that each invocation is judged on its own. The
first term assumes the peak came while the cache was at its highest (it does when the
cache is what filled the cgroup); the second is a floor, what was memory for certain at
some sample. Mapped files and shmem are never taken off. Max Memory Used is the highest
figure so far: it only grows over an environment's life, like the peak it stands for.

What this cannot see: a burst of allocations shorter than ``SAMPLE_S`` while the cgroup
is full of /tmp cache (reported too low by up to that burst), and /tmp data written and
deleted between two samples (counted, as it was when /tmp was a tmpfs).
"""

from __future__ import annotations

import math

from nimbus.sandbox.cgroups import Cgroup
from nimbus.sandbox.tmpdisk import TmpDisk

MB = 1024 * 1024
SAMPLE_S = 0.1  # while an invocation runs, once /tmp holds data


class MaxMemory:
    """What an environment reports as Max Memory Used, in bytes and MB."""

    def __init__(self, cgroup: Cgroup, tmp: TmpDisk | None) -> None:
        self.cgroup = cgroup
        self.tmp = tmp
        self.bytes = 0
        self.corrected = False  # /tmp has held data: page cache is taken off the peak
        self._cache_high = 0  # the most unmapped page cache seen
        self._memory_high = 0  # the most (usage - that cache) seen

    def _tmp_used(self) -> bool:
        if not self.corrected and self.tmp is not None and self.tmp.in_use():
            self.corrected = True
        return self.corrected

    def sample(self) -> None:
        """Note the page cache and memory now (while an invocation runs)."""
        if self._tmp_used():
            usage, cache = self.cgroup.memory_sample()
            self._cache_high = max(self._cache_high, cache)
            self._memory_high = max(self._memory_high, usage - cache)

    def after_invocation(self) -> int:
        """Max Memory Used so far, in MB (rounded up)."""
        peak = self.cgroup.memory_peak_bytes()
        if self._tmp_used():
            usage, cache = self.cgroup.memory_sample()
            peak = max(peak - max(self._cache_high, cache), self._memory_high, usage - cache)
            if self.cgroup.reset_peak():
                # The next invocation starts from here: its peak is at least this usage.
                self._cache_high, self._memory_high = cache, usage - cache
        self.bytes = max(self.bytes, peak)
        return math.ceil(self.bytes / MB)
