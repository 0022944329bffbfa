"""Lambda's metrics, counted from lifecycle hooks (ConcurrentExecutions excepted: the
environment pool's count of what runs, read when asked): for Prometheus (``GET
/metrics``) and as a compact per-function time series of 1-minute buckets (``GET
/_nimbus/metrics``).

Each process (the server, every async worker) counts into its own ``Metrics``, a few
plain dicts updated by the hook subscribers: no locks, no allocation beyond the label
tuple, so counting stays cheap on the warm path. The server's ``Metrics`` is the whole
installation's: an async worker drains what it counted (``take``) every half second and
ships it over the socket it already keeps to the server's queue server, which folds it
in (``absorb``); counts are additive, so nothing is counted twice, and a worker's
restart only loses what it had not shipped yet. Its in-flight invocations (the
ConcurrentExecutions gauge) travel as absolute values and vanish with its connection.
prometheus-client serialises the figures (the text format Prometheus reads) through a
collector over those dicts.

Names follow Lambda's metrics in Prometheus' style (``nimbus_<metric>_total`` for
counts, seconds for durations), labelled as Lambda's dimensions: ``function_name``,
``resource`` (``name`` or ``name:qualifier`` as invoked: an alias or a version) and
``executed_version``.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from nimbus.clock import Clock, now_ms
from nimbus.observe.cost import CostModel, Usage
from nimbus.observe.hooks import (
    AsyncEventDeadLettered,
    AsyncEventDropped,
    AsyncEventReceived,
    AsyncEventRetried,
    AsyncEventStarted,
    DestinationDelivered,
    Hooks,
    InvocationFinished,
    InvocationThrottled,
)

# 1 ms (the billing unit) to 15 minutes (the longest timeout); p50/p90/p99 come from
# histogram_quantile over these.
DURATION_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0,
)  # fmt: skip
# An async event waits up to 6 hours (MaximumEventAgeInSeconds).
AGE_BUCKETS_S = (
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 180.0, 600.0, 1800.0, 3600.0, 21600.0,
)  # fmt: skip
SERIES_MINUTES = 1440  # a day of 1-minute buckets per function
SERIES_FUNCTIONS = 2000  # functions with a series; the least recently active goes first
# The series' duration buckets: 8 per doubling (upper bounds 2^(i/8) ms), so a percentile
# read from them is at most ~9% above the true value.
STEPS_PER_DOUBLING = 8

Labels = tuple[str, ...]
Key = tuple[str, Labels]  # (metric, label values)


@dataclass(frozen=True)
class Family:
    kind: str  # counter, histogram
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()


INVOKED = ("function_name", "resource", "executed_version")
RESOURCE = ("function_name", "resource")
FAMILIES: dict[str, Family] = {
    "invocations": Family("counter", "Invocations run (Lambda's Invocations; throttles "
                          "excluded).", INVOKED),
    "errors": Family("counter", "Invocations that failed: function error, timeout, out of "
                     "memory, init failure (Lambda's Errors).", (*INVOKED, "kind")),
    "throttles": Family("counter", "Invocation requests refused for want of concurrency "
                        "(Lambda's Throttles).", (*RESOURCE, "reason")),
    "duration_seconds": Family("histogram", "Invocation duration (Lambda's Duration).",
                               INVOKED, DURATION_BUCKETS_S),
    "billed_duration_seconds": Family("counter", "Billed duration, whole milliseconds.",
                                      INVOKED),
    "gb_seconds": Family("counter", "Compute as Lambda bills it: billed duration x "
                         "MemorySize.", ("function_name", "architecture")),
    "cold_starts": Family("counter", "Invocations that started a new environment.", INVOKED),
    "init_duration_seconds": Family("histogram", "Init Duration of cold starts (Restore "
                                    "Duration for SnapStart: kind=restore).",
                                    ("function_name", "executed_version", "kind"),
                                    DURATION_BUCKETS_S),
    "async_events_received": Family("counter", "Async events queued (Lambda's "
                                    "AsyncEventsReceived).", RESOURCE),
    "async_event_age_seconds": Family("histogram", "Time from first queueing to each run "
                                      "of an async event (Lambda's AsyncEventAge).",
                                      RESOURCE, AGE_BUCKETS_S),
    "async_events_retried": Family("counter", "Async events retried after a function "
                                   "error.", RESOURCE),
    "async_events_dropped": Family("counter", "Async events that ended without a "
                                   "successful run (Lambda's AsyncEventsDropped).",
                                   (*RESOURCE, "condition")),
    "dead_letter_errors": Family("counter", "Failed events that could not be sent to the "
                                 "DeadLetterConfig queue (Lambda's DeadLetterErrors).",
                                 RESOURCE),
    "destination_deliveries": Family("counter", "Invocation records sent to destinations.",
                                     (*RESOURCE, "condition")),
    "destination_delivery_failures": Family("counter", "Invocation records that could not "
                                            "be delivered to a destination (Lambda's "
                                            "DestinationDeliveryFailures).",
                                            (*RESOURCE, "condition")),
}


@dataclass
class Minute:
    """One function's minute: counts, duration distribution and billed usage."""

    invocations: int = 0
    errors: int = 0
    throttles: int = 0
    durations: dict[int, int] = field(default_factory=dict)  # fine bucket -> count
    usage: Usage = field(default_factory=Usage)

    def merge(self, other: Minute) -> None:
        self.invocations += other.invocations
        self.errors += other.errors
        self.throttles += other.throttles
        for bucket, count in other.durations.items():
            self.durations[bucket] = self.durations.get(bucket, 0) + count
        self.usage.merge(other.usage)


Series = dict[str, dict[int, Minute]]  # function -> epoch minute -> its figures


@dataclass
class MetricsDelta:
    """What a worker counted since its last shipment, and what it runs right now."""

    counters: dict[Key, float]
    histograms: dict[Key, list[float]]  # per bucket (+Inf last), then the sum
    minutes: dict[tuple[str, int], Minute]
    in_flight: dict[str, int]  # absolute: the worker's invocations running now

    def __bool__(self) -> bool:
        return bool(self.counters or self.histograms or self.minutes)


@dataclass(frozen=True)
class MappingFigures:
    """One event source mapping's poller figures (its ``MappingStats``), for /metrics."""

    uuid: str
    function: str
    counters: Mapping[str, int]
    oldest_age_ms: int


@dataclass(frozen=True)
class Point:
    """One minute of one function, as ``GET /_nimbus/metrics`` lists it."""

    minute_ms: int  # the minute's start, epoch ms
    invocations: int
    errors: int
    throttles: int
    p50_ms: float | None
    p99_ms: float | None
    gb_seconds: float
    cost: float

    def as_json(self) -> dict[str, Any]:
        return {
            "Timestamp": self.minute_ms,
            "Invocations": self.invocations,
            "Errors": self.errors,
            "Throttles": self.throttles,
            "DurationP50": self.p50_ms,
            "DurationP99": self.p99_ms,
            "GBSeconds": self.gb_seconds,
            "Cost": self.cost,
        }


def resource(function: str, qualifier: str | None) -> str:
    """Lambda's Resource dimension: the function, or function:qualifier as invoked."""
    return f"{function}:{qualifier}" if qualifier else function


def fine_bucket(ms: float) -> int:
    return 0 if ms <= 1 else math.ceil(STEPS_PER_DOUBLING * math.log2(ms))


def fine_upper_ms(bucket: int) -> float:
    return float(2 ** (bucket / STEPS_PER_DOUBLING))


def percentile(durations: Mapping[int, int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a fine-bucket distribution: its bucket's upper bound."""
    total = sum(durations.values())
    if not total:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for bucket in sorted(durations):
        seen += durations[bucket]
        if seen >= rank:
            return round(fine_upper_ms(bucket), 3)
    return None  # not reached: seen ends at total


# Sets of prebuilt keys a process keeps (one per function, qualifier, version and
# architecture invoked); past it they are built again as they come.
MAX_KEY_SETS = 4096


class _FinishedKeys(NamedTuple):
    labels: Labels
    invocations: Key
    billed: Key
    gb_seconds: Key
    duration: Key


class _ResourceKeys(NamedTuple):
    """The keys an async event counts under, by (function, qualifier as invoked)."""

    received: Key
    age: Key


def _row(histograms: dict[Key, list[float]], key: Key, buckets: tuple[float, ...]) -> list[float]:
    row = histograms.get(key)
    if row is None:
        row = histograms[key] = [0.0] * (len(buckets) + 2)
    return row


class Metrics:
    """One process's counts; ``attach`` subscribes it to the process's ``Hooks``."""

    def __init__(self, clock: Clock = now_ms) -> None:
        self.clock = clock
        self.counters: dict[Key, float] = {}
        self.histograms: dict[Key, list[float]] = {}
        self.series: Series = {}
        # Invocations in flight here, per function: the environment pool's count (set by
        # the engine), read when asked rather than counted on every start and end.
        self.local_in_flight: Callable[[], Mapping[str, int]] = dict
        # The async workers' invocations in flight (the server's queue server knows them).
        self.remote_in_flight: Callable[[], Mapping[str, int]] | None = None
        # The keys a finished invocation counts under, by (function, qualifier, version,
        # architecture): built once, not a key per figure per invocation; the same for
        # async events by (function, qualifier).
        self._finished_keys: dict[tuple[str, str | None, str, str], _FinishedKeys] = {}
        self._resource_keys: dict[tuple[str, str | None], _ResourceKeys] = {}

    def attach(self, hooks: Hooks) -> None:
        hooks.subscribe(InvocationFinished, self.on_finished)
        hooks.subscribe(InvocationThrottled, self.on_throttled)
        hooks.subscribe(AsyncEventReceived, self.on_received)
        hooks.subscribe(AsyncEventStarted, self.on_async_started)
        hooks.subscribe(AsyncEventRetried, self.on_retried)
        hooks.subscribe(AsyncEventDropped, self.on_dropped)
        hooks.subscribe(AsyncEventDeadLettered, self.on_dead_lettered)
        hooks.subscribe(DestinationDelivered, self.on_destination)

    # -- counting (hook subscribers) -------------------------------------------------

    def _count(self, name: str, labels: Labels, amount: float = 1) -> None:
        key = (name, labels)
        self.counters[key] = self.counters.get(key, 0) + amount

    def _observe(self, name: str, labels: Labels, value: float) -> None:
        buckets = FAMILIES[name].buckets
        row = _row(self.histograms, (name, labels), buckets)
        row[bisect_left(buckets, value)] += 1
        row[-1] += value

    def _minute(self, function: str) -> Minute:
        minute = self.clock() // 60_000
        minutes = self.series.get(function)
        if minutes is None:
            if len(self.series) >= SERIES_FUNCTIONS:
                self._evict_function()
            minutes = self.series[function] = {}
        bucket = minutes.get(minute)
        if bucket is None:
            bucket = minutes[minute] = Minute()
            if len(minutes) > SERIES_MINUTES:
                for old in [m for m in minutes if m <= minute - SERIES_MINUTES]:
                    del minutes[old]
        return bucket

    def _evict_function(self) -> None:
        stalest = min(self.series, key=lambda name: max(self.series[name], default=0))
        del self.series[stalest]

    def on_finished(self, event: InvocationFinished) -> None:
        # Every invocation comes here, so the steps are written out in one function (the
        # calls to _observe, _minute, fine_bucket and Usage.add cost as much as their
        # work): the same counts as those helpers make.
        function = event.function
        if event.error == "platform":
            self._platform_error(event)
            return
        at = (function, event.qualifier, event.version, event.architecture)
        keys = self._finished_keys.get(at)
        if keys is None:
            keys = self._keys_for(at)
        labels = keys.labels
        counters = self.counters
        counters[keys.invocations] = counters.get(keys.invocations, 0) + 1
        error = event.error
        if error is not None:
            self._count("errors", (*labels, error))
        duration_ms = event.duration_ms
        seconds = duration_ms / 1000
        row = self.histograms.get(keys.duration) or _row(
            self.histograms, keys.duration, DURATION_BUCKETS_S)
        row[bisect_left(DURATION_BUCKETS_S, seconds)] += 1
        row[-1] += seconds
        billed_ms = event.billed_ms
        counters[keys.billed] = counters.get(keys.billed, 0) + billed_ms / 1000
        mb_ms = billed_ms * event.memory_size
        counters[keys.gb_seconds] = counters.get(keys.gb_seconds, 0) + mb_ms / 1024 / 1000
        if event.cold_start:
            self._count("cold_starts", labels)
            if event.init_ms is not None:
                kind = "restore" if event.restored else "init"
                self._observe("init_duration_seconds", (function, event.version, kind),
                              event.init_ms / 1000)
        minutes = self.series.get(function)
        minute = minutes.get(self.clock() // 60_000) if minutes is not None else None
        if minute is None:
            minute = self._minute(function)
        minute.invocations += 1
        if error is not None:
            minute.errors += 1
        fine = 0 if duration_ms <= 1 else math.ceil(STEPS_PER_DOUBLING * math.log2(duration_ms))
        durations = minute.durations
        durations[fine] = durations.get(fine, 0) + 1
        usage, architecture = minute.usage, event.architecture
        usage.requests[architecture] = usage.requests.get(architecture, 0) + 1
        usage.mb_ms[architecture] = usage.mb_ms.get(architecture, 0) + mb_ms

    def _platform_error(self, event: InvocationFinished) -> None:
        """nimbus could not run it (no environment, the caller gone): counted apart, as
        nimbus_errors_total{kind="platform"}, and nothing else: Lambda counts, in
        Invocations and Errors, and bills only what ran (so Errors / Invocations stays an
        error rate)."""
        function = event.function
        self._count("errors", (function, resource(function, event.qualifier), event.version,
                               "platform"))

    def _keys_for(self, at: tuple[str, str | None, str, str]) -> _FinishedKeys:
        if len(self._finished_keys) >= MAX_KEY_SETS:
            self._finished_keys.clear()
        function, qualifier, version, architecture = at
        labels = (function, resource(function, qualifier), version)
        keys = self._finished_keys[at] = _FinishedKeys(
            labels, ("invocations", labels), ("billed_duration_seconds", labels),
            ("gb_seconds", (function, architecture)), ("duration_seconds", labels),
        )
        return keys

    def _resource(self, function: str, qualifier: str | None) -> _ResourceKeys:
        at = (function, qualifier)
        keys = self._resource_keys.get(at)
        if keys is None:
            if len(self._resource_keys) >= MAX_KEY_SETS:
                self._resource_keys.clear()
            labels = (function, resource(function, qualifier))
            keys = self._resource_keys[at] = _ResourceKeys(
                ("async_events_received", labels), ("async_event_age_seconds", labels)
            )
        return keys

    def on_throttled(self, event: InvocationThrottled) -> None:
        function = event.function
        self._count("throttles", (function, resource(function, event.qualifier), event.reason))
        self._minute(function).throttles += 1

    def on_received(self, event: AsyncEventReceived) -> None:
        key = self._resource(event.function, event.qualifier).received
        self.counters[key] = self.counters.get(key, 0) + 1

    def on_async_started(self, event: AsyncEventStarted) -> None:
        keys = self._resource_keys.get((event.function, event.qualifier))
        if keys is None:
            keys = self._resource(event.function, event.qualifier)
        seconds = event.age_ms / 1000
        row = _row(self.histograms, keys.age, AGE_BUCKETS_S)
        row[bisect_left(AGE_BUCKETS_S, seconds)] += 1
        row[-1] += seconds

    def on_retried(self, event: AsyncEventRetried) -> None:
        self._count("async_events_retried", (event.function,
                                             resource(event.function, event.qualifier)))

    def on_dropped(self, event: AsyncEventDropped) -> None:
        self._count("async_events_dropped", (event.function,
                                             resource(event.function, event.qualifier),
                                             event.condition))

    def on_dead_lettered(self, event: AsyncEventDeadLettered) -> None:
        if not event.ok:
            self._count("dead_letter_errors", (event.function,
                                               resource(event.function, event.qualifier)))

    def on_destination(self, event: DestinationDelivered) -> None:
        labels = (event.function, resource(event.function, event.qualifier), event.condition)
        self._count("destination_deliveries" if event.ok else "destination_delivery_failures",
                    labels)

    # -- between processes ------------------------------------------------------------

    def take(self) -> MetricsDelta:
        """Everything counted since the last ``take`` (then forgotten here), with the
        invocations in flight now: what a worker ships to its server."""
        minutes = {(fn, m): b for fn, ms in self.series.items() for m, b in ms.items()}
        delta = MetricsDelta(self.counters, self.histograms, minutes,
                             dict(self.local_in_flight()))
        self.counters, self.histograms, self.series = {}, {}, {}
        return delta

    def absorb(self, delta: MetricsDelta) -> None:
        """Add a worker's shipment to this process's counts."""
        for key, value in delta.counters.items():
            self.counters[key] = self.counters.get(key, 0) + value
        for key, row in delta.histograms.items():
            mine = self.histograms.get(key)
            if mine is None:
                self.histograms[key] = list(row)
            else:
                for i, value in enumerate(row):
                    mine[i] += value
        for (function, minute), bucket in delta.minutes.items():
            minutes = self.series.get(function)
            if minutes is None:
                if len(self.series) >= SERIES_FUNCTIONS:
                    self._evict_function()
                minutes = self.series[function] = {}
            mine_minute = minutes.get(minute)
            if mine_minute is None:
                minutes[minute] = bucket
            else:
                mine_minute.merge(bucket)

    def concurrent_executions(self) -> Counter[str]:
        total = Counter(self.local_in_flight())
        if self.remote_in_flight is not None:
            total.update(self.remote_in_flight())
        return total

    # -- reading ----------------------------------------------------------------------

    def exposition(self, mappings: list[MappingFigures] | None = None) -> bytes:
        """Everything, in Prometheus' text format."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self, mappings or []))
        return generate_latest(registry)

    def points(self, function: str, minutes: int, cost: CostModel,
               series: Series | None = None) -> list[Point]:
        """The last ``minutes`` minutes of ``function``, oldest first, empty ones as 0
        (of ``series``: another view of the minutes than this process's, if given)."""
        series = self.series if series is None else series
        now_minute = self.clock() // 60_000
        mine = series.get(function, {})
        usage_total = self.usage(now_minute - minutes + 1, series)
        whole = Usage()
        for usage in usage_total.values():
            whole.merge(usage)
        out = []
        for minute in range(now_minute - minutes + 1, now_minute + 1):
            bucket = mine.get(minute) or Minute()
            out.append(Point(
                minute_ms=minute * 60_000,
                invocations=bucket.invocations,
                errors=bucket.errors,
                throttles=bucket.throttles,
                p50_ms=percentile(bucket.durations, 0.5),
                p99_ms=percentile(bucket.durations, 0.99),
                gb_seconds=bucket.usage.gb_seconds(),
                cost=cost.price_share(bucket.usage, whole).total,
            ))
        return out

    def period_durations(self, function: str, minutes: int,
                         series: Series | None = None) -> tuple[float | None, float | None]:
        """p50 and p99 of every invocation of ``function`` in the last ``minutes`` minutes
        (one distribution, as CloudWatch's period statistics: not a minute's maximum)."""
        series = self.series if series is None else series
        since = self.clock() // 60_000 - minutes + 1
        merged: Counter[int] = Counter()
        for minute, bucket in series.get(function, {}).items():
            if minute >= since:
                merged.update(bucket.durations)
        return percentile(merged, 0.5), percentile(merged, 0.99)

    def usage(self, since_minute: int, series: Series | None = None) -> dict[str, Usage]:
        """Each function's usage from ``since_minute`` (epoch minutes) on."""
        out: dict[str, Usage] = {}
        for function, minutes in (self.series if series is None else series).items():
            usage = Usage()
            for minute, bucket in minutes.items():
                if minute >= since_minute:
                    usage.merge(bucket.usage)
            if usage.requests:
                out[function] = usage
        return out

    def first_minute(self) -> int | None:
        """The oldest minute any series still holds."""
        starts = [min(ms) for ms in self.series.values() if ms]
        return min(starts) if starts else None


class _Collector:
    """prometheus-client's view of one ``Metrics``."""

    def __init__(self, metrics: Metrics, mappings: list[MappingFigures]) -> None:
        self.metrics = metrics
        self.mappings = mappings

    def collect(self) -> Iterator[Metric]:
        counters: dict[str, list[tuple[Labels, float]]] = {}
        for (name, labels), value in self.metrics.counters.items():
            counters.setdefault(name, []).append((labels, value))
        histograms: dict[str, list[tuple[Labels, list[float]]]] = {}
        for (name, labels), row in self.metrics.histograms.items():
            histograms.setdefault(name, []).append((labels, row))
        for name, family in FAMILIES.items():
            full = f"nimbus_{name}"
            if family.kind == "counter":
                counter = CounterMetricFamily(full, family.help, labels=family.labels)
                for labels, value in sorted(counters.get(name, [])):
                    counter.add_metric(list(labels), value)
                yield counter
            else:
                histogram = HistogramMetricFamily(full, family.help, labels=family.labels)
                for labels, row in sorted(histograms.get(name, [])):
                    cumulative, running = [], 0.0
                    for bound, count in zip((*family.buckets, math.inf), row, strict=False):
                        running += count
                        cumulative.append((_le(bound), running))
                    histogram.add_metric(list(labels), cumulative, sum_value=row[-1])
                yield histogram
        gauge = GaugeMetricFamily("nimbus_concurrent_executions", "Invocations running now, "
                                  "in the server and every async worker (Lambda's "
                                  "ConcurrentExecutions).", labels=["function_name"])
        for function, count in sorted(self.metrics.concurrent_executions().items()):
            gauge.add_metric([function], count)
        yield gauge
        yield from _mapping_families(self.mappings)


MAPPING_COUNTERS = {
    "received": "Records read from the source.",
    "batches": "Batches handed to the function.",
    "succeeded": "Records the function processed successfully.",
    "failed": "Records the function failed (failed items).",
    "filtered": "Records dropped by FilterCriteria.",
    "on_failure": "Records sent to the OnFailure destination.",
    "discarded": "Records given up with nowhere to go.",
    "throttled": "Batch invocations throttled (retried).",
}


def _mapping_families(mappings: list[MappingFigures]) -> Iterator[Metric]:
    labels = ["uuid", "function_name"]
    for counter, help_text in MAPPING_COUNTERS.items():
        family = CounterMetricFamily(f"nimbus_event_source_records_{counter}",
                                     f"Event source mappings: {help_text}", labels=labels)
        if counter in ("batches", "throttled"):
            family = CounterMetricFamily(f"nimbus_event_source_{counter}",
                                         f"Event source mappings: {help_text}", labels=labels)
        for m in mappings:
            family.add_metric([m.uuid, m.function], m.counters.get(counter, 0))
        yield family
    age = GaugeMetricFamily("nimbus_event_source_iterator_age_seconds", "Event source "
                            "mappings: age of the last batch's oldest record when it was "
                            "read (Lambda's IteratorAge).", labels=labels)
    for m in mappings:
        age.add_metric([m.uuid, m.function], m.oldest_age_ms / 1000)
    yield age


def _le(bound: float) -> str:
    return "+Inf" if bound == math.inf else repr(float(bound))
