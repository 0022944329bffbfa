"""Metrics counted from lifecycle events: Prometheus exposition, histograms, the
1-minute series, and a worker's shipments adding up to what one process would count."""

from __future__ import annotations

import math
import pickle
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from nimbus.config import Pricing
from nimbus.observe.cost import CostModel
from nimbus.observe.hooks import (
    AsyncEventDeadLettered,
    AsyncEventDropped,
    AsyncEventReceived,
    AsyncEventStarted,
    DestinationDelivered,
    Hooks,
    InvocationFinished,
    InvocationStarted,
    InvocationThrottled,
)
from nimbus.observe.metrics import (
    SERIES_MINUTES,
    MappingFigures,
    Metrics,
    fine_bucket,
    fine_upper_ms,
    percentile,
)


class Clock:
    def __init__(self, ms: int = 1_700_000_000_000) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def finished(duration_ms: float, *, qualifier: str | None = None, version: str = "$LATEST",
             error: Any = None, cold: bool = False, memory: int = 128,
             arch: str = "x86_64", fn: str = "fn") -> InvocationFinished:
    return InvocationFinished(
        function=fn, qualifier=qualifier, version=version, request_id="r",
        architecture=arch, memory_size=memory, duration_ms=duration_ms,
        billed_ms=max(1, math.ceil(duration_ms)), max_memory_used_mb=10, cold_start=cold,
        init_ms=120.0 if cold else None, restored=False, error=error, error_type=None,
    )


def run(hooks: Hooks, event: InvocationFinished) -> None:
    hooks.emit(InvocationStarted(event.function, event.qualifier, event.version, "r"))
    hooks.emit(event)


def parsed(metrics: Metrics, mappings: list[MappingFigures] | None = None) -> dict:
    text = metrics.exposition(mappings).decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def test_invocations_errors_durations_and_cold_starts() -> None:
    metrics, hooks = Metrics(Clock()), Hooks()
    metrics.attach(hooks)
    run(hooks, finished(0.4, cold=True))
    run(hooks, finished(30))
    run(hooks, finished(3000, error="timeout"))
    run(hooks, finished(7, qualifier="live", version="2"))
    hooks.emit(InvocationThrottled("fn", None, "ReservedFunctionConcurrentInvocationLimitExceeded"))
    got = parsed(metrics)
    latest = {"function_name": "fn", "resource": "fn", "executed_version": "$LATEST"}

    def v(name: str, **labels: str) -> float:
        return got.get((name, frozenset(labels.items())), 0.0)

    assert v("nimbus_invocations_total", **latest) == 3
    assert v("nimbus_invocations_total", function_name="fn", resource="fn:live",
             executed_version="2") == 1
    assert v("nimbus_errors_total", **latest, kind="timeout") == 1
    assert v("nimbus_throttles_total", function_name="fn", resource="fn",
             reason="ReservedFunctionConcurrentInvocationLimitExceeded") == 1
    assert v("nimbus_duration_seconds_bucket", **latest, le="0.001") == 1
    assert v("nimbus_duration_seconds_bucket", **latest, le="0.025") == 1
    assert v("nimbus_duration_seconds_bucket", **latest, le="0.05") == 2
    assert v("nimbus_duration_seconds_bucket", **latest, le="2.5") == 2
    assert v("nimbus_duration_seconds_bucket", **latest, le="5.0") == 3
    assert v("nimbus_duration_seconds_bucket", **latest, le="+Inf") == 3
    assert math.isclose(v("nimbus_duration_seconds_sum", **latest), 3.0304)
    assert v("nimbus_cold_starts_total", **latest) == 1
    assert v("nimbus_init_duration_seconds_count", function_name="fn",
             executed_version="$LATEST", kind="init") == 1
    # billed 1 + 30 + 3000 + 7 ms at 128 MB
    assert math.isclose(v("nimbus_gb_seconds_total", function_name="fn", architecture="x86_64"),
                        3038 * 128 / 1024 / 1000)
    assert v("nimbus_concurrent_executions", function_name="fn") == 0


def test_a_platform_failure_is_an_error_but_no_invocation_and_no_bill() -> None:
    metrics, hooks = Metrics(Clock()), Hooks()
    metrics.attach(hooks)
    run(hooks, finished(0.0, error="platform"))
    got = parsed(metrics)
    latest = {"function_name": "fn", "resource": "fn", "executed_version": "$LATEST"}
    assert got[("nimbus_errors_total", frozenset({**latest, "kind": "platform"}.items()))] == 1
    assert not any(value for (name, _), value in got.items() if name in (
        "nimbus_invocations_total", "nimbus_duration_seconds_count", "nimbus_gb_seconds_total"))
    [point] = metrics.points("fn", 1, CostModel(Pricing()))
    assert (point.invocations, point.errors, point.gb_seconds) == (0, 0, 0)


def test_a_cold_start_without_capacity_is_a_throttle_not_an_invocation() -> None:
    metrics, hooks = Metrics(Clock()), Hooks()
    metrics.attach(hooks)
    hooks.emit(InvocationStarted("fn", None, "$LATEST", "r"))
    hooks.emit(InvocationThrottled("fn", None, "ConcurrentInvocationLimitExceeded",
                                   started=True))
    got = parsed(metrics)
    assert got[("nimbus_throttles_total", frozenset({
        "function_name": "fn", "resource": "fn",
        "reason": "ConcurrentInvocationLimitExceeded"}.items()))] == 1
    assert not any(name == "nimbus_invocations_total" and value for (name, _), value
                   in got.items())


def test_async_figures() -> None:
    metrics, hooks = Metrics(Clock()), Hooks()
    metrics.attach(hooks)
    hooks.emit(AsyncEventReceived("fn", None, "r"))
    hooks.emit(AsyncEventStarted("fn", None, "r", 0, 2500))
    hooks.emit(AsyncEventDropped("fn", None, "r", "EventAgeExceeded", 7_000_000))
    hooks.emit(AsyncEventDeadLettered("fn", None, "r", "arn:aws:sqs:x", ok=False))
    hooks.emit(AsyncEventDeadLettered("fn", None, "r", "arn:aws:sqs:y", ok=True))
    hooks.emit(DestinationDelivered("fn", None, "r", "OnFailure", "http://x", False, 10))
    got = parsed(metrics)
    res = frozenset({"function_name": "fn", "resource": "fn"}.items())
    assert got[("nimbus_async_events_received_total", res)] == 1
    assert got[("nimbus_async_event_age_seconds_bucket", res | {("le", "1.0")})] == 0
    assert got[("nimbus_async_event_age_seconds_bucket", res | {("le", "5.0")})] == 1
    dropped = res | {("condition", "EventAgeExceeded")}
    assert got[("nimbus_async_events_dropped_total", dropped)] == 1
    assert got[("nimbus_dead_letter_errors_total", res)] == 1
    assert got[("nimbus_destination_delivery_failures_total",
                res | {("condition", "OnFailure")})] == 1


def test_a_workers_shipments_add_up_to_one_process() -> None:
    clock = Clock()
    alone, alone_hooks = Metrics(clock), Hooks()
    alone.attach(alone_hooks)
    server, worker, worker_hooks = Metrics(clock), Metrics(clock), Hooks()
    worker.attach(worker_hooks)
    server_hooks = Hooks()
    server.attach(server_hooks)
    events = [finished(d, error="function" if d > 100 else None) for d in (2, 40, 400, 9)]
    for i, event in enumerate(events):
        run(alone_hooks, event)
        run(server_hooks if i % 2 else worker_hooks, event)
        if i == 1:  # a shipment mid-way, through pickle as over the socket
            server.absorb(pickle.loads(pickle.dumps(worker.take())))
    worker.local_in_flight = lambda: {"fn": 1}  # what its environment pool says runs
    delta = worker.take()
    assert delta.in_flight == {"fn": 1}
    server.absorb(pickle.loads(pickle.dumps(delta)))
    server.remote_in_flight = lambda: delta.in_flight
    assert server.counters == alone.counters
    assert server.histograms == alone.histograms
    cost = CostModel(Pricing())
    assert server.points("fn", 2, cost) == alone.points("fn", 2, cost)
    assert server.concurrent_executions() == {"fn": 1}
    assert not worker.take()  # nothing new: nothing to ship


def test_series_by_minute_with_percentiles_and_cost() -> None:
    clock = Clock(60_000 * 1000)  # the start of minute 1000
    metrics, hooks = Metrics(clock), Hooks()
    metrics.attach(hooks)
    for d in range(1, 101):  # 1..100 ms
        run(hooks, finished(float(d), memory=1024))
    clock.ms += 60_000
    run(hooks, finished(500, error="function", memory=1024))
    hooks.emit(InvocationThrottled("fn", None, "x"))
    points = metrics.points("fn", 3, CostModel(Pricing()))
    assert [p.minute_ms for p in points] == [999 * 60_000, 1000 * 60_000, 1001 * 60_000]
    assert [p.invocations for p in points] == [0, 100, 1]
    assert [p.errors for p in points] == [0, 0, 1]
    assert [p.throttles for p in points] == [0, 0, 1]
    # Percentiles from buckets 2^(1/8) wide: at most 9% above the true value.
    assert 50 <= points[1].p50_ms <= 50 * 1.0905
    assert 99 <= points[1].p99_ms <= 99 * 1.0905
    assert points[0].p50_ms is None
    gb_s = sum(range(1, 101)) / 1000  # 1 GB
    assert math.isclose(points[1].gb_seconds, gb_s)
    assert math.isclose(points[1].cost, 100 * 0.0000002 + gb_s * 0.0000166667)


def test_the_series_is_bounded() -> None:
    clock = Clock(0)
    metrics, hooks = Metrics(clock), Hooks()
    metrics.attach(hooks)
    for minute in range(SERIES_MINUTES + 50):
        clock.ms = minute * 60_000
        run(hooks, finished(1))
    assert len(metrics.series["fn"]) <= SERIES_MINUTES
    assert min(metrics.series["fn"]) > 49


def test_fine_buckets() -> None:
    assert fine_bucket(0.3) == 0 and fine_upper_ms(0) == 1
    for ms in (1.5, 7, 100, 899_999):
        bucket = fine_bucket(ms)
        assert fine_upper_ms(bucket - 1) < ms <= fine_upper_ms(bucket) * (1 + 1e-12)
    assert percentile({}, 0.5) is None


def test_event_source_mapping_figures() -> None:
    mapping = MappingFigures("u-1", "fn", {"received": 10, "failed": 2, "filtered": 3,
                                           "batches": 4}, oldest_age_ms=1500)
    got = parsed(Metrics(Clock()), [mapping])
    labels = frozenset({"uuid": "u-1", "function_name": "fn"}.items())
    assert got[("nimbus_event_source_records_received_total", labels)] == 10
    assert got[("nimbus_event_source_records_failed_total", labels)] == 2
    assert got[("nimbus_event_source_records_filtered_total", labels)] == 3
    assert got[("nimbus_event_source_batches_total", labels)] == 4
    assert got[("nimbus_event_source_iterator_age_seconds", labels)] == 1.5


def test_the_grafana_dashboard_uses_metrics_nimbus_exposes() -> None:
    import json
    import re
    from pathlib import Path

    dashboard = Path(__file__).parents[2] / "contrib" / "grafana" / "nimbus.json"
    used = set(re.findall(r"nimbus_[a-z_]+", json.dumps(json.loads(dashboard.read_text()))))
    text = Metrics(Clock()).exposition([MappingFigures("u", "fn", {}, 0)]).decode()
    exposed = set(re.findall(r"^# TYPE (nimbus_[a-z_]+) ", text, re.M))
    assert used and exposed
    for name in used:
        base = re.sub(r"_(bucket|total)$", "", name)
        assert base in exposed or name in exposed, name
