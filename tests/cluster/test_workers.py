"""Worker nodes: `nimbus worker` processes run what a `nimbus up --cluster` server would,
placed by warm environments and free memory; the server itself runs nothing while one
is alive; a killed worker is counted out and its sync invocation gets a clear error."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.cluster.servers import Cluster, front_end, ran, serving, shared_installation
from tests.conftest import ROLE, make_zip
from tests.sandbox.test_capacity import HELD, Barrier
from tests.sink import Sink

pytestmark = [pytest.mark.sandbox, pytest.mark.postgres, pytest.mark.broker("nats")]

ECHO = make_zip({"app.py": "def handler(e, c):\n    return e\n"})


def test_workers_run_what_the_server_is_sent_warm_ones_first(cluster: Cluster) -> None:
    lam = cluster.server.client()
    lam.create_function(FunctionName="echo", Runtime="python3.12", Role=ROLE,
                        Handler="app.handler", Code={"ZipFile": ECHO})
    first = lam.invoke(FunctionName="echo", Payload=b'{"n": 0}', LogType="Tail")
    assert json.loads(first["Payload"].read()) == {"n": 0}
    assert "REPORT RequestId" in base64.b64decode(first["LogResult"]).decode()
    nodes = cluster.until(lambda ns: any(n["warm"].get("echo:$LATEST") for n in ns),
                          "the warm environment announced")
    (warm,) = [n for n in nodes if n["warm"].get("echo:$LATEST")]
    for n in range(1, 11):  # one after another: the warm environment is idle each time
        reply = lam.invoke(FunctionName="echo", Payload=json.dumps({"n": n}))
        assert json.loads(reply["Payload"].read()) == {"n": n}
    counts = {w.endpoint: ran(w, "echo") for w in cluster.workers}
    assert ran(cluster.server, "echo") == 0  # the server ran none itself
    assert counts[warm["url"]] == 11, (counts, warm)
    assert sorted(counts.values()) == [0, 11]


def test_async_events_and_function_errors_come_back_through_the_server(
    cluster: Cluster,
) -> None:
    lam = cluster.server.client()
    code = make_zip({"app.py": "def handler(e, c):\n    if e.get('fail'):\n"
                               "        raise ValueError('asked to')\n    return e\n"})
    lam.create_function(FunctionName="f", Runtime="python3.12", Role=ROLE,
                        Handler="app.handler", Code={"ZipFile": code})
    failed = lam.invoke(FunctionName="f", Payload=b'{"fail": true}')
    assert failed["FunctionError"] == "Unhandled"
    assert json.loads(failed["Payload"].read())["errorMessage"] == "asked to"
    sink = Sink()
    try:
        lam.put_function_event_invoke_config(
            FunctionName="f", DestinationConfig={"OnSuccess": {"Destination": sink.url}})
        for n in range(20):
            lam.invoke(FunctionName="f", InvocationType="Event", Payload=json.dumps({"id": n}))
        got = sink.wait_until(lambda rs: len(rs) >= 20)
    finally:
        sink.close()
    assert sorted(r["responsePayload"]["id"] for r in got) == list(range(20))
    assert ran(cluster.server, "f") == 0
    assert sum(ran(w, "f") for w in cluster.workers) == 21


@pytest.mark.workers(3)
def test_a_throttle_on_a_worker_is_lambdas_429_at_the_server(cluster: Cluster) -> None:
    lam = cluster.server.client()
    lam.create_function(FunctionName="held", Runtime="python3.12", Role=ROLE, Timeout=60,
                        Handler="app.handler", Code={"ZipFile": make_zip({"app.py": HELD})})
    lam.put_function_concurrency(FunctionName="held", ReservedConcurrentExecutions=2)

    async def scenario() -> tuple[list[httpx.Response], int]:
        barrier = Barrier()
        body = json.dumps({"barrier": await barrier.start()}).encode()
        url = f"{cluster.server.endpoint}/2015-03-31/functions/held/invocations"
        async with httpx.AsyncClient(timeout=120) as client:
            calls = [asyncio.ensure_future(client.post(url, content=body)) for _ in range(6)]
            while len(barrier.held) + sum(c.done() for c in calls) < len(calls):
                await asyncio.sleep(0.05)
            running = len(barrier.held)
            barrier.release()
            return list(await asyncio.gather(*calls)), running

    responses, running = asyncio.run(scenario())
    assert running == 2  # across three workers: the reservation is the cluster's
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 200, 429, 429, 429, 429], [r.text for r in responses]
    throttled = [r for r in responses if r.status_code == 429]
    assert {r.json()["Reason"] for r in throttled} == {
        "ReservedFunctionConcurrentInvocationLimitExceeded"}
    assert {r.headers["x-amzn-errortype"].split(":")[0] for r in throttled} == {
        "TooManyRequestsException"}


def test_a_killed_worker_is_counted_out_and_its_invocation_gets_a_clear_error(
    cluster: Cluster,
) -> None:
    lam = cluster.server.client()
    lam.create_function(FunctionName="held", Runtime="python3.12", Role=ROLE, Timeout=60,
                        Handler="app.handler", Code={"ZipFile": make_zip({"app.py": HELD})})
    lam.create_function(FunctionName="echo", Runtime="python3.12", Role=ROLE,
                        Handler="app.handler", Code={"ZipFile": ECHO})
    by_url = {w.endpoint: w for w in cluster.workers}

    async def scenario() -> httpx.Response:
        barrier = Barrier()
        body = json.dumps({"barrier": await barrier.start()}).encode()
        url = f"{cluster.server.endpoint}/2015-03-31/functions/held/invocations"
        async with httpx.AsyncClient(timeout=120) as client:
            call = asyncio.ensure_future(client.post(url, content=body))
            while not barrier.held:
                assert not call.done(), call.result().text
                await asyncio.sleep(0.05)
            busy = await asyncio.to_thread(
                cluster.until, lambda ns: any(n["in_flight"] for n in ns), "busy announced")
            (node,) = [n for n in busy if n["in_flight"]]
            by_url[node["url"]].stop(signal.SIGKILL)
            return await call

    lost = asyncio.run(scenario())
    assert lost.status_code == 502, lost.text
    assert lost.headers["x-amzn-errortype"].startswith("ServiceException")
    assert "stopped answering" in lost.json()["Message"]
    # Counted out within a few seconds; invokes meanwhile run on the survivor.
    for n in range(5):
        reply = lam.invoke(FunctionName="echo", Payload=json.dumps({"n": n}))
        assert json.loads(reply["Payload"].read()) == {"n": n}
    (left,) = cluster.until(lambda ns: len(ns) == 1, "the killed worker counted out")
    survivor = by_url[left["url"]]
    assert survivor.proc is not None and survivor.proc.poll() is None
    assert ran(survivor, "echo") == 5 and ran(cluster.server, "echo") == 0


def test_code_updated_through_the_server_runs_on_the_workers(cluster: Cluster) -> None:
    lam = cluster.server.client()

    def code(v: str) -> bytes:
        return make_zip({"app.py": f"def handler(e, c):\n    return {v!r}\n"})

    lam.create_function(FunctionName="v", Runtime="python3.12", Role=ROLE,
                        Handler="app.handler", Code={"ZipFile": code("1")})
    assert json.loads(lam.invoke(FunctionName="v")["Payload"].read()) == "1"
    lam.update_function_code(FunctionName="v", ZipFile=code("2"))
    lam.get_waiter("function_updated_v2").wait(FunctionName="v")
    # The worker that ran "1" hears of the server's commit through PostgreSQL
    # (store/change_feed.py) and drops its cached function and warm environment.
    deadline = time.monotonic() + 5
    while (got := json.loads(lam.invoke(FunctionName="v")["Payload"].read())) != "2":
        assert got == "1" and time.monotonic() < deadline, got
        time.sleep(0.05)


def test_kill_9_of_a_worker_under_async_load_loses_no_event(tmp_path: Path) -> None:
    """Events the killed worker was running for the server go back to the server's queue
    (a lost node is nimbus's passing trouble, not the event's failure); those it had
    pulled itself come back after the ack wait. Every accepted event runs."""
    extra = {"NIMBUS_CLUSTER": "1", "NIMBUS_ASYNC_WORKERS": "0",
             "NIMBUS_THROTTLE_DELAY_SECONDS": "0.05"}
    sink = Sink()
    with shared_installation(tmp_path, ack_wait=2, extra=extra) as env:
        server = front_end(tmp_path, "server", env)
        workers = [front_end(tmp_path, f"w{i}", env) for i in (1, 2)]
        for worker in workers:
            worker.command = "worker"
        with serving([server, *workers]):
            Cluster(server, workers).until(lambda nodes: len(nodes) == 2, "both announced")
            lam = server.client()
            code = make_zip({"app.py": "import time\n\ndef handler(e, c):\n"
                                       "    time.sleep(0.05)\n    return e\n"})
            lam.create_function(FunctionName="f", Runtime="python3.12", Role=ROLE,
                                Handler="app.handler", Code={"ZipFile": code})
            lam.put_function_event_invoke_config(
                FunctionName="f", DestinationConfig={"OnSuccess": {"Destination": sink.url}})
            total = 200
            for n in range(total):
                lam.invoke(FunctionName="f", InvocationType="Event",
                           Payload=json.dumps({"id": n}))
                if n == 60:
                    sink.wait_until(lambda rs: len(rs) >= 10)
                    workers[0].stop(signal.SIGKILL)
            got = sink.wait_until(
                lambda rs: {r["responsePayload"]["id"] for r in rs} >= set(range(total)),
                timeout=180)
    sink.close()
    assert {r["responsePayload"]["id"] for r in got} == set(range(total))
    failures = [r for r in got if r.get("requestContext", {}).get("condition") != "Success"]
    assert not failures, failures[:3]


def test_the_servers_figures_and_traces_include_what_the_workers_ran(
    cluster: Cluster,
) -> None:
    lam = cluster.server.client()
    code = make_zip({"app.py": "def handler(e, c):\n    if e.get('fail'):\n"
                               "        raise ValueError('asked to')\n    return e\n"})
    lam.create_function(FunctionName="seen", Runtime="python3.12", Role=ROLE,
                        Handler="app.handler", Code={"ZipFile": code},
                        TracingConfig={"Mode": "Active"})
    for n in range(6):
        lam.invoke(FunctionName="seen", Payload=json.dumps({"fail": n == 5}))
    assert ran(cluster.server, "seen") == 0  # all six ran on the workers
    base = cluster.server.endpoint

    def figures() -> tuple[int, int, int, int]:
        points = httpx.get(f"{base}/_nimbus/metrics", params={"FunctionName": "seen"},
                           timeout=10).json()["Functions"][0]["Points"]
        cost = httpx.get(f"{base}/_nimbus/cost", params={"FunctionName": "seen"},
                         timeout=10).json()["Functions"]
        traces = httpx.get(f"{base}/_nimbus/traces", params={"FunctionName": "seen"},
                           timeout=10).json()["TraceSummaries"]
        return (sum(p["Invocations"] for p in points), sum(p["Errors"] for p in points),
                cost[0]["Requests"] if cost else 0, len(traces))

    assert figures() == (6, 1, 6, 6)
    (trace,) = httpx.get(f"{base}/_nimbus/traces", params={"Limit": 1},
                         timeout=10).json()["TraceSummaries"]
    got = httpx.get(f"{base}/_nimbus/traces/{trace['Id']}", timeout=10).json()
    assert got["Traces"][0]["Id"] == trace["Id"]
    # Workers that no longer answer are left out of an answer, which still comes.
    for worker in cluster.workers:
        worker.stop(signal.SIGKILL)
    assert figures() == (0, 0, 0, 0)
