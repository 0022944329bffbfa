"""The server's end of an environment's control socket, as an asyncio protocol.

Frames (see ``protocol``) are cut out of the byte stream as it arrives and handed to
the one reader waiting for them. One invocation costs one write and one wake-up of
that reader: no stream reader, no lock, no drain unless the socket's buffer is full.

The environment is not trusted (``nimbus.sandbox.frames``): each frame's lengths are
checked from its 8-byte prefix and its header against what is expected now, before its
body is kept. A frame that breaks the protocol closes the channel and calls
``on_violation`` (the environment is then killed); a leftover result of an earlier
invocation is skipped without keeping its body. So the channel never holds more than
one frame the server asked for, and never more than ``frames.MAX_BODY`` of its body.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import Callable
from typing import cast

from nimbus.guest import protocol
from nimbus.sandbox import frames

# Outgoing bytes the transport may hold before a writer waits (a 6 MB event waits).
HIGH_WATER = 1 << 20
MAX_HEADER = frames.MAX_HEADER
MAX_BODY = frames.MAX_BODY
_PREFIX = protocol.HEADER.size


class ChannelClosed(Exception):
    """The environment's end of the control socket is gone."""


class Channel(asyncio.Protocol):
    """Frames in, frames out, for one environment (one reader at a time)."""

    def __init__(self, on_violation: Callable[[frames.Violation], None] | None = None) -> None:
        self._buf = bytearray()
        self._frames: deque[tuple[dict, bytes]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop  # set by connection_made()
        self._closed = False
        # What the environment may send now: the init phase's outcome, at first.
        self.expected = frames.Expected()
        self.violation: frames.Violation | None = None
        self._on_violation = on_violation
        self._header: dict | None = None  # of the frame whose body is arriving
        self._body_len = 0
        self._skip = 0  # body bytes of a skipped (stale) frame still to come

    @classmethod
    async def open(
        cls, sock: socket.socket, on_violation: Callable[[frames.Violation], None] | None = None
    ) -> Channel:
        _, channel = await asyncio.get_running_loop().create_unix_connection(
            lambda: cls(on_violation), sock=sock
        )
        return channel

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but behave as one.
        ours = cast(asyncio.Transport, transport)
        ours.set_write_buffer_limits(high=HIGH_WATER)
        self._transport = ours
        # Kept: on Python 3.11 each get_running_loop() is a getpid() syscall, and read()
        # makes a future per invocation.
        self._loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        if self.violation is not None:
            return
        buf = self._buf
        if self._skip:
            skipped = min(self._skip, len(data))
            self._skip -= skipped
            data = data[skipped:]
        buf += data
        try:
            self._cut(buf)
        except frames.Violation as violation:
            self._violate(violation)
            return
        if self._frames:
            self._wake()

    def _cut(self, buf: bytearray) -> None:
        """Take the complete frames out of ``buf``, checking each part as it comes."""
        while True:
            if self._header is None:
                if len(buf) < _PREFIX:
                    return
                head_len, body_len = protocol.HEADER.unpack_from(buf)
                frames.check_lengths(head_len, body_len)
                if len(buf) < _PREFIX + head_len:
                    return
                raw = bytes(buf[_PREFIX : _PREFIX + head_len])
                del buf[: _PREFIX + head_len]
                try:
                    self._header = frames.check_header(raw, body_len, self.expected)
                except frames.Stale:
                    skipped = min(body_len, len(buf))
                    del buf[:skipped]
                    self._skip = body_len - skipped
                    if self._skip:
                        return
                    continue
                self._body_len = body_len
                self.expected.nothing()  # one frame per expectation
            if len(buf) < self._body_len:
                return
            self._frames.append((self._header, bytes(buf[: self._body_len])))
            del buf[: self._body_len]
            self._header = None

    def _violate(self, violation: frames.Violation) -> None:
        self.violation = violation
        self._buf.clear()
        self._frames.clear()
        self._closed = True
        self.close()
        self._wake()
        if self._on_violation is not None:
            self._on_violation(violation)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._wake()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_writing(self) -> None:
        self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # -- for the environment ----------------------------------------------------------

    async def send(self, header: dict, body: bytes = b"") -> None:
        """Write a frame; waits only while the socket's buffer is above HIGH_WATER."""
        if self._closed or self._transport is None or self._transport.is_closing():
            raise ChannelClosed("control channel closed")
        self._transport.write(protocol.encode(header, body))
        if self._writable is not None:
            await self._writable

    async def read(self) -> tuple[dict, bytes]:
        """The next frame; ChannelClosed once the socket ends and none is left."""
        while not self._frames:
            if self._closed:
                raise ChannelClosed("control channel closed")
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._frames.popleft()

    def expect_result(self, tag: int) -> None:
        """The next frame must be the result of the invocation tagged ``tag``."""
        self.expected.invocation(tag)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
