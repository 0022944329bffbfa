"""Rate limits, API keys and quotas for HTTP-trigger requests.

``UsageGate.admit`` runs on the event loop for every request, so it touches memory only:
token buckets (one account-wide, one per stage with throttling, one per key and usage
plan), an index of keys and plans that is reloaded whenever the store changes, and
per-key quota counters. Counted requests are written behind to the store about once a
second (off the event loop), and read back at start, so a restart keeps a period's quota.

With ``cluster`` on, the servers of one installation share the buckets and the quotas
(``shared_allowance``: each server spends small leases from PostgreSQL rows in memory),
and each server polls for key and plan changes made through another one.

Quota periods are UTC: DAY starts at midnight; WEEK on the weekday ``offset`` (0 =
Sunday, as API Gateway documents it); MONTH on day ``offset + 1`` of the month.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

from nimbus.config import Config
from nimbus.errors import GatewayForbidden, GatewayThrottled, LimitExceeded
from nimbus.gateway.shared_allowance import (
    QUOTA_IDLE_S,
    Allowance,
    Leaser,
    after,
    lease_size,
    reservation_size,
)
from nimbus.models import ApiKeyIndex, UsagePlan
from nimbus.store.api_keys import VERSION, ApiKeyStore, UsageBatch
from nimbus.store.shared_limits import (
    BucketLease,
    QuotaReservation,
    SharedLimitStore,
    plan_bucket_name,
)
from nimbus.threads import blocking

log = logging.getLogger("nimbus.gateway.limits")

QUOTA_PERIODS = ("DAY", "WEEK", "MONTH")
# The largest quota offset per period: a weekday (0 = Sunday), or a day every month has.
MAX_QUOTA_OFFSET = {"DAY": 0, "WEEK": 6, "MONTH": 27}
# Usage kept in memory per key and plan: enough days for the longest period (a month).
_USAGE_DAYS = 40
_DAY = 86400
_EPOCH = date(1970, 1, 1).toordinal()
# Retry-After when a bucket never refills (rate 0): there is no honest time to give.
_NEVER_SECONDS = 3600
# A request that found a shared allowance empty awaits at most this many leases (others
# may spend what a lease brought first) before it is refused.
_LEASE_TRIES = 4


def epoch_day(day: date) -> int:
    return day.toordinal() - _EPOCH


def day_of(number: int) -> date:
    return date.fromordinal(number + _EPOCH)


def period_bounds(day: date, period: str, offset: int = 0) -> tuple[date, date]:
    """The quota period holding ``day``: (its first day, the first day of the next)."""
    if period == "DAY":
        return day, day + timedelta(days=1)
    if period == "WEEK":
        since = (day.isoweekday() % 7 - offset) % 7  # isoweekday() % 7: Sunday is 0
        start = day - timedelta(days=since)
        return start, start + timedelta(days=7)
    if period == "MONTH":
        first = offset + 1
        start = day.replace(day=first) if day.day >= first else _add_month(day, -1, first)
        return start, _add_month(start, 1, first)
    raise ValueError(f"unknown quota period {period!r}")


def _add_month(day: date, months: int, on: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, on)


class TokenBucket:
    """``capacity`` tokens, refilled at ``rate`` per second; a request takes one."""

    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.stamp = now

    def configure(self, rate: float, capacity: float) -> None:
        if rate != self.rate or capacity != self.capacity:
            self.rate, self.capacity = rate, capacity
            self.tokens = min(self.tokens, capacity)

    def wait(self, now: float) -> float:
        """Refill up to ``now``; seconds until a token is there (0: one is)."""
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.tokens >= 1:
            return 0.0
        if self.rate <= 0 or self.capacity < 1:
            return math.inf
        return (1 - self.tokens) / self.rate


@dataclass
class _Meter:
    """Requests of one key under one plan, per UTC day, and the current period's sum."""

    days: dict[int, int]  # epoch day -> requests (stored plus counted here)
    period: tuple[str, int] | None = None  # (period, offset) the sum below is for
    start: int = 0  # first epoch day of the current period
    end: float = 0.0  # wall-clock second the current period ends
    used: int = 0
    pending: dict[int, int] = field(default_factory=dict)  # counted, not yet stored

    def roll(self, plan: UsagePlan, wall: float) -> None:
        """Make ``used`` the current period's; cheap unless the period moved on."""
        assert plan.quota_period is not None
        period = (plan.quota_period, plan.quota_offset)
        if period == self.period and wall < self.end:
            return
        today = int(wall // _DAY)
        start, end = period_bounds(day_of(today), *period)
        self.period, self.start = period, epoch_day(start)
        self.end = float(epoch_day(end) * _DAY)
        self.used = sum(n for day, n in self.days.items() if self.start <= day <= today)
        for day in [d for d in self.days if d < today - _USAGE_DAYS]:
            del self.days[day]


def _empty_index() -> ApiKeyIndex:
    return ApiKeyIndex(keys_by_value={}, plans={}, plan_for={}, usage={})


class UsageGate:
    """Admits or refuses one HTTP-trigger request: account-wide rate limit, the stage's
    default route throttling, and for routes that require an API key, the key's usage plan
    (throttle + quota)."""

    def __init__(
        self,
        store: ApiKeyStore,
        config: Config,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        flush_interval: float = 1.0,
    ) -> None:
        self.store = store
        self.config = config
        self._clock = clock
        self._wall = wall_clock
        self._flush_interval = flush_interval
        self._index = _empty_index()
        self._applied: ApiKeyIndex | None = None  # the index the meters were pruned for
        self._reload_lock = threading.Lock()
        self._loaded = False
        self._account = TokenBucket(config.http_rate_limit, config.http_burst_limit, clock())
        self._stages: dict[tuple[str | None, str | None, str | None], TokenBucket] = {}
        self._plan_buckets: dict[tuple[str, str], TokenBucket] = {}
        self._meters: dict[tuple[str, str], _Meter] = {}
        self._task: asyncio.Task[None] | None = None
        # Cluster mode: allowances of shared buckets (by name) and quotas (key, plan).
        self._shared: SharedLimitStore | None = None
        self._leaser: Leaser | None = None
        self._allowances: dict[str, Allowance] = {}
        self._quotas: dict[tuple[str, str], Allowance] = {}
        self._version = 0  # the shared version of keys and plans the index was read at
        if config.cluster:
            self._shared = SharedLimitStore(store.db)
            self._leaser = Leaser(self._shared, clock)
            store.share_changes()
        store.on_change(self._on_change)

    # -- the hot path ----------------------------------------------------------------

    def admit(
        self,
        *,
        api_id: str | None,
        stage: str | None,
        api_key: str | None,
        key_required: bool,
        stage_rate: float | None = None,
        stage_burst: int | None = None,
        route_key: str | None = None,
    ) -> Awaitable[None] | None:
        """Return if the request may go on; raise ``GatewayForbidden`` (bad key),
        ``LimitExceeded`` (quota used up) or ``GatewayThrottled`` (rate) otherwise.

        ``stage_rate``/``stage_burst`` are the route's throttling on its stage (its route
        settings, else the stage's defaults; None where neither sets one); each route of a
        stage has its own bucket, as API Gateway throttles routes one by one.

        In cluster mode, the answer may need a lease of shared tokens first: then an
        awaitable is returned, which returns or raises as above once it has one."""
        if self._leaser is not None:
            return self._admit_shared(
                api_id, stage, api_key, key_required, stage_rate, stage_burst, route_key
            )
        index = self._index
        if index is not self._applied:
            self._apply(index)
        plan: UsagePlan | None = None
        meter: _Meter | None = None
        key_id = ""
        wall = 0.0
        if key_required:
            key = index.keys_by_value.get(api_key) if api_key else None
            if key is None or not key.enabled or api_id is None or stage is None:
                raise GatewayForbidden("Forbidden")
            plan_id = index.plan_for.get((key.id, api_id, stage))
            if plan_id is None:
                raise GatewayForbidden("Forbidden")
            key_id, plan = key.id, index.plans[plan_id]
            wall = self._wall()
            meter = self._meter(key_id, plan_id, index)
            if plan.quota_limit is not None and plan.quota_period is not None:
                meter.roll(plan, wall)
                if meter.used >= plan.quota_limit:
                    raise LimitExceeded("Limit Exceeded", _seconds(meter.end - wall))

        now = self._clock()
        wait = self._account.wait(now)
        stage_bucket = None
        if stage_rate is not None or stage_burst is not None:
            where = (api_id, stage, route_key)
            stage_bucket = self._stage_bucket(where, stage_rate, stage_burst, now)
            wait = max(wait, stage_bucket.wait(now))
        plan_bucket = None
        if plan is not None and plan.rate_limit is not None:
            plan_bucket = self._plan_bucket(key_id, plan, now)
            wait = max(wait, plan_bucket.wait(now))
        if wait > 0:
            raise GatewayThrottled("Too Many Requests", _seconds(wait))
        # Every bucket had a token: take them together, so a refused request costs none.
        self._account.tokens -= 1
        if stage_bucket is not None:
            stage_bucket.tokens -= 1
        if plan_bucket is not None:
            plan_bucket.tokens -= 1

        if meter is not None and plan is not None:
            day = int(wall // _DAY)
            meter.days[day] = meter.days.get(day, 0) + 1
            meter.pending[day] = meter.pending.get(day, 0) + 1
            if meter.period is not None and day >= meter.start:
                meter.used += 1
        return None

    def _admit_shared(
        self,
        api_id: str | None,
        stage: str | None,
        api_key: str | None,
        key_required: bool,
        stage_rate: float | None,
        stage_burst: int | None,
        route_key: str | None,
        tries: int = _LEASE_TRIES,
    ) -> Awaitable[None] | None:
        """``admit`` in cluster mode: the same checks, in the same order, on allowances
        leased from the shared buckets and quotas instead of this server's own."""
        index = self._index
        if index is not self._applied:
            self._apply(index)
        plan: UsagePlan | None = None
        meter: _Meter | None = None
        quota: Allowance | None = None
        key_id = ""
        wall = 0.0
        if key_required:
            key = index.keys_by_value.get(api_key) if api_key else None
            if key is None or not key.enabled or api_id is None or stage is None:
                raise GatewayForbidden("Forbidden")
            plan_id = index.plan_for.get((key.id, api_id, stage))
            if plan_id is None:
                raise GatewayForbidden("Forbidden")
            key_id, plan = key.id, index.plans[plan_id]
            wall = self._wall()
            meter = self._meter(key_id, plan_id, index)
            if plan.quota_limit is not None and plan.quota_period is not None:
                meter.roll(plan, wall)
                quota = self._quota_allowance(key_id, plan, meter)

        now = self._clock()
        config = self.config
        buckets = [self._bucket_allowance("account", config.http_rate_limit,
                                          config.http_burst_limit)]  # fmt: skip
        if stage_rate is not None or stage_burst is not None:
            rate = config.http_rate_limit if stage_rate is None else stage_rate
            capacity = config.http_burst_limit if stage_burst is None else stage_burst
            name = f"stage/{api_id}/{stage}/{route_key}"
            buckets.append(self._bucket_allowance(name, rate, capacity))
        if plan is not None and plan.rate_limit is not None:
            burst = plan.burst_limit
            if burst is None:
                burst = max(1, math.ceil(plan.rate_limit))
            name = plan_bucket_name(key_id, plan.id)
            buckets.append(self._bucket_allowance(name, plan.rate_limit, burst))
        every = buckets if quota is None else [quota, *buckets]

        lacking = [a for a in every if a.needs_lease(now)]
        leaser = self._leaser
        assert leaser is not None
        if lacking and tries > 0:
            # One round trip for all it lacks; then decide again, as other requests may
            # have spent the lease first (each retry either finds a token or a row that
            # said it is empty, so this ends).
            return after(
                leaser.fill(lacking),
                lambda: self._admit_shared(api_id, stage, api_key, key_required, stage_rate,
                                           stage_burst, route_key, tries - 1),
            )  # fmt: skip
        if quota is not None and quota.tokens < 1:
            assert meter is not None
            if quota.empty_until > now:  # the shared row said it is used up
                raise LimitExceeded("Limit Exceeded", _seconds(meter.end - wall))
            # Other requests spent each lease first: contention, not the quota's end.
            raise GatewayThrottled("Too Many Requests", 1)
        empty = [a for a in buckets if a.tokens < 1]
        if empty:
            wait = max(a.empty_until - now for a in empty)
            raise GatewayThrottled("Too Many Requests", _seconds(wait))
        for allowance in every:
            allowance.tokens -= 1
        if quota is not None:
            quota.used_at = now
        leaser.prefetch(every)

        if meter is not None and plan is not None:
            day = int(wall // _DAY)
            meter.days[day] = meter.days.get(day, 0) + 1
            meter.pending[day] = meter.pending.get(day, 0) + 1
            if meter.period is not None and day >= meter.start:
                meter.used += 1
        return None

    def _bucket_allowance(self, name: str, rate: float, capacity: float) -> Allowance:
        allowance = self._allowances.get(name)
        if allowance is not None:
            request = allowance.request
            assert isinstance(request, BucketLease)
            if request.rate == rate and request.capacity == capacity:
                return allowance
        lease = BucketLease(name, rate, capacity, lease_size(rate, capacity))
        if allowance is not None:
            allowance.request = lease  # new settings: the held tokens stay
            return allowance
        allowance = self._allowances[name] = Allowance(lease)
        local = TokenBucket(rate, capacity, self._clock())

        def fallback(now: float) -> int:
            # The store did not answer: this server's own bucket, as without cluster.
            assert allowance is not None
            request = allowance.request
            assert isinstance(request, BucketLease)
            local.configure(request.rate, request.capacity)
            local.wait(now)
            taken = max(0, min(request.want, int(local.tokens)))
            local.tokens -= taken
            return taken

        allowance.fallback = fallback
        return allowance

    def _quota_allowance(self, key_id: str, plan: UsagePlan, meter: _Meter) -> Allowance:
        assert plan.quota_limit is not None and plan.quota_period is not None
        limit = plan.quota_limit
        start = day_of(meter.start).isoformat()
        allowance = self._quotas.get((key_id, plan.id))
        if allowance is not None:
            request = allowance.request
            assert isinstance(request, QuotaReservation)
            if (request.period, request.start_day) == (plan.quota_period, start):
                if request.limit == limit:
                    return allowance
                if limit < request.limit:
                    allowance.tokens = 0  # reserved under a higher limit: not to be spent
            else:
                allowance.tokens = 0  # the last period's: the new one counts afresh
        end = day_of(int(meter.end // _DAY)).isoformat()
        reservation = QuotaReservation(
            key_id, plan.id, plan.quota_period, start, end, limit, reservation_size(limit)
        )
        if allowance is not None:
            allowance.request = reservation
            allowance.empty_until = 0.0
            return allowance
        allowance = self._quotas[(key_id, plan.id)] = Allowance(reservation)

        def fallback(now: float) -> int:
            # The store did not answer: the quota as this server counted it.
            assert allowance is not None
            request = allowance.request
            assert isinstance(request, QuotaReservation)
            return max(0, min(request.want, request.limit - meter.used - allowance.tokens))

        allowance.fallback = fallback
        return allowance

    def _stage_bucket(
        self,
        where: tuple[str | None, str | None, str | None],
        rate: float | None,
        burst: int | None,
        now: float,
    ) -> TokenBucket:
        # A stage that sets only one of the two limits takes the account's for the other.
        rate = self.config.http_rate_limit if rate is None else rate
        capacity = self.config.http_burst_limit if burst is None else burst
        bucket = self._stages.get(where)
        if bucket is None:
            bucket = self._stages[where] = TokenBucket(rate, capacity, now)
        else:
            bucket.configure(rate, capacity)
        return bucket

    def _plan_bucket(self, key_id: str, plan: UsagePlan, now: float) -> TokenBucket:
        assert plan.rate_limit is not None
        # Without a burst limit a plan allows one second's worth of requests at once.
        capacity = plan.burst_limit
        if capacity is None:
            capacity = max(1, math.ceil(plan.rate_limit))
        bucket = self._plan_buckets.get((key_id, plan.id))
        if bucket is None:
            bucket = TokenBucket(plan.rate_limit, capacity, now)
            self._plan_buckets[(key_id, plan.id)] = bucket
        else:
            bucket.configure(plan.rate_limit, capacity)
        return bucket

    def _meter(self, key_id: str, plan_id: str, index: ApiKeyIndex) -> _Meter:
        meter = self._meters.get((key_id, plan_id))
        if meter is None:
            # Created once per key and plan, from the usage read with the index; later
            # counts are this gate's own, so the stored rows are not read again.
            stored = index.usage.get((key_id, plan_id), {})
            days = {epoch_day(date.fromisoformat(day)): n for day, n in stored.items()}
            meter = self._meters[(key_id, plan_id)] = _Meter(days=days)
        return meter

    def _apply(self, index: ApiKeyIndex) -> None:
        """Forget buckets and meters of keys no longer in a plan (their stored usage is
        deleted with them): once per index reload, not per request."""
        pairs = {(key, plan) for (key, _api, _stage), plan in index.plan_for.items()}
        for pair in [p for p in self._plan_buckets if p not in pairs]:
            del self._plan_buckets[pair]
        # A meter with counts still to store waits for the next flush to be forgotten.
        for pair in [p for p, m in self._meters.items() if p not in pairs and not m.pending]:
            del self._meters[pair]
        if self._leaser is not None:
            for pair in [p for p in self._quotas if p not in pairs]:
                del self._quotas[pair]
            names = {plan_bucket_name(*pair) for pair in pairs}
            for name in [n for n in self._allowances if n.startswith("plan/")]:
                if name not in names:
                    del self._allowances[name]
        self._applied = index

    # -- the index -------------------------------------------------------------------

    def load(self) -> None:
        """Read keys, plans and recent usage from the store (blocking)."""
        since = day_of(int(self._wall() // _DAY) - _USAGE_DAYS).isoformat()
        with self._reload_lock:
            # Serialised so that the last reload to run reads the newest state.
            if self._shared is not None:
                # Read first: a change committed after it is seen by the next poll.
                self._version = self._shared.version(VERSION)
            self._index = self.store.index(since)
            self._loaded = True

    def _on_change(self) -> None:
        if self._loaded:
            self.load()

    # -- write-behind ----------------------------------------------------------------

    def take_pending(self) -> UsageBatch:
        """Counted requests not yet stored, cleared here (call on the admitting thread)."""
        batch: UsageBatch = {}
        for (key_id, plan_id), meter in self._meters.items():
            for day, count in meter.pending.items():
                batch[(key_id, plan_id, day_of(day).isoformat())] = count
            meter.pending = {}
        return batch

    def restore_pending(self, batch: UsageBatch) -> None:
        """Put back a batch the store did not take, to be written with the next one."""
        for (key_id, plan_id, day), count in batch.items():
            meter = self._meters.get((key_id, plan_id))
            if meter is not None:
                number = epoch_day(date.fromisoformat(day))
                meter.pending[number] = meter.pending.get(number, 0) + count

    def flush_blocking(self) -> int:
        """Store the pending counts now, in this thread (tests, shutdown without a loop)."""
        return self.store.add_usage(self.take_pending())

    async def flush(self) -> None:
        # Taken on the event loop, where admit() runs, so no count slips between the two.
        batch = self.take_pending()
        if not batch:
            return
        try:
            await blocking(self.store.add_usage, batch)
        except Exception:
            log.exception("storing API key usage failed; retrying with the next batch")
            self.restore_pending(batch)

    async def start(self) -> None:
        await blocking(self.load)
        self._task = asyncio.create_task(self._flush_loop(), name="usage-gate-flush")

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval)
            await self.flush()
            if self._leaser is not None:
                await self._cluster_tick()

    async def _cluster_tick(self) -> None:
        """Reload keys and plans another server changed; give back idle quota."""
        assert self._shared is not None and self._leaser is not None
        try:
            if await blocking(self._shared.version, VERSION) != self._version:
                await blocking(self.load)
        except Exception:
            log.exception("checking for changed API keys and usage plans failed")
        now = self._clock()
        for allowance in list(self._quotas.values()):
            if allowance.tokens >= 1 and now - allowance.used_at > QUOTA_IDLE_S:
                await self._leaser.release(allowance)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()
        if self._leaser is not None:
            await self._leaser.close()
            for allowance in list(self._quotas.values()):
                await self._leaser.release(allowance)
        self._loaded = False


def _seconds(wait: float) -> int:
    """A Retry-After value: whole seconds, at least 1."""
    if math.isinf(wait):
        return _NEVER_SECONDS
    return max(1, math.ceil(wait))
