"""The durable async-invocation queue: ``backend.py`` is the interface, ``backends/`` holds
one module per broker (``sqlite`` is the embedded default)."""

from nimbus.queue.backend import Lease, QueueBackend, QueuedEvent, QueueError, QueueStats

__all__ = ["Lease", "QueueBackend", "QueueError", "QueueStats", "QueuedEvent"]
