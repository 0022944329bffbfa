"""The queue backends the shared suite runs against, and how to open each one.

To add a backend (e.g. NATS JetStream): append its name to ``BACKENDS`` and teach
``QueueSpec.make`` to build it; ``location`` names its storage (a directory for SQLite,
a fresh stream name for a broker), so two backends made from one spec share one queue.
The fixture in ``conftest.py`` is where a broker's reachability is checked (skip locally,
fail in CI, via ``tests.conftest.unavailable``). ``producer.py`` uses the same spec, so the
kill -9 test covers every backend too.

``nats`` is JetStream at the machine's NATS (``NATS_URL``): each spec's location is a fresh
stream name, deleted after the test (``conftest.py``).

``remote`` is the async workers' client: each one talks over a unix socket to a
``QueueServer`` that this process starts (once per location) over a SQLite queue, as
``nimbus up`` does for its workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nimbus.queue.backend import QueueBackend
from nimbus.queue.backends.nats_jetstream import NatsQueue
from nimbus.queue.backends.remote import RemoteQueue
from nimbus.queue.backends.sqlite import SqliteQueue
from nimbus.workers.queue_server import QueueServer

BACKENDS = ["sqlite", "remote", "nats"]
NATS_URL = "nats://127.0.0.1:4222"  # tests.conftest.BROKERS["nats"]


class _Owner:
    """The process-side owner of one location's queue, shared by its remote clients."""

    def __init__(self, location: Path) -> None:
        self.queue = SqliteQueue(location / "queue.db")
        self.server = QueueServer(self.queue, location / "queue.sock")
        self.clients = 0

    async def open(self) -> None:
        await self.queue.open()
        await self.server.start()

    async def close(self) -> None:
        await self.server.close()
        await self.queue.close()


_owners: dict[Path, _Owner] = {}


class ServedRemoteQueue(RemoteQueue):
    """A RemoteQueue whose server (and the queue it owns) lives while any client does.
    ``recover`` is the owner's, as ``nimbus up`` recovers before its workers start."""

    def __init__(self, location: Path) -> None:
        super().__init__(location / "queue.sock")
        self.location = location

    async def open(self) -> None:
        owner = _owners.get(self.location)
        if owner is None:
            owner = _owners[self.location] = _Owner(self.location)
            await owner.open()
        owner.clients += 1
        await super().open()

    async def close(self) -> None:
        if self._closing:
            return
        await super().close()
        owner = _owners[self.location]
        owner.clients -= 1
        if owner.clients == 0:
            del _owners[self.location]
            await owner.close()

    async def recover(self) -> int:
        return await _owners[self.location].queue.recover()


@dataclass(frozen=True)
class QueueSpec:
    """Which backend, over which storage."""

    name: str
    location: str

    def make(self) -> QueueBackend:
        if self.name == "sqlite":
            return SqliteQueue(Path(self.location) / "queue.db")
        if self.name == "remote":
            return ServedRemoteQueue(Path(self.location))
        if self.name == "nats":
            # A short ack wait, so heartbeats run (a third of it) within a test.
            return NatsQueue(NATS_URL, stream=self.location, ack_wait_s=3)
        raise ValueError(f"unknown queue backend {self.name!r}")
