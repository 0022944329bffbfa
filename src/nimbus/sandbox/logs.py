"""Reading an environment's stdout/stderr pipe on the event loop, cut per invocation.

The runtime writes an end marker into the same pipe after each invocation (see
``nimbus.guest.protocol``); everything before it belongs to that invocation. When the
environment dies, the rest until end-of-file belongs to the invocation that killed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

# Beyond this, an invocation's log keeps its head and tail and drops the middle.
MAX_LOG_BYTES = 4 * 1024 * 1024
_TAIL = 256 * 1024


class LogPipe:
    """The server's end of one environment's log pipe."""

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        self.fd = fd
        self.loop = loop
        self.buf = bytearray()
        self.dropped = 0
        self.eof = False
        self._waiter: asyncio.Future[None] | None = None
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._on_readable)

    def _on_readable(self) -> None:
        try:
            data = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.buf += data
            if len(self.buf) > MAX_LOG_BYTES + _TAIL:
                # Keep the head and a tail long enough to hold the marker when it comes.
                cut = len(self.buf) - _TAIL
                self.dropped += cut - MAX_LOG_BYTES
                del self.buf[MAX_LOG_BYTES:cut]
        else:
            self.eof = True
            self._close()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _close(self) -> None:
        if self.fd >= 0:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1

    def _take(self, end: int, skip: int = 0) -> bytes:
        out = bytes(self.buf[:end])
        del self.buf[:end + skip]
        if self.dropped:
            note = f"\n[nimbus] {self.dropped} bytes of log output dropped\n".encode()
            out = out[:MAX_LOG_BYTES] + note + out[MAX_LOG_BYTES:]
            self.dropped = 0
        return out

    async def _wait(self, timeout: float) -> None:
        self._waiter = self.loop.create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._waiter
        finally:
            self._waiter = None

    def take(self) -> bytes:
        """Everything read so far (consumed)."""
        return self._take(len(self.buf))

    async def until(self, marker: bytes, timeout: float = 2.0) -> bytes:
        """The output before ``marker`` (consumed); on timeout or EOF, what there is."""
        start = 0
        deadline = self.loop.time() + timeout
        read_now = True
        while True:
            i = self.buf.find(marker, start)
            if i >= 0:
                return self._take(i, len(marker))
            if self.eof:
                return self._take(len(self.buf))
            if read_now and self.fd >= 0:
                # The runtime writes the marker before its result, so it is almost always
                # in the pipe already: read it now rather than wait for the loop's turn.
                read_now = False
                start = max(0, len(self.buf) - len(marker))
                self._on_readable()
                continue
            start = max(0, len(self.buf) - len(marker))
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                return self._take(len(self.buf))
            with contextlib.suppress(TimeoutError):
                await self._wait(remaining)

    async def rest(self, timeout: float = 2.0) -> bytes:
        """Everything until end-of-file (all writers gone), or until the timeout."""
        deadline = self.loop.time() + timeout
        while not self.eof:
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await self._wait(remaining)
        return self._take(len(self.buf))

    def close(self) -> None:
        self._close()
