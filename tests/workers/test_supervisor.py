"""The supervisor of async workers, with real worker processes (isolation "process", no
function ever started: nothing needs root) against a queue server in this process.

Covers: it starts ``async_workers`` workers, one per index; a worker killed with
SIGKILL is reported through ``on_exit`` (wired, as in ``Node``, to clear the worker's
row of the concurrency file, which the test checks before the restart) and restarted,
and the new one dispatches events; ``close`` stops every worker with SIGTERM (they exit
0) and restarts none; a worker that cannot start is retried after RESTART_DELAY_S
(made short here). Not covered: the SIGKILL after STOP_TIMEOUT_S for a worker that
ignores SIGTERM (the real worker never does, and the command is not injectable).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nimbus.invocation.concurrency import ConcurrencyLimiter
from nimbus.workers import supervisor as supervisor_module
from nimbus.workers.supervisor import Supervisor
from tests.fakes import WAIT_S, QueueHost, open_queue_host, until


class Exits:
    """``on_exit`` as the server wires it (clear the row), recording what it saw."""

    def __init__(self, limiter: ConcurrencyLimiter) -> None:
        self.limiter = limiter
        self.seen: asyncio.Queue[tuple[int, int]] = asyncio.Queue()

    def __call__(self, index: int) -> None:
        self.limiter.clear_row(index)
        self.seen.put_nowait((index, self.limiter.in_flight()))

    async def next(self) -> tuple[int, int]:
        return await asyncio.wait_for(self.seen.get(), 4 * WAIT_S)


@pytest.fixture(autouse=True)
def quick_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor_module, "RESTART_DELAY_S", 0.05)


@pytest.fixture
async def host(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[QueueHost]:
    workers = getattr(request, "param", 1)
    host = await open_queue_host(tmp_path / "data", workers=workers)
    yield host
    await host.close()


@pytest.fixture
async def supervised(host: QueueHost) -> AsyncIterator[tuple[Supervisor, Exits]]:
    exits = Exits(host.limiter)
    supervisor = Supervisor(host.config, host.socket_path, exits)
    yield supervisor, exits
    await supervisor.close()


async def test_a_killed_worker_is_restarted_and_its_row_cleared(
    host: QueueHost, supervised: tuple[Supervisor, Exits]
) -> None:
    supervisor, exits = supervised
    await supervisor.start()
    await until(lambda: host.server.workers == 1)
    first = supervisor.processes[1]
    # Invocations in flight in worker 1's row of the concurrency file when it dies.
    row = ConcurrencyLimiter.attach(host.limiter.path, host.config.concurrency_limit, 1)
    try:
        row.admit("a", None, 0)
        row.admit("b", None, 0)
        assert host.limiter.in_flight() == 2
        os.kill(first.pid, signal.SIGKILL)
        assert await exits.next() == (1, 0)  # reported, and its row cleared, at once
        assert first.returncode == -signal.SIGKILL
    finally:
        row.close()
    await until(lambda: supervisor.processes[1] is not first and host.server.workers == 1)
    replacement = supervisor.processes[1]
    assert replacement.pid != first.pid and replacement.returncode is None
    request_id = await host.put("ghost")  # the new worker dispatches
    await until(lambda: host.letters("ghost"))
    assert host.letters("ghost")[0].request_id == request_id
    await supervisor.close()
    assert await exits.next() == (1, 0)
    assert replacement.returncode == 0  # SIGTERM: a clean stop
    assert supervisor.processes[1] is replacement  # and no restart after close


@pytest.mark.parametrize("host", [2], indirect=True)
async def test_close_stops_every_worker_and_restarts_none(
    host: QueueHost, supervised: tuple[Supervisor, Exits]
) -> None:
    supervisor, exits = supervised
    await supervisor.start()
    await until(lambda: host.server.workers == 2)
    assert set(supervisor.processes) == {1, 2}
    processes = dict(supervisor.processes)
    assert len({p.pid for p in processes.values()}) == 2
    await supervisor.close()
    assert {(await exits.next())[0] for _ in range(2)} == {1, 2}
    assert [p.returncode for p in processes.values()] == [0, 0]
    assert supervisor.processes == processes  # none started again
    assert all(task.done() for task in supervisor._tasks) and exits.seen.empty()


async def test_a_worker_that_cannot_start_is_tried_again(
    host: QueueHost, supervised: tuple[Supervisor, Exits]
) -> None:
    await host.server.close()  # no queue to reach: the worker exits with an error
    supervisor, exits = supervised
    await supervisor.start()
    assert (await exits.next())[0] == 1
    failed = supervisor.processes[1]
    assert failed.returncode not in (0, None)
    assert (await exits.next())[0] == 1
    assert supervisor.processes[1] is not failed  # started again, failed again
