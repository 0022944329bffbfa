"""An async worker process (``python -m nimbus.workers.worker``) against a queue server in
this process, with isolation "process" and no function ever started: nothing needs root.

Covers: the worker dispatches events it leases through the server, writes their
outcome (a dead letter) to the shared database, acknowledges them, and reports its
counters; it hears of metadata changes the server commits (its caches drop them); it
stops cleanly on SIGTERM and when the server goes away, and fails when there is no
server; it dies with its parent (PR_SET_PDEATHSIG); and ``_report`` sends counters only
when they change. Running functions in a worker needs sandboxes and is left to the
integration tests. Waiting on another process is done by polling (``until``).
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nimbus.clock import now_ms
from nimbus.models import EventInvokeConfig, LayerRef
from nimbus.observe.metrics import Metrics
from nimbus.workers import worker as worker_module
from tests.fakes import WAIT_S, QueueHost, create_function, open_queue_host, until

LAYER = "arn:aws:lambda:us-east-1:000000000000:layer:old:1"
# A parent that starts a child which arms PR_SET_PDEATHSIG, says the child's pid, and dies.
ORPHAN = """
import subprocess, sys, os
child = subprocess.Popen([sys.executable, "-c", (
    "from nimbus.workers.worker import die_with_parent\\n"
    "import sys, time\\n"
    "die_with_parent()\\n"
    "print('armed', flush=True)\\n"
    "time.sleep(60)\\n"
)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
assert child.stdout.readline() == "armed\\n"
print(child.pid, flush=True)
os._exit(0)
"""


@pytest.fixture
async def host(tmp_path: Path) -> AsyncIterator[QueueHost]:
    host = await open_queue_host(tmp_path / "data")
    yield host
    await host.close()


@pytest.fixture
async def worker(host: QueueHost) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await host.spawn_worker()
    await until(lambda: host.server.workers == 1 or process.returncode is not None)
    assert process.returncode is None, (await process.communicate())[1].decode()
    yield process
    if process.returncode is None:
        process.kill()
        await process.communicate()


async def test_a_worker_dispatches_events_and_reports_its_counters(
    host: QueueHost, worker: asyncio.subprocess.Process
) -> None:
    request_id = await host.put("ghost")  # no such function: a dead letter, no sandbox
    await until(lambda: host.letters("ghost"))
    (letter,) = host.letters("ghost")
    assert (letter.request_id, letter.condition, letter.attempts) == (
        request_id, "ResourceNotFound", 0
    )  # fmt: skip
    assert letter.error is not None and "Function not found" in letter.error
    await until(lambda: host.server.counters["dead_lettered"] == 1)  # reported every 0.5 s
    assert host.server.counters["failed"] == 1
    stats = await host.queue.stats()
    assert (stats.depth, stats.in_flight) == (0, 0)  # acknowledged through the server


async def test_a_worker_hears_of_changes_the_server_commits(
    host: QueueHost, worker: asyncio.subprocess.Process
) -> None:
    # A function that cannot run (a layer from before nimbus stored layers) fails without
    # a sandbox; an event older than its maximum age fails before that is even tried.
    create_function(host.stores.functions, "fn", layers=[LayerRef(LAYER)])
    configs = host.stores.event_configs
    configs.put(EventInvokeConfig("fn", "$LATEST", maximum_event_age=60), merge=False)
    hour_ago = now_ms() - 3_600_000
    first = await host.put("fn", enqueued_ms=hour_ago)
    await until(lambda: host.letters("fn"))
    assert host.letters("fn")[0].condition == "EventAgeExceeded"  # the worker cached it
    configs.put(EventInvokeConfig("fn", "$LATEST", maximum_event_age=21600), merge=False)
    second = await host.put("fn", enqueued_ms=hour_ago)
    await until(lambda: len(host.letters("fn")) == 2)
    by_id = {letter.request_id: letter.condition for letter in host.letters("fn")}
    assert by_id == {first: "EventAgeExceeded", second: "InvalidParameterValueException"}


async def test_sigterm_stops_a_worker_cleanly(
    host: QueueHost, worker: asyncio.subprocess.Process
) -> None:
    worker.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(worker.communicate(), WAIT_S)
    assert worker.returncode == 0, stderr.decode()
    await until(lambda: host.server.workers == 0)


async def test_a_worker_stops_when_the_server_goes_away(
    host: QueueHost, worker: asyncio.subprocess.Process
) -> None:
    await host.server.close()
    _, stderr = await asyncio.wait_for(worker.communicate(), WAIT_S)
    assert worker.returncode == 0, stderr.decode()


async def test_a_worker_without_a_server_fails(host: QueueHost) -> None:
    await host.server.close()  # removes the socket
    process = await host.spawn_worker()
    _, stderr = await asyncio.wait_for(process.communicate(), 4 * WAIT_S)
    assert process.returncode != 0
    assert b"cannot reach the queue" in stderr


def test_a_worker_dies_with_its_parent() -> None:
    out = subprocess.run(
        [sys.executable, "-c", ORPHAN], capture_output=True, text=True, timeout=30, check=True
    )
    pid = int(out.stdout)  # its parent has exited by now
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return  # already dead and reaped
    try:
        # A pidfd turns readable when its process ends (reaped or not, child or not).
        ended, _, _ = select.select([pidfd], [], [], WAIT_S)
        if not ended:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    finally:
        os.close(pidfd)
    assert ended, "the orphaned worker outlived its parent"


class Reports:
    """What ``_report`` needs of the queue and the dispatcher."""

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()
        self.sent: asyncio.Queue[dict[str, int]] = asyncio.Queue()
        self.metrics_sent: list[object] = []

    def report(self, counters: dict[str, int]) -> None:
        self.sent.put_nowait(counters)

    def report_metrics(self, delta: object) -> None:
        self.metrics_sent.append(delta)


async def test_report_sends_counters_only_when_they_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(worker_module, "REPORT_EVERY_S", 0.001)
    reports = Reports()
    metrics = Metrics()
    task = asyncio.ensure_future(
        worker_module._report(reports, reports, metrics)  # type: ignore[arg-type]
    )
    try:
        reports.counters["succeeded"] += 1
        assert await asyncio.wait_for(reports.sent.get(), WAIT_S) == {"succeeded": 1}
        for _ in range(20):  # twenty rounds with nothing new: nothing sent
            await asyncio.sleep(0.001)
        assert reports.sent.empty()
        reports.counters["failed"] += 2
        sent = await asyncio.wait_for(reports.sent.get(), WAIT_S)
        assert sent == {"succeeded": 1, "failed": 2}
        assert reports.metrics_sent == []  # nothing counted: no metrics shipped
    finally:
        task.cancel()
