"""Nothing acknowledged is lost: kill -9 a process in the middle of concurrent puts, then
prove every put it saw return is in the queue, and nothing that was never sent.

A kill only loses what had not reached the kernel yet, so a backend that acknowledges
a moment too early loses something only if the kill lands in that moment. Several kills
in a row (each child also opening the queue the previous one left mid-write) make that
likely; a backend that acknowledges from a buffer fails every time.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from tests.queue.backends import QueueSpec
from tests.queue.conftest import OpenQueue
from tests.queue.producer import crash_event

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 8
COUNT = 100_000  # per round: far more than a child sends before its kill
PRODUCERS = 64
KILL_AFTER = 2_000


async def put_until_killed(spec: QueueSpec, first: int) -> dict[int, str]:
    """Run a producer child, kill -9 it mid-stream; returns what it acknowledged (n -> id)."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.queue.producer",
        spec.name,
        spec.location,
        str(first),
        str(COUNT),
        str(PRODUCERS),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    acknowledged: dict[int, str] = {}

    def record(line: bytes) -> None:
        event_id, n = line.split()
        assert int(n) not in acknowledged
        acknowledged[int(n)] = event_id.decode()

    try:
        async with asyncio.timeout(20):
            while len(acknowledged) < KILL_AFTER:
                line = await child.stdout.readline()
                assert line.endswith(b"\n"), "the producer stopped before the kill"
                record(line)
            child.send_signal(signal.SIGKILL)
            await child.wait()
            # Lines written before the kill are acknowledgements too; a torn last line
            # is not (its put returned, but the test cannot know its id).
            *lines, _torn = (await child.stdout.read()).split(b"\n")
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    for line in lines:
        record(line)
    assert child.returncode == -signal.SIGKILL
    assert len(acknowledged) < COUNT, "the kill came after the last put"
    return acknowledged


async def test_kill_9_loses_no_acknowledged_put(
    queue_spec: QueueSpec, open_queue: OpenQueue
) -> None:
    acknowledged: dict[int, str] = {}
    for round_ in range(ROUNDS):
        acknowledged |= await put_until_killed(queue_spec, round_ * COUNT)

    queue = await open_queue()
    await queue.recover()
    found: dict[int, str] = {}
    while leases := await queue.lease(1000, 60):
        for lease in leases:
            n = int(lease.event.request_id.removeprefix("req-"))
            assert n not in found, f"event {n} is in the queue twice"
            sent = crash_event(n)
            sent.enqueued_ms = lease.event.enqueued_ms  # stamped by put
            assert lease.event == sent, f"event {n} is not what was sent"
            found[n] = lease.id
    missing = {n for n, event_id in acknowledged.items() if found.get(n) != event_id}
    assert not missing, f"{len(missing)} acknowledged puts lost, e.g. {sorted(missing)[:5]}"
    assert all(0 <= n < ROUNDS * COUNT for n in found)
    assert (await queue.stats()).depth == len(found)
