"""Background work that waits for cold starts to be quiet.

Refilling a sandbox manager's pools (stem cells, disk-backed /tmp file systems) and
unmounting used disks takes CPU, the event loop and kernel locks that a cold start in
progress and its first invocation want. Done at once, a stem cell's replacement made the
cold start that took the cell ~25% slower (and its p90 ~50%), as unmounting disks did
before. So such work is handed to a ``Quiet``: it runs once no cold start is under way
and none has begun or ended for ``QUIET_S`` (the first invocation follows the end), but
never later than ``DELAY_S`` after the oldest work waiting, so a steady stream of cold
starts, or a long one (an init importing a large library), still gets its pools
refilled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

QUIET_S = 0.01
DELAY_S = 0.05


class Quiet:
    """Work held back while cold starts happen (one per sandbox manager)."""

    def __init__(self, quiet_s: float = QUIET_S, delay_s: float = DELAY_S) -> None:
        self.quiet_s = quiet_s
        self.delay_s = delay_s
        # What waits, in order; a bound method asked for twice runs once.
        self._work: dict[Callable[[], None], None] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._since = 0.0  # loop time of the oldest work waiting
        self._ran: asyncio.Future[None] | None = None
        self._closed = False
        self._starting = 0  # cold starts under way

    def begin(self) -> None:
        """A cold start begins: what waits, waits for its end (or the delay)."""
        self._starting += 1
        if self._timer is not None:
            self.hold()

    def end(self) -> None:
        """A cold start ended: its first invocation follows, so quiet_s more."""
        self._starting -= 1
        if self._timer is not None:
            self.hold()

    def defer(self, work: Callable[[], None]) -> None:
        """Run ``work`` once cold starts are quiet (at once after ``close``)."""
        self._work[work] = None
        if self._closed:
            self.flush()
        else:
            self.hold()

    def hold(self) -> None:
        """Something happened (work came, a cold start began or ended): wait until no
        cold start is under way and none has begun or ended for ``quiet_s``, at most
        ``delay_s`` since the oldest work waiting."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._timer is None:
            self._since = now
        else:
            self._timer.cancel()
        latest = self._since + self.delay_s
        self._timer = loop.call_at(latest if self._starting else min(now + self.quiet_s,
                                                                     latest), self.flush)

    @property
    def busy(self) -> bool:
        """A cold start is under way."""
        return self._starting > 0

    @property
    def holding(self) -> bool:
        """Work is waiting for cold starts to be quiet."""
        return self._timer is not None

    def flush(self) -> None:
        """Run what waits now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        work, self._work = list(self._work), {}
        for run in work:
            try:
                run()
            except Exception:  # one pool's failure must not keep the others waiting
                log.exception("background work after cold starts failed")
        ran, self._ran = self._ran, None
        if ran is not None and not ran.done():
            ran.set_result(None)

    def close(self) -> None:
        """Run what waits, and from now on what comes at once: no timer outlives the
        sandbox manager (its environments, stopping, still hand back disks)."""
        self._closed = True
        self.flush()

    async def ran(self) -> None:
        """Wait until what waits now has run (at once if nothing waits)."""
        if self._timer is None:
            return
        if self._ran is None:
            self._ran = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._ran)
