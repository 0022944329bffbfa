"""How a poller gathers one batch: BatchSize, MaximumBatchingWindowInSeconds and
Lambda's 6 MB invocation payload cap, whichever comes first.

With a window of 0 the batch goes as soon as records are there (topped up with what
the source has ready at once); with a window it waits, from the first record, until the
window closes, the batch is full or the next record would push the payload past 6 MB.
A record that does not fit is kept for the next batch, never dropped.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from nimbus.events.sources.source import Source, SourceRecord
from nimbus.models import MAX_SYNC_PAYLOAD

# The event is {"Records": [r1, r2, ...]}: its framing plus one comma per record.
_FRAME = len('{"Records": []}')
# How long one receive waits for a first record before the poller looks up (to stop or
# rescale); a source long-polls for up to this.
IDLE_WAIT_S = 1.0


def record_size(record: SourceRecord) -> int:
    """The record's size in the invocation payload (JSON, as the function gets it)."""
    return len(json.dumps(record.record, separators=(",", ":")).encode()) + 2


@dataclass
class Batch:
    records: list[SourceRecord] = field(default_factory=list)
    size: int = _FRAME

    def __len__(self) -> int:
        return len(self.records)


class Batcher:
    """Gathers batches from ``source`` for one batch loop of a poller."""

    def __init__(
        self,
        source: Source,
        batch_size: int,
        window_s: float,
        payload_limit: int = MAX_SYNC_PAYLOAD,
        monotonic: Callable[[], float] = time.monotonic,
        receive_chunk: int = 10_000,
    ) -> None:
        self.source = source
        self.batch_size = batch_size
        self.window_s = window_s
        self.payload_limit = payload_limit
        self.monotonic = monotonic
        # The most one receive asks for (a source may hand out fewer).
        self.receive_chunk = receive_chunk
        self.carry: deque[SourceRecord] = deque()  # received but did not fit the last batch

    async def next_batch(self, idle_wait_s: float = IDLE_WAIT_S) -> Batch:
        """The next batch; empty if nothing arrived within ``idle_wait_s``."""
        batch = Batch()
        full = self._take_carry(batch)
        if not batch.records:
            got = await self._receive(self.batch_size, idle_wait_s)
            full = self._add(batch, got)
            if not batch.records:
                return batch
        deadline = self.monotonic() + self.window_s
        while not full and len(batch) < self.batch_size:
            remaining = deadline - self.monotonic()
            wait = max(0.0, remaining)
            got = await self._receive(self.batch_size - len(batch), wait)
            full = self._add(batch, got)
            if not got and remaining <= 0:
                break  # window closed (or none) and nothing more is ready
        return batch

    async def _receive(self, want: int, wait: float) -> list[SourceRecord]:
        return await self.source.receive(min(want, self.receive_chunk), wait)

    def _take_carry(self, batch: Batch) -> bool:
        while self.carry and len(batch) < self.batch_size:
            size = record_size(self.carry[0])
            if not self._fits(batch, size):
                return True
            self._append(batch, self.carry.popleft(), size)
        return len(batch) >= self.batch_size

    def _add(self, batch: Batch, records: list[SourceRecord]) -> bool:
        """Add what fits; the rest waits in ``carry``. True once the batch is full."""
        full = False
        for record in records:
            if full or len(batch) >= self.batch_size:
                full = True
                self.carry.append(record)
                continue
            size = record_size(record)  # once per record: JSON-encoding it is the cost
            if not self._fits(batch, size):
                full = True
                self.carry.append(record)
            else:
                self._append(batch, record, size)
        return full or len(batch) >= self.batch_size

    def _fits(self, batch: Batch, size: int) -> bool:
        # A record alone over the limit still goes alone (the invoke then reports it).
        return not batch.records or batch.size + size <= self.payload_limit

    @staticmethod
    def _append(batch: Batch, record: SourceRecord, size: int) -> None:
        batch.records.append(record)
        batch.size += size

    def drain_carry(self) -> list[SourceRecord]:
        """What was received but not batched (to hand back on stop)."""
        carried = list(self.carry)
        self.carry.clear()
        return carried
