"""Metrics and cost as a user sees them: sync invokes (an error, throttles), async
invokes run by a worker process with retries and destinations, then ``GET /metrics``
(Prometheus text) counts exactly that, durations in the buckets their REPORT lines put
them in, and the JSON series and cost endpoints agree with a hand calculation."""

from __future__ import annotations

import base64
import json
import math
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import CLUSTER, ROLE, live_server, make_zip
from tests.nimbus_process import NimbusProcess, free_port
from tests.sink import LOCAL_WEBHOOKS

pytestmark = pytest.mark.sandbox

APP = """
import time
def handler(event, context):
    if event.get("fail"):
        raise RuntimeError("asked to fail")
    if event.get("sleep"):
        time.sleep(event["sleep"])
    return {"ok": event.get("id")}
"""
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NimbusProcess]:
    env = {
        "NIMBUS_ASYNC_WORKERS": "1",
        "NIMBUS_RETRY_BASE_SECONDS": "0.05",
        "NIMBUS_THROTTLE_DELAY_SECONDS": "0.1",
        **LOCAL_WEBHOOKS,  # its failing webhook fails to connect, not by policy
    }
    with live_server(tmp_path_factory.mktemp("metrics") / "data", env) as proc:
        yield proc


def create(lam: Any, name: str, memory: int = 256, **kw: Any) -> None:
    lam.create_function(FunctionName=name, Runtime="python3.12", Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": make_zip({"app.py": APP})}, MemorySize=memory, **kw)


def samples(server: NimbusProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = httpx.get(f"{server.endpoint}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def total(found: dict, name: str, **labels: str) -> float:
    """The sum over every series of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in found.items() if n == name and want <= ls)


def report(tail: str) -> dict[str, float]:
    """Duration, Billed Duration (ms) and whether there was an Init Duration."""
    text = base64.b64decode(tail).decode()
    duration = float(re.search(r"\tDuration: ([\d.]+) ms", text)[1])  # type: ignore[index]
    billed = int(re.search(r"Billed Duration: (\d+) ms", text)[1])  # type: ignore[index]
    return {"duration": duration, "billed": billed, "cold": "Init Duration" in text}


def wait_for(check: Any, timeout: float = 20.0) -> Any:
    """Poll ``check`` until it returns something true (the worker ships every 0.5 s)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


@pytest.mark.skipif(
    CLUSTER, reason="counts invocations on the server's /metrics; in cluster mode they run on "
    "the worker node, and each node's /metrics counts what it ran itself (README)")
def test_sync_invocations_errors_throttles_and_durations(server: NimbusProcess) -> None:
    lam = server.client()
    started = time.time()
    create(lam, "m-sync")
    lam.publish_version(FunctionName="m-sync")
    lam.create_alias(FunctionName="m-sync", Name="live", FunctionVersion="1")
    events: list[tuple[dict[str, Any], str | None]] = [
        ({"id": 1}, None), ({"id": 2}, None), ({"sleep": 0.3}, None), ({"fail": True}, None),
        ({"id": 3}, "live"), ({"id": 4}, "live"),
    ]
    reports: dict[str | None, list[dict[str, float]]] = {None: [], "live": []}
    for event, qualifier in events:
        kw = {"Qualifier": qualifier} if qualifier else {}
        out = lam.invoke(FunctionName="m-sync", Payload=json.dumps(event), LogType="Tail", **kw)
        assert ("FunctionError" in out) == bool(event.get("fail"))
        reports[qualifier].append(report(out["LogResult"]))
    create(lam, "m-throttled")
    lam.put_function_concurrency(FunctionName="m-throttled", ReservedConcurrentExecutions=0)
    for _ in range(2):
        with pytest.raises(ClientError) as exc:
            lam.invoke(FunctionName="m-throttled", Payload=b"{}")
        assert exc.value.response["Error"]["Code"] == "TooManyRequestsException"

    found = samples(server)
    latest = {"function_name": "m-sync", "resource": "m-sync", "executed_version": "$LATEST"}
    live = {"function_name": "m-sync", "resource": "m-sync:live", "executed_version": "1"}
    assert value(found, "nimbus_invocations_total", **latest) == 4
    assert value(found, "nimbus_invocations_total", **live) == 2
    assert value(found, "nimbus_errors_total", **latest, kind="function") == 1
    assert total(found, "nimbus_errors_total", function_name="m-sync") == 1
    assert value(found, "nimbus_throttles_total", function_name="m-throttled",
                 resource="m-throttled",
                 reason="ReservedFunctionConcurrentInvocationLimitExceeded") == 2
    assert total(found, "nimbus_invocations_total", function_name="m-throttled") == 0
    for labels, runs in ((latest, reports[None]), (live, reports["live"])):
        durations = [r["duration"] / 1000 for r in runs]
        assert value(found, "nimbus_duration_seconds_count", **labels) == len(runs)
        for bound in DURATION_BUCKETS:
            # REPORT shows 2 decimals: skip the (unlikely) run within 0.01 ms of a bound.
            if any(abs(d - bound) < 1e-5 for d in durations):
                continue
            assert value(found, "nimbus_duration_seconds_bucket", **labels,
                         le=repr(bound)) == sum(d <= bound for d in durations), bound
        assert math.isclose(value(found, "nimbus_duration_seconds_sum", **labels),
                            sum(durations), abs_tol=1e-4 * len(runs))
        assert value(found, "nimbus_cold_starts_total", **labels) == sum(
            r["cold"] for r in runs)
    slow = value(found, "nimbus_duration_seconds_bucket", **latest, le="0.5") - value(
        found, "nimbus_duration_seconds_bucket", **latest, le="0.25")
    assert slow == 1  # the 0.3 s sleep
    billed = sum(r["billed"] for r in reports[None] + reports["live"])
    gb_s = billed * 256 / 1024 / 1000
    assert math.isclose(value(found, "nimbus_gb_seconds_total", function_name="m-sync",
                              architecture="x86_64"), gb_s, rel_tol=1e-9)
    assert value(found, "nimbus_concurrent_executions", function_name="m-sync") == 0

    series = httpx.get(f"{server.endpoint}/_nimbus/metrics",
                       params={"FunctionName": "m-sync", "Minutes": "10"}).json()
    points = series["Functions"][0]["Points"]
    assert len(points) == 10
    assert sum(p["Invocations"] for p in points) == 6
    assert sum(p["Errors"] for p in points) == 1
    assert max(p["DurationP99"] or 0 for p in points) >= 300
    # The range's own percentiles: one distribution of the six (one slept 300 ms).
    summary = series["Functions"][0]
    assert summary["DurationP99"] >= 300 and summary["DurationP50"] < 300
    throttled = httpx.get(f"{server.endpoint}/_nimbus/metrics",
                          params={"FunctionName": "m-throttled", "Minutes": "10"}).json()
    assert sum(p["Throttles"] for p in throttled["Functions"][0]["Points"]) == 2

    cost = httpx.get(f"{server.endpoint}/_nimbus/cost",
                     params={"Since": str(int(started) - 60), "FunctionName": "m-sync"}).json()
    [row] = cost["Functions"]
    assert row["Requests"] == 6
    assert math.isclose(row["GBSeconds"], gb_s, rel_tol=1e-9)
    by_hand = 6 * 0.20 / 1_000_000 + gb_s * 0.0000166667
    assert math.isclose(row["TotalCost"], by_hand, rel_tol=1e-9)


def test_bad_queries_are_refused(server: NimbusProcess) -> None:
    r = httpx.get(f"{server.endpoint}/_nimbus/cost", params={"Since": "yesterday"})
    assert r.status_code == 400 and "ISO 8601" in r.json()["message"]
    r = httpx.get(f"{server.endpoint}/_nimbus/metrics", params={"Minutes": "0"})
    assert r.status_code == 400
    r = httpx.get(f"{server.endpoint}/_nimbus/metrics", params={"FunctionName": "nope"})
    assert r.status_code == 404


@pytest.mark.skipif(
    CLUSTER, reason="counts invocations on the server's /metrics; in cluster mode they run on "
    "the worker node, and each node's /metrics counts what it ran itself (README)")
def test_async_invocations_in_a_worker_process(server: NimbusProcess) -> None:
    lam = server.client()
    create(lam, "m-async")
    create(lam, "m-dest")
    closed = f"http://127.0.0.1:{free_port()}/gone"  # nobody listens: delivery fails
    lam.put_function_event_invoke_config(
        FunctionName="m-async",
        MaximumRetryAttempts=1,
        DestinationConfig={
            "OnSuccess": {"Destination": "arn:aws:lambda:us-east-1:000000000000:function:m-dest"},
            "OnFailure": {"Destination": closed},
        },
    )
    for event in ({"id": 1}, {"id": 2}, {"id": 3}, {"fail": True}):
        out = lam.invoke(FunctionName="m-async", InvocationType="Event",
                         Payload=json.dumps(event))
        assert out["StatusCode"] == 202

    def settled() -> dict | None:
        found = samples(server)
        done = (total(found, "nimbus_invocations_total", function_name="m-dest") == 3
                and total(found, "nimbus_async_events_dropped_total",
                          function_name="m-async") == 1
                # the webhook is tried 3 times (1.4 s) before the delivery counts as failed
                and total(found, "nimbus_destination_delivery_failures_total",
                          function_name="m-async") == 1)
        return found if done else None

    found = wait_for(settled)
    assert found, "the worker's counts never reached /metrics"
    res = {"function_name": "m-async", "resource": "m-async"}
    assert value(found, "nimbus_async_events_received_total", **res) == 4
    assert value(found, "nimbus_invocations_total", **res, executed_version="$LATEST") == 5
    assert value(found, "nimbus_errors_total", **res, executed_version="$LATEST",
                 kind="function") == 2
    assert value(found, "nimbus_async_events_retried_total", **res) == 1
    assert value(found, "nimbus_async_events_dropped_total", **res,
                 condition="RetriesExhausted") == 1
    assert value(found, "nimbus_async_event_age_seconds_count", **res) == 5
    assert value(found, "nimbus_destination_deliveries_total", **res, condition="OnSuccess") == 3
    assert value(found, "nimbus_destination_delivery_failures_total", **res,
                 condition="OnFailure") == 1
    # OnSuccess records are async events of m-dest, queued by the worker.
    assert value(found, "nimbus_async_events_received_total", function_name="m-dest",
                 resource="m-dest") == 3
    assert total(found, "nimbus_concurrent_executions") == 0
    # The server ran none of it: the worker's counts crossed the socket.
    queue = httpx.get(f"{server.endpoint}/_nimbus/queue").json()
    assert queue["Dispatcher"]["succeeded"] >= 6


@pytest.mark.skipif(
    CLUSTER, reason="reads the server's gauge; in cluster mode invocations run on the worker "
    "node, and each node's /metrics counts what it ran itself (README)")
def test_concurrent_executions_counts_what_runs_now_in_every_process(
    server: NimbusProcess,
) -> None:
    """Lambda's ConcurrentExecutions: a sync invocation running in the server and an async
    one running in the worker process are both in the gauge while they run (cold starts
    included), and gone from it once they end."""
    lam = server.client()
    create(lam, "m-held")
    held = threading.Thread(target=lambda: lam.invoke(
        FunctionName="m-held", Payload=json.dumps({"sleep": 4})))
    held.start()
    lam.invoke(FunctionName="m-held", InvocationType="Event", Payload=json.dumps({"sleep": 4}))
    both = wait_for(lambda: value(samples(server), "nimbus_concurrent_executions",
                                  function_name="m-held") == 2)
    held.join()
    assert both, "the gauge never showed both invocations running"
    assert wait_for(lambda: value(samples(server), "nimbus_concurrent_executions",
                                  function_name="m-held") == 0)
