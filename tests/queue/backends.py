"""The queue backends the shared suite runs against, and how to open each one.

To add a backend (e.g. NATS JetStream): append its name to ``BACKENDS`` and teach
``QueueSpec.make`` to build it; ``location`` names its storage (a directory for SQLite,
a fresh stream name for a broker), so two backends made from one spec share one queue.
The fixture in ``conftest.py`` is where a broker's reachability is checked (skip locally,
fail in CI, via ``tests.conftest.unavailable``). ``producer.py`` uses the same spec, so the
kill -9 test covers every backend too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nimbus.queue.backend import QueueBackend
from nimbus.queue.backends.sqlite import SqliteQueue

BACKENDS = ["sqlite"]


@dataclass(frozen=True)
class QueueSpec:
    """Which backend, over which storage."""

    name: str
    location: str

    def make(self) -> QueueBackend:
        if self.name == "sqlite":
            return SqliteQueue(Path(self.location) / "queue.db")
        raise ValueError(f"unknown queue backend {self.name!r}")
