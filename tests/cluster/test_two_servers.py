"""Two nimbus servers as the front ends of one installation: one PostgreSQL, one NATS
JetStream queue, a data dir each. Any server serves any request; an async event accepted
by either runs once (whichever pulls it); a server starting up leaves the other's
in-flight events alone; a kill -9 of one loses no accepted event."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.test_durability import alive
from tests.cluster.servers import front_end, ran, serving, shared_installation
from tests.conftest import ROLE, make_zip
from tests.nimbus_process import NimbusProcess
from tests.sink import Sink

pytestmark = [pytest.mark.sandbox, pytest.mark.postgres, pytest.mark.broker("nats")]

RECORDING = make_zip({"app.py": "def handler(e, c):\n    return e\n"})
# Long enough that the events are still running when the second server has started.
SLOW_S = 20
SLOW = make_zip({"app.py": f"import time\n\ndef handler(e, c):\n    time.sleep({SLOW_S})\n"
                           "    return e\n"})  # fmt: skip


@pytest.fixture
def installation(tmp_path: Path) -> Iterator[dict[str, str]]:
    with shared_installation(tmp_path, extra={"NIMBUS_RETRY_BASE_SECONDS": "0.05"}) as env:
        yield env


@pytest.fixture
def two(tmp_path: Path, installation: dict[str, str]) -> Iterator[list[NimbusProcess]]:
    servers = [front_end(tmp_path, name, installation) for name in ("a", "b")]
    with serving(servers):
        yield servers


def create(server: NimbusProcess, name: str, code: bytes, sink: Sink | None) -> None:
    lam = server.client()
    lam.create_function(FunctionName=name, Runtime="python3.12", Role=ROLE, Timeout=60,
                        Handler="app.handler", Code={"ZipFile": code})  # fmt: skip
    if sink is not None:
        lam.put_function_event_invoke_config(
            FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": sink.url}}
        )


def ids(records: list[dict]) -> Counter[int]:
    return Counter(r["requestPayload"]["id"] for r in records)


def post_events(url: str, numbers: range, **fields: object) -> set[int]:
    """Queue an async event ``{"id": i, **fields}`` for each number; those accepted."""
    accepted = set()
    with httpx.Client(timeout=30) as http:
        for i in numbers:
            r = http.post(url, content=json.dumps({"id": i, **fields}),
                          headers={"X-Amz-Invocation-Type": "Event"})  # fmt: skip
            if r.status_code == 202:
                accepted.add(i)
    return accepted


def depth(server: NimbusProcess) -> int:
    return int(httpx.get(f"{server.endpoint}/_nimbus/queue").json()["Queue"]["depth"])


def test_a_function_created_on_one_server_runs_on_the_other(
    two: list[NimbusProcess], sink: Sink
) -> None:
    a, b = two
    create(a, "hello", RECORDING, sink)
    lam_b = b.client()
    found = lam_b.get_function(FunctionName="hello")
    assert found["Configuration"]["State"] == "Active"
    # B's download link serves the package A received, before anything ran on B.
    assert httpx.get(found["Code"]["Location"], timeout=30).content == RECORDING
    # Behind one load balancer, a link one server made is served by another.
    on_a = found["Code"]["Location"].replace(b.endpoint, a.endpoint)
    assert on_a != found["Code"]["Location"]
    assert httpx.get(on_a, timeout=30).content == RECORDING
    reply = lam_b.invoke(FunctionName="hello", Payload=b'{"id": -1}')
    assert reply["StatusCode"] == 200 and "FunctionError" not in reply
    assert json.loads(reply["Payload"].read()) == {"id": -1}
    assert lam_b.invoke(FunctionName="hello", InvocationType="Event",
                        Payload=b'{"id": 7}')["StatusCode"] == 202  # fmt: skip
    sink.wait_until(lambda rs: 7 in ids(rs))


def test_any_server_serves_the_control_plane_and_sync_invokes(
    two: list[NimbusProcess], sink: Sink
) -> None:
    a, b = two
    create(a, "hello", RECORDING, None)
    lam_a, lam_b = a.client(), b.client()
    assert lam_b.get_function(FunctionName="hello")["Configuration"]["Handler"] == "app.handler"
    lam_b.update_function_configuration(FunctionName="hello", Environment={
        "Variables": {"GREETING": "hi"}})  # fmt: skip
    lam_a.get_waiter("function_updated_v2").wait(FunctionName="hello")
    # Sealed with the installation's one key on B, opened on A.
    config = lam_a.get_function_configuration(FunctionName="hello")
    assert config["Environment"]["Variables"] == {"GREETING": "hi"}
    for lam, n in ((lam_a, 1), (lam_b, 2), (lam_a, 3)):
        reply = lam.invoke(FunctionName="hello", Payload=json.dumps({"id": n}))
        assert reply["StatusCode"] == 200 and "FunctionError" not in reply
        assert json.loads(reply["Payload"].read()) == {"id": n}
    assert [f["FunctionName"] for f in lam_b.list_functions()["Functions"]] == ["hello"]


def test_async_events_accepted_by_either_server_run_exactly_once(
    two: list[NimbusProcess], sink: Sink
) -> None:
    a, b = two
    create(a, "rec", RECORDING, sink)
    total = 400
    urls = [f"{s.endpoint}/2015-03-31/functions/rec/invocations" for s in two]
    accepted: set[int] = set()
    def send(k: int) -> None:
        accepted.update(post_events(urls[k % 2], range(k, total, 8)))

    threads = [threading.Thread(target=send, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert accepted == set(range(total))
    records = sink.wait_until(lambda rs: set(ids(rs)) >= accepted, timeout=180)
    assert depth(a) == 0 and depth(b) == 0
    counts = ids(sink.received)
    assert [i for i, n in counts.items() if n > 1] == []  # each ran once
    assert len(records) >= total


def running(server: NimbusProcess, function: str) -> int:
    """The server's invocations of ``function`` running now (its Prometheus gauge)."""
    text = httpx.get(f"{server.endpoint}/metrics").text
    line = f'nimbus_concurrent_executions{{function_name="{function}"}} '
    return sum(int(float(row[len(line):])) for row in text.splitlines() if row.startswith(line))


def test_a_server_starting_up_leaves_the_others_in_flight_events_alone(
    tmp_path: Path, installation: dict[str, str], sink: Sink
) -> None:
    # A runs n events at once and no more: it holds them all, pulls no more meanwhile,
    # and B has nothing of its own to run.
    n = 8
    env = {**installation, "NIMBUS_ASYNC_PARALLELISM": str(n)}
    a, b = (front_end(tmp_path, name, env) for name in ("a", "b"))
    try:
        a.start()
        b.start()
        create(a, "slow", SLOW, sink)
        b.stop()  # B's node keeps the package on its disk for its restart
        url = f"{a.endpoint}/2015-03-31/functions/slow/invocations"
        assert post_events(url, range(n)) == set(range(n))
        deadline = time.monotonic() + 60
        while running(a, "slow") < n:
            assert time.monotonic() < deadline, "A never ran all the events at once"
            time.sleep(0.05)
        # B's start-up leaves A's deliveries alone (test_nats.py pins the recovery down;
        # here A also leases ahead, so it might re-take what a re-created consumer freed).
        b.start()
        assert running(a, "slow") == n  # B's start-up came while they were in flight
        sink.wait_until(lambda rs: set(ids(rs)) >= set(range(n)), timeout=180)
        assert running(b, "slow") == 0
        assert httpx.get(f"{b.endpoint}/_nimbus/queue").json()["Dispatcher"].get(
            "succeeded", 0) == 0  # fmt: skip
        assert depth(a) == 0
        assert [i for i, k in ids(sink.received).items() if k > 1] == []
    finally:
        a.stop()
        b.stop()


def test_kill_9_of_one_server_loses_no_accepted_event(
    two: list[NimbusProcess], sink: Sink
) -> None:
    a, b = two
    create(a, "rec", RECORDING, sink)
    total, kill_after = 1200, 300
    urls = [f"{s.endpoint}/2015-03-31/functions/rec/invocations" for s in two]
    accepted: set[int] = set()
    unanswered: set[int] = set()
    lock = threading.Lock()
    enough = threading.Event()

    def send(url: str, numbers: range) -> None:
        with httpx.Client(timeout=30) as http:
            for i in numbers:
                try:
                    r = http.post(url, content=json.dumps({"id": i}),
                                  headers={"X-Amz-Invocation-Type": "Event"})  # fmt: skip
                except httpx.HTTPError:
                    with lock:
                        unanswered.add(i)
                    return  # that server is gone
                with lock:
                    (accepted if r.status_code == 202 else unanswered).add(i)
                    if len(accepted) >= kill_after:
                        enough.set()

    threads = [threading.Thread(target=send, args=(urls[k % 2], range(k, total, 8)))
               for k in range(8)]  # fmt: skip
    for t in threads:
        t.start()
    assert enough.wait(120), "the servers accepted too few events"
    workers = a.workers()
    a.stop(signal.SIGKILL)
    for t in threads:
        t.join()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers):  # A's async workers die with it
        assert time.monotonic() < deadline, "an async worker outlived its server"
        time.sleep(0.05)
    assert kill_after <= len(accepted) < total
    # B takes over what A held once JetStream's ack wait has passed (no restart of A).
    records = sink.wait_until(lambda rs: set(ids(rs)) >= accepted, timeout=240)
    executed = set(ids(records))
    assert executed - accepted <= unanswered  # committed by A, its answer lost
    assert depth(b) == 0


def test_an_http_api_changed_through_one_server_is_served_so_by_the_other(
    two: list[NimbusProcess],
) -> None:
    a, b = two
    create(a, "hello", RECORDING, None)
    arn = "arn:aws:lambda:us-east-1:000000000000:function:hello"
    gw_a = a.client("apigatewayv2")
    api_id = gw_a.create_api(Name="h", ProtocolType="HTTP", Target=arn,
                             RouteKey="GET /open")["ApiId"]
    url_b = f"{b.endpoint}/execute-api/{api_id}/open"
    assert httpx.get(url_b, timeout=30).status_code == 200  # B caches the route table
    (route,) = gw_a.get_routes(ApiId=api_id)["Items"]
    gw_a.delete_route(ApiId=api_id, RouteId=route["RouteId"])
    # B hears of A's commit (store/change_feed.py): the route is gone there too.
    deadline = time.monotonic() + 5
    while (status := httpx.get(url_b, timeout=30).status_code) != 404:
        assert status == 200 and time.monotonic() < deadline, status
        time.sleep(0.05)


def test_two_servers_on_one_host_share_one_port(tmp_path: Path,
                                                installation: dict[str, str]) -> None:
    a, b = (front_end(tmp_path, name, installation) for name in ("a", "b"))
    b.port = a.port
    for server in (a, b):
        server.args += ["--cluster", "--reuse-port"]
    with serving([a, b]):
        lam = a.client()
        create(a, "hello", RECORDING, None)
        # New connections, one per invoke: the kernel spreads them over both servers.
        for n in range(30):
            with httpx.Client(timeout=30) as http:
                r = http.post(f"{a.endpoint}/2015-03-31/functions/hello/invocations",
                              content=json.dumps({"id": n}))
            assert r.status_code == 200 and r.json() == {"id": n}
        # Each /metrics read on a fresh connection reaches one of the two, whichever the
        # kernel picks (both endpoints are the one port): the counts seen are the two
        # servers' own, which add up to 30, both > 0 (one value seen: 15 each).
        seen = {ran(a, "hello") for _ in range(20)}
        assert seen == {15.0} or (len(seen) == 2 and sum(seen) == 30 and min(seen) > 0), seen
        assert lam.get_function(FunctionName="hello")["Configuration"]["State"] == "Active"
        # A server not started to share it is refused the port, saying why.
        alone = subprocess.run(
            [sys.executable, "-m", "nimbus", "up", "--cluster", "--port", str(a.port),
             "--data-dir", str(tmp_path / "alone")], env={**os.environ, **installation},
            capture_output=True, text=True, timeout=60, check=False)
        assert alone.returncode == 2, alone.stdout + alone.stderr
        assert "is in use" in alone.stderr and "--reuse-port" in alone.stderr
