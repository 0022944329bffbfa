"""Fixtures for the queue suite, parametrised over every backend in ``backends.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from nimbus.queue.backend import QueueBackend
from tests.queue.backends import BACKENDS, QueueSpec

OpenQueue = Callable[[], Awaitable[QueueBackend]]


@pytest.fixture(params=BACKENDS)
def queue_spec(request: pytest.FixtureRequest, tmp_path: Path) -> QueueSpec:
    """A fresh, empty queue's storage on one backend."""
    return QueueSpec(request.param, str(tmp_path))


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
