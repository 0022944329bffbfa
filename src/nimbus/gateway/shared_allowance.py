"""Local allowances of shared rate-limit buckets and quotas (cluster mode).

A server of a cluster spends tokens it leased from a shared row (``store.shared_limits``)
in memory, like ``limits.TokenBucket``'s tokens: ``UsageGate.admit`` stays on the event
loop and touches no database while an allowance lasts. When one runs dry the request
awaits a lease (one transaction for every allowance it lacks; requests that lack the
same allowance meanwhile await that lease rather than start another), or is refused at
once while the shared row is known to be empty.

Leases are small (``want``), so what a server holds and has not spent is bounded: at
most ``want + low - 1`` tokens (``low = max(1, want // 2)``), as a lease is asked for
only when the allowance is below ``low`` (in the background, right after a request took
it there, so the next request seldom waits) and only one lease per allowance is under
way at a time. That bound, times the number of servers, is how far a cluster can exceed
a single bucket (README, cluster section).

When the database does not answer, the allowance falls back to this server's own limit
(a local bucket, or the quota as counted here), and says so in the log.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from nimbus.store.shared_limits import BucketLease, Grant, QuotaReservation, SharedLimitStore
from nimbus.threads import blocking

log = logging.getLogger("nimbus.gateway.limits")

# After the shared quota said "used up", ask again at most this often: another server may
# give back what it reserved and did not use.
QUOTA_RECHECK_S = 1.0
# A server gives back quota it reserved and has not used for this long.
QUOTA_IDLE_S = 2.0
# After a failed lease that the local fallback could not cover either, how long requests
# are refused before the store is asked again.
FAILED_RETRY_S = 1.0


def lease_size(rate: float, capacity: float) -> int:
    """Tokens per lease: a tenth of a second's worth, at least 1, at most the burst."""
    return max(1, min(int(capacity), math.ceil(rate / 10)))


def reservation_size(limit: int) -> int:
    """Requests per quota reservation: a hundredth of the quota, 1 to 100."""
    return max(1, min(100, limit // 100))


@dataclass(eq=False)
class Allowance:
    """Tokens (or quota) this server took from one shared row and has not spent.

    ``request`` says what to ask the shared store for (it is replaced when the bucket's
    or plan's settings change); ``empty_until`` (monotonic seconds) is when the row may
    have a token again after it had none; ``fallback`` grants tokens when the store
    does not answer."""

    request: BucketLease | QuotaReservation
    fallback: Callable[[float], int] = field(default=lambda now: 0, repr=False)
    tokens: int = 0
    # Of ``tokens``, how many the fallback granted (not reserved in the shared store, so
    # not to be given back); counted as spent last, which never gives back too much.
    unbacked: int = 0
    empty_until: float = 0.0
    used_at: float = 0.0
    inflight: asyncio.Future[None] | None = field(default=None, repr=False)

    @property
    def low(self) -> int:
        # Below this, the next lease starts: with large leases, before this one runs out.
        return max(1, self.request.want // 2)

    def needs_lease(self, now: float) -> bool:
        return self.tokens < 1 and now >= self.empty_until

    def wants_prefetch(self, now: float) -> bool:
        return self.tokens < self.low and self.inflight is None and now >= self.empty_until


class Leaser:
    """Fills allowances from the shared store, off the event loop, one transaction per
    batch; at most one lease in flight per allowance."""

    def __init__(self, store: SharedLimitStore, clock: Callable[[], float]) -> None:
        self.store = store
        self._clock = clock
        self._background: set[asyncio.Task[None]] = set()

    async def fill(self, allowances: list[Allowance]) -> None:
        """Lease for each allowance, or await the lease already under way for it."""
        waiting = {a.inflight for a in allowances if a.inflight is not None}
        mine = [a for a in allowances if a.inflight is None]
        if mine:
            await self._lease(mine, self._claim(mine))
        for future in waiting:
            await asyncio.shield(future)

    def prefetch(self, allowances: list[Allowance]) -> None:
        """Start a lease in the background for allowances running low."""
        now = self._clock()
        low = [a for a in allowances if a.wants_prefetch(now)]
        if low:
            # Claimed now, not when the task runs: requests admitted before it does must
            # not start leases of their own (what a server holds would grow past the bound).
            task = asyncio.get_running_loop().create_task(self._lease(low, self._claim(low)))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    @staticmethod
    def _claim(allowances: list[Allowance]) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for allowance in allowances:
            allowance.inflight = future
        return future

    async def _lease(self, allowances: list[Allowance], future: asyncio.Future[None]) -> None:
        try:
            try:
                grants = await blocking(self.store.take, [a.request for a in allowances])
            except Exception:
                log.exception("leasing shared rate limits failed; this server's own apply")
                self._fall_back(allowances)
            else:
                for allowance, grant in zip(allowances, grants, strict=True):
                    self._credit(allowance, grant)
        finally:
            for allowance in allowances:
                allowance.inflight = None
            future.set_result(None)

    def _credit(self, allowance: Allowance, grant: Grant) -> None:
        now = self._clock()
        allowance.unbacked = min(allowance.unbacked, allowance.tokens)
        allowance.tokens += grant.granted
        if grant.granted:
            allowance.used_at = now  # idle from now on, as far as giving back goes
            return
        request = allowance.request
        if isinstance(request, QuotaReservation):
            allowance.empty_until = now + QUOTA_RECHECK_S
        elif request.rate > 0 and request.capacity >= 1:
            allowance.empty_until = now + (1 - grant.left) / request.rate
        else:
            allowance.empty_until = math.inf

    def _fall_back(self, allowances: list[Allowance]) -> None:
        now = self._clock()
        for allowance in allowances:
            granted = allowance.fallback(now)
            allowance.unbacked = min(allowance.unbacked, allowance.tokens) + granted
            allowance.tokens += granted
            if allowance.tokens < 1:
                allowance.empty_until = now + FAILED_RETRY_S

    async def release(self, allowance: Allowance) -> None:
        """Give back quota reserved and not used (a bucket's tokens are just dropped:
        refilling makes up for them, and dropping never exceeds a limit)."""
        request = allowance.request
        count = allowance.tokens - min(allowance.unbacked, allowance.tokens)
        if count < 1 or not isinstance(request, QuotaReservation) or allowance.inflight:
            return
        allowance.tokens -= count
        try:
            await blocking(
                self.store.release,
                request.key_id,
                request.plan_id,
                request.period,
                request.start_day,
                count,
            )
        except Exception:
            log.exception("giving back unused quota failed; keeping it")
            allowance.tokens += count

    async def close(self) -> None:
        for task in list(self._background):
            await task


def after(first: Awaitable[None], then: Callable[[], Awaitable[None] | None]) -> Awaitable[None]:
    """Await ``first``, then ``then()`` and whatever it returns."""

    async def chained() -> None:
        await first
        again = then()
        if again is not None:
            await again

    return chained()
