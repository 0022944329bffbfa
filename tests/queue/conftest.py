"""Fixtures for the queue suite, parametrised over every backend in ``backends.py``."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import nats
import pytest

from nimbus.queue.backend import QueueBackend
from tests.queue.backends import BACKENDS, NATS_URL, QueueSpec

OpenQueue = Callable[[], Awaitable[QueueBackend]]

# A broker's backend needs it running: skipped locally when it is not, failed in CI.
_MARKS = {"nats": pytest.mark.broker("nats")}


@pytest.fixture(params=[pytest.param(name, marks=_MARKS.get(name, ())) for name in BACKENDS])
async def queue_spec(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[QueueSpec]:
    """A fresh, empty queue's storage on one backend."""
    if request.param != "nats":
        yield QueueSpec(request.param, str(tmp_path))
        return
    stream = f"NIMBUS_TEST_{uuid.uuid4().hex[:12]}"
    yield QueueSpec("nats", stream)
    nc = await nats.connect(NATS_URL)
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await nc.jetstream().delete_stream(stream)
    await nc.close()


@pytest.fixture
async def open_queue(queue_spec: QueueSpec) -> AsyncIterator[OpenQueue]:
    """Opens (another) backend object over the same queue; all are closed afterwards."""
    opened: list[QueueBackend] = []

    async def open_() -> QueueBackend:
        queue = queue_spec.make()
        await queue.open()
        opened.append(queue)
        return queue

    yield open_
    for queue in opened:
        await queue.close()


@pytest.fixture
async def backend(open_queue: OpenQueue) -> QueueBackend:
    return await open_queue()
