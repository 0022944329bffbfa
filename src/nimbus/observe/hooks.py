"""Lifecycle hooks: the typed events the core emits and observers (metrics, cost, later
tracing) subscribe to, so observability attaches without being woven through the
invoker and the dispatcher.

The core emits where things happen: the invoker (an invocation started, finished, was
throttled), the dispatcher (an async event was received, started after waiting in the
queue, retried, dropped, dead-lettered, delivered to a destination). Event source
mappings' figures are not events: their pollers already count them (``MappingStats``),
and /metrics reads those. Every record is a small immutable ``NamedTuple``: a frozen
dataclass would do as well, but its constructor sets each field through
``object.__setattr__``, about 4 µs for ``InvocationFinished`` against under one for a
tuple, on every invocation.

Emitting must cost next to nothing on the warm path, so ``Hooks`` keeps a tuple of
subscribers per event type and emitters ask ``wants(kind)`` before they build a record:
with nobody listening an emit is one dict lookup. A subscriber runs synchronously, on
the emitter's event loop, and must be quick (count, append); one that raises is logged
and never breaks the invocation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal, NamedTuple, TypeVar

log = logging.getLogger("nimbus.observe.hooks")

# Why an invocation failed, as Lambda's Errors metric counts them (all of them count);
# "platform": nimbus itself failed to run it (no environment could be started...).
ErrorKind = Literal["function", "timeout", "oom", "init", "platform"]


class InvocationStarted(NamedTuple):
    """An invocation was admitted and is about to run (warm or cold)."""

    function: str
    qualifier: str | None  # as invoked: an alias, a version, or None ($LATEST)
    version: str  # the version that runs (Lambda's ExecutedVersion)
    request_id: str


class InvocationFinished(NamedTuple):
    """An invocation ended, successfully or not (always after ``InvocationStarted``)."""

    function: str
    qualifier: str | None
    version: str
    request_id: str
    architecture: str  # "x86_64" or "arm64": what it would be priced as
    memory_size: int  # MB configured
    duration_ms: float
    billed_ms: int
    max_memory_used_mb: int
    cold_start: bool
    init_ms: float | None  # Init Duration of a cold start (or Restore Duration)
    restored: bool  # a SnapStart restore: init_ms is the restore's duration
    error: ErrorKind | None
    error_type: str | None  # the errorType the function or runtime reported


class InvocationThrottled(NamedTuple):
    """An invocation was refused for want of concurrency (429 or back to the queue)."""

    function: str
    qualifier: str | None
    reason: str  # Lambda's Reason: reserved or account concurrency exceeded
    # Refused after InvocationStarted (no sandbox capacity left for its cold start): an
    # observer counting starts takes it back; no invocation is counted.
    started: bool = False


class AsyncEventReceived(NamedTuple):
    """An async event was durably queued (Lambda's AsyncEventsReceived)."""

    function: str
    qualifier: str | None
    request_id: str


class AsyncEventStarted(NamedTuple):
    """An async event left the queue and its attempt was admitted to run (not one
    throttled, which invoked nothing); ``age_ms`` is how long it had waited since it was
    first queued (Lambda's AsyncEventAge)."""

    function: str
    qualifier: str | None
    request_id: str
    attempt: int  # 0: first attempt
    age_ms: int


class AsyncEventRetried(NamedTuple):
    """A function error left attempts: the event runs again after ``delay_s``."""

    function: str
    qualifier: str | None
    request_id: str
    attempt: int  # the attempts made so far
    delay_s: float


class AsyncEventDropped(NamedTuple):
    """An async event ended without a successful run (Lambda's AsyncEventsDropped): max
    age exceeded, retries exhausted, or the function gone. It may still have reached an
    OnFailure destination or a dead-letter queue."""

    function: str
    qualifier: str | None
    request_id: str
    condition: str  # EventAgeExceeded, RetriesExhausted, ResourceNotFound...
    age_ms: int


class AsyncEventDeadLettered(NamedTuple):
    """A failed event was handed to the function's DeadLetterConfig queue (``ok``) or
    could not be (Lambda's DeadLetterErrors) and went to nimbus's dead-letter store."""

    function: str
    qualifier: str | None
    request_id: str
    target: str
    ok: bool


class DestinationDelivered(NamedTuple):
    """An invocation record was sent to an OnSuccess / OnFailure destination, or could
    not be (``ok`` False: Lambda's DestinationDeliveryFailures)."""

    function: str
    qualifier: str | None
    request_id: str
    condition: Literal["OnSuccess", "OnFailure"]
    destination: str
    ok: bool
    age_ms: int  # since the event was first queued


Event = (
    InvocationStarted
    | InvocationFinished
    | InvocationThrottled
    | AsyncEventReceived
    | AsyncEventStarted
    | AsyncEventRetried
    | AsyncEventDropped
    | AsyncEventDeadLettered
    | DestinationDelivered
)
E = TypeVar("E")


class Hooks:
    """One process's event bus: subscribers by event type."""

    __slots__ = ("_subscribers",)

    def __init__(self) -> None:
        self._subscribers: dict[type, tuple[Callable[[Any], None], ...]] = {}

    def subscribe(self, kind: type[E], subscriber: Callable[[E], None]) -> None:
        self._subscribers[kind] = (*self._subscribers.get(kind, ()), subscriber)

    def unsubscribe(self, kind: type[E], subscriber: Callable[[E], None]) -> None:
        left = tuple(s for s in self._subscribers.get(kind, ()) if s != subscriber)
        if left:
            self._subscribers[kind] = left
        else:
            self._subscribers.pop(kind, None)

    def wants(self, kind: type) -> bool:
        """Whether anyone listens to ``kind``: ask before building a record."""
        return kind in self._subscribers

    def emit(self, event: Event) -> None:
        for subscriber in self._subscribers.get(type(event), ()):
            try:
                subscriber(event)
            except Exception:  # an observer never breaks what it observes
                log.exception("a %s subscriber failed", type(event).__name__)
