"""A real nimbus on the NATS JetStream queue: nothing accepted is lost to a kill -9 of
the server or of its async worker (the patterns of tests/api/test_durability.py, with
``NIMBUS_QUEUE_URL`` naming a stream of its own on the machine's NATS)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import pytest

from tests.api.test_durability import KILL_AFTER, SENDERS, TOTAL, Senders, alive, ran
from tests.api.test_durability import recording_function as recording
from tests.conftest import live_server
from tests.queue.backends import NATS_URL
from tests.sink import LOCAL_WEBHOOKS, Sink

pytestmark = [pytest.mark.sandbox, pytest.mark.broker("nats")]


async def _stream_depth_and_delete(stream: str) -> int | None:
    nc = await nats.connect(NATS_URL)
    js = nc.jetstream()
    try:
        depth: int | None = (await js.stream_info(stream)).state.messages
        await js.delete_stream(stream)
    except nats.js.errors.NotFoundError:
        depth = None
    await nc.close()
    return depth


@pytest.fixture
def queue_env() -> Iterator[dict[str, str]]:
    """The settings of a server whose queue is a fresh JetStream stream, deleted after."""
    stream = f"NIMBUS_E2E_{uuid.uuid4().hex[:12]}"
    yield {"NIMBUS_QUEUE_URL": f"{NATS_URL}/{stream}", **LOCAL_WEBHOOKS}
    with contextlib.suppress(OSError):
        asyncio.run(_stream_depth_and_delete(stream))


def drained(endpoint: str, timeout: float = 60) -> bool:
    """Whether the server's queue (the stream) empties within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{endpoint}/_nimbus/queue").json()["Queue"]["depth"] == 0:
            return True
        time.sleep(0.1)
    return False


def test_kill_9_of_the_server_loses_no_accepted_event(
    tmp_path: Path, sink: Sink, queue_env: dict[str, str]
) -> None:
    env = {"NIMBUS_RETRY_BASE_SECONDS": "0.05", **queue_env}
    with live_server(tmp_path / "data", env) as server:
        senders = Senders(recording(server, sink))
        assert senders.enough.wait(120), "the server accepted too few events"
        workers = server.workers()
        server.stop(signal.SIGKILL)
        senders.join()
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in workers):
            assert time.monotonic() < deadline, "an async worker outlived the server"
            time.sleep(0.05)
        accepted, unanswered = senders.accepted, senders.unanswered
        assert KILL_AFTER <= len(accepted) < TOTAL, len(accepted)
        # The data dir holds no queue: what was accepted is in JetStream only.
        assert not (tmp_path / "data" / "queue.db").exists()

        # The restarted server (or any other on the stream) gets what the dead one held
        # once JetStream's ack wait has passed: its heartbeats stopped with it.
        server.start()
        wanted = set(accepted)
        records = sink.wait_until(lambda rs: wanted <= ran(rs), timeout=180)
        executed = ran(records)
        assert wanted <= executed  # every 202 ran at least once
        assert executed - wanted <= unanswered
        assert len(executed - wanted) <= SENDERS
        assert drained(server.endpoint)  # every run was acked in JetStream


def test_kill_9_of_the_async_worker_loses_no_accepted_event(
    tmp_path: Path, sink: Sink, queue_env: dict[str, str]
) -> None:
    env = {"NIMBUS_ASYNC_WORKERS": "1", **queue_env}
    with live_server(tmp_path / "data", env) as server:
        senders = Senders(recording(server, sink))
        assert senders.enough.wait(120), "the server accepted too few events"
        for _ in range(100):
            if workers := server.workers():
                break
            time.sleep(0.1)
        (worker,) = workers
        os.kill(worker, signal.SIGKILL)
        senders.join()
        assert not senders.unanswered
        assert len(senders.accepted) == TOTAL
        records = sink.wait_until(lambda rs: senders.accepted <= ran(rs), timeout=180)
        assert senders.accepted == ran(records)
        (restarted,) = server.workers()
        assert restarted != worker
        assert drained(server.endpoint)
