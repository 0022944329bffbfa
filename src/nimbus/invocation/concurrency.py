"""Admission control: account-wide and reserved concurrency, as Lambda counts it, over
every process of one nimbus.

Functions with reserved concurrency draw only from their reservation; all others share
what is left of the account limit after every reservation. Over the limit, a sync
invoke is refused with 429 ``TooManyRequestsException`` and Lambda's ``Reason``; an
async event waits in the queue.

The server and its async workers run invocations in separate processes, and the limits
hold for all of them together: a reservation of 10 that protects a database means 10
connections, not 10 per process. So the counts live in a small file every process maps
(``<data_dir>/concurrency``): one row per process (the server is row 0, async worker
``i`` row ``i``) that only its process writes, and an admission (read every row, then
add one to its own) holds an exclusive lock on the file. A release only subtracts from
the process's own row, without the lock. A process that dies leaves its row behind: the
supervisor clears it when it reaps the process, and the server clears the file at start.

Reserved functions are found by name in an open-addressing table in the same file
(Lambda names are at most 64 bytes); an entry no process counts anything against is
reused by the next name that needs one, so the table never holds more names than there
are invocations in flight.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nimbus.errors import TooManyRequests
from nimbus.store.cluster_slots import ClusterSlots, Slot

RESERVED_REASON = "ReservedFunctionConcurrentInvocationLimitExceeded"
ACCOUNT_REASON = "ConcurrentInvocationLimitExceeded"

_MAGIC = 0x4E434331  # "NCC1"
_HEADER = struct.Struct("<4i")  # magic, rows, entries, unused
_NAME = 64  # bytes per name entry: Lambda's longest function name
_MIN_ENTRIES = 1024


class ConcurrencyLimiter:
    """Counts in-flight invocations of every process sharing ``path``; each process uses
    its limiter from its event loop only (the file lock orders the processes)."""

    def __init__(self, path: Path, account_limit: int, row: int, *, create: bool,
                 rows: int = 1) -> None:
        self.path = path
        self.account_limit = account_limit
        entries = max(_MIN_ENTRIES, account_limit)
        if create:
            # What a previous run left is stale; a new file (not the old one emptied) also
            # keeps any process still mapping the old one out of this run's counts.
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT | os.O_EXCL if create else 0)
        self._fd = os.open(path, flags, 0o600)
        try:
            if create:
                os.ftruncate(self._fd, _size(rows, entries))
                os.pwrite(self._fd, _HEADER.pack(_MAGIC, rows, entries, 0), 0)
            header = os.pread(self._fd, _HEADER.size, 0)
            magic, self._rows, self._entries, _ = _HEADER.unpack(header.ljust(_HEADER.size, b"\0"))
            if magic != _MAGIC or not 0 <= row < self._rows:
                raise RuntimeError(f"{path} is not the concurrency file of this nimbus "
                                   f"(row {row} of {self._rows})")
            self._map = mmap.mmap(self._fd, _size(self._rows, self._entries))
        except BaseException:
            os.close(self._fd)
            raise
        names_end = _HEADER.size + _NAME * self._entries
        # Row r: [unreserved in flight, then one count per name entry].
        self._stride = 1 + self._entries
        self._counts = memoryview(self._map)[names_end:].cast("i")
        self._base = row * self._stride
        self._entry_of: dict[str, int] = {}  # a hint, checked against the file's name
        if not create:
            self.clear_row(row)  # a previous process in this row died

    @classmethod
    def create(cls, path: Path, account_limit: int, processes: int) -> ConcurrencyLimiter:
        """The server's limiter (row 0), with rows for ``processes`` in all."""
        return cls(path, account_limit, 0, create=True, rows=processes)

    @classmethod
    def attach(cls, path: Path, account_limit: int, row: int) -> ConcurrencyLimiter:
        """An async worker's limiter, in the file its server created."""
        return cls(path, account_limit, row, create=False)

    def in_flight(self, function: str | None = None) -> int:
        """Invocations in flight in every process: of reserved ``function``, or (None)
        of all unreserved functions."""
        if function is None:
            return self._total(0)
        with self._locked():
            entry = self._find(function.encode(), insert=False)
            return 0 if entry is None else self._total(1 + entry)

    def admit(self, function: str, reserved: int | None, reserved_total: int) -> int:
        """Take one unit of concurrency (TooManyRequests when there is none); returns
        the ticket to ``release`` when the invocation ends."""
        if reserved is not None and reserved <= 0:
            raise TooManyRequests("Rate Exceeded.", reason=RESERVED_REASON)
        # Not a context manager: this runs for every invocation, and a generator-based
        # one costs more than the lock.
        fcntl.lockf(self._fd, fcntl.LOCK_EX)
        try:
            if reserved is None:
                if self._total(0) >= self.account_limit - reserved_total:
                    raise TooManyRequests("Rate Exceeded.", reason=ACCOUNT_REASON)
                index = self._base
            else:
                entry = self._entry(function)
                if self._total(1 + entry) >= reserved:
                    raise TooManyRequests("Rate Exceeded.", reason=RESERVED_REASON)
                index = self._base + 1 + entry
            self._counts[index] += 1
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
        return index

    def release(self, ticket: int) -> None:
        self._counts[ticket] -= 1  # only this process writes its row: no lock

    def clear_row(self, row: int) -> None:
        """Forget what process ``row`` had in flight (it is gone)."""
        with self._locked():
            start = row * self._stride
            self._counts[start : start + self._stride] = memoryview(
                bytes(4 * self._stride)
            ).cast("i")

    def close(self) -> None:
        with contextlib.suppress(BufferError):  # a view still held: the GC unmaps it
            self._counts.release()
            self._map.close()
        os.close(self._fd)

    # -- the file ------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fcntl.lockf(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def _total(self, column: int) -> int:
        return sum(self._counts[column :: self._stride])

    def _entry(self, function: str) -> int:
        """The table entry counting ``function`` (under the lock), made if need be."""
        hint = self._entry_of.get(function)
        name = function.encode()
        if hint is not None and self._name_at(hint) == name:
            return hint
        entry = self._find(name, insert=True)
        if entry is None:  # cannot happen: more entries than the account limit
            raise TooManyRequests("Rate Exceeded.", reason=ACCOUNT_REASON)
        self._entry_of[function] = entry
        return entry

    def _name_at(self, entry: int) -> bytes:
        offset = _HEADER.size + _NAME * entry
        return self._map[offset : offset + _NAME].rstrip(b"\0")

    def _find(self, name: bytes, *, insert: bool) -> int | None:
        free = None  # the first entry nothing is counted against, to reuse
        start = zlib.crc32(name) % self._entries
        for step in range(self._entries):
            entry = (start + step) % self._entries
            held = self._name_at(entry)
            if held == name:
                return entry
            if free is None and (not held or self._total(1 + entry) == 0):
                free = entry
            if not held:  # never used: the name is not further on
                break
        if not insert or free is None:
            return None
        offset = _HEADER.size + _NAME * free
        self._map[offset : offset + _NAME] = name.ljust(_NAME, b"\0")
        return free


class ClusterAdmission:
    """The same limits counted across every server of a cluster (store/cluster_slots.py):
    taken after this host's limiter admitted, given back when the invocation ends."""

    def __init__(self, slots: ClusterSlots, account_limit: int) -> None:
        self.slots = slots
        self.account_limit = account_limit

    async def admit(self, function: str, reserved: int | None, reserved_total: int) -> Slot:
        if reserved is None:
            scope, limit = "account", self.account_limit - reserved_total
            reason = ACCOUNT_REASON
        else:
            scope, limit, reason = f"function:{function}", reserved, RESERVED_REASON
        slot = await self.slots.take(scope, limit)
        if slot is None:
            raise TooManyRequests("Rate Exceeded.", reason=reason)
        return slot

    def release(self, slot: Slot) -> None:
        self.slots.give(slot)


def _size(rows: int, entries: int) -> int:
    return _HEADER.size + _NAME * entries + 4 * rows * (1 + entries)
