"""Where a change of an object can be followed: listeners subscribe to ``ObjectEvents``.

A listener is told twice: ``staged(conn, event)`` inside the store's write transaction
(so what it writes there, an outbox row of notifications for instance, commits or rolls
back with the change itself: nothing is lost between the two), and ``committed(event)``
once the transaction has committed (to wake whoever delivers). Both run in the thread
that did the write; ``committed`` must not block.
"""

from __future__ import annotations

import logging
import threading
import time
from contextvars import ContextVar
from typing import Protocol

from sqlalchemy import Connection

from nimbus.s3.records import ObjectEvent, RequestInfo

log = logging.getLogger("nimbus.s3")

# The API request being served (set by the S3 API before it calls the store; worker
# threads see it, as they run in a copy of the caller's context): events carry it.
REQUEST: ContextVar[RequestInfo | None] = ContextVar("nimbus_s3_request", default=None)


class ObjectListener(Protocol):
    def staged(self, conn: Connection, event: ObjectEvent) -> None: ...

    def committed(self, event: ObjectEvent) -> None: ...


class ObjectEvents:
    """The listeners of this process's object changes, and the sequencer they carry."""

    def __init__(self) -> None:
        self._listeners: list[ObjectListener] = []
        self._lock = threading.Lock()
        self._last = 0

    def subscribe(self, listener: ObjectListener) -> None:
        self._listeners.append(listener)

    def sequencer(self) -> str:
        """Grows with every call in this process (nanoseconds since the epoch, or the
        last value plus one when the clock has not moved on)."""
        with self._lock:
            self._last = max(self._last + 1, time.time_ns())
            return f"{self._last:016X}"

    def staged(self, conn: Connection, event: ObjectEvent) -> None:
        for listener in self._listeners:
            listener.staged(conn, event)

    def committed(self, events: list[ObjectEvent]) -> None:
        for event in events:
            for listener in self._listeners:
                try:
                    listener.committed(event)
                except Exception:  # a wake-up that fails must not fail the write
                    log.exception("listener failed after %s of %s", event.name, event.key)
