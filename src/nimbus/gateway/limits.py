"""Rate limits, API keys and quotas for HTTP-trigger requests.

``UsageGate.admit`` runs on the event loop for every request, so it touches memory only:
token buckets (one account-wide, one per stage with throttling, one per key and usage
plan), an index of keys and plans that is reloaded whenever the store changes, and
per-key quota counters. Counted requests are written behind to the store about once a
second (off the event loop), and read back at start, so a restart keeps a period's quota.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

from nimbus.config import Config
from nimbus.errors import GatewayForbidden, GatewayThrottled, LimitExceeded
from nimbus.models import ApiKeyIndex, UsagePlan
from nimbus.store.api_keys import ApiKeyStore, UsageBatch
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
    ) -> None:
        """Return if the request may go on; raise ``GatewayForbidden`` (bad key),
        ``LimitExceeded`` (quota used up) or ``GatewayThrottled`` (rate) otherwise.

        ``stage_rate``/``stage_burst`` are the route's throttling on its stage (its route
        settings, else the stage's defaults; None where neither sets one); each route of a
        stage has its own bucket, as API Gateway throttles routes one by one."""
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
        self._applied = index

    # -- the index -------------------------------------------------------------------

    def load(self) -> None:
        """Read keys, plans and recent usage from the store (blocking)."""
        since = day_of(int(self._wall() // _DAY) - _USAGE_DAYS).isoformat()
        with self._reload_lock:
            # Serialised so that the last reload to run reads the newest state.
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

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()
        self._loaded = False


def _seconds(wait: float) -> int:
    """A Retry-After value: whole seconds, at least 1."""
    if math.isinf(wait):
        return _NEVER_SECONDS
    return max(1, math.ceil(wait))
