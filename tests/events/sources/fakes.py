"""A Source kept in memory and a scripted function, for the poller's unit tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from nimbus.errors import NimbusError
from nimbus.events.sources.source import SourceRecord
from nimbus.invocation.invoker import InvokeResult


def record(n: int, body: Any = None, ts: int = 1_000) -> SourceRecord:
    text = body if isinstance(body, str) else json.dumps(body if body is not None else {"n": n})
    return SourceRecord({"messageId": f"m{n}", "body": text}, f"m{n}", ts, token=f"t{n}")


class FakeSource:
    """Records waiting in a list; what was acked or released is kept for assertions."""

    def __init__(self, records: list[SourceRecord] | None = None, queue_like: bool = True) -> None:
        self.retries_in_source = queue_like
        self.waiting: list[SourceRecord] = list(records or [])
        self.acked: list[str] = []
        self.released: list[str] = []
        self.opened = self.closed = False
        self.arrived = asyncio.Event()
        self.receives: list[tuple[int, float]] = []

    def add(self, *records: SourceRecord) -> None:
        self.waiting.extend(records)
        self.arrived.set()

    async def open(self) -> None:
        self.opened = True

    async def receive(self, max_records: int, wait_seconds: float) -> list[SourceRecord]:
        self.receives.append((max_records, wait_seconds))
        if not self.waiting and wait_seconds > 0:
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), wait_seconds)
            except TimeoutError:
                return []
        taken, self.waiting = self.waiting[:max_records], self.waiting[max_records:]
        return taken

    async def ack(self, records: list[SourceRecord]) -> None:
        self.acked.extend(r.item_id for r in records)

    async def release(self, records: list[SourceRecord]) -> None:
        self.released.extend(r.item_id for r in records)

    async def backlog(self) -> int | None:
        return len(self.waiting)

    async def close(self) -> None:
        self.closed = True


Behaviour = Callable[[list[dict[str, Any]]], Any]


class FakeFunction:
    """Answers each invocation with ``behaviour(records)``: a dict/str payload, or an
    exception instance to raise; ``("error", payload)`` is a function error."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.calls: list[list[str]] = []

    async def __call__(self, payload: bytes) -> InvokeResult:
        records = json.loads(payload)["Records"]
        outcome = self.behaviour(records)
        if isinstance(outcome, NimbusError):
            raise outcome
        self.calls.append([r["messageId"] for r in records])
        error = None
        if isinstance(outcome, tuple) and outcome[0] == "error":
            error, outcome = "Unhandled", outcome[1]
        body = outcome if isinstance(outcome, (str, bytes)) else json.dumps(outcome)
        raw = body.encode() if isinstance(body, str) else body
        return InvokeResult(raw, error, "$LATEST", "", f"req-{len(self.calls)}")
