"""The server's end of an environment's control socket, as an asyncio protocol.

Frames (see ``protocol``) are cut out of the byte stream as it arrives and handed to
the one reader waiting for them. One invocation costs one write and one wake-up of
that reader: no stream reader, no lock, no drain unless the socket's buffer is full.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from typing import cast

from nimbus.guest import protocol

# Outgoing bytes the transport may hold before a writer waits (a 6 MB event waits).
HIGH_WATER = 1 << 20
# The environment is not trusted: a frame announcing more than this ends the channel.
MAX_HEADER = 1 << 20
MAX_BODY = 8 * protocol.MAX_PAYLOAD


class ChannelClosed(Exception):
    """The environment's end of the control socket is gone."""


class Channel(asyncio.Protocol):
    """Frames in, frames out, for one environment (one reader at a time)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._frames: deque[tuple[dict, bytes]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop  # set by connection_made()
        self._closed = False

    @classmethod
    async def open(cls, sock: socket.socket) -> Channel:
        _, channel = await asyncio.get_running_loop().create_unix_connection(cls, sock=sock)
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
        buf = self._buf
        buf += data
        size = protocol.HEADER.size
        while len(buf) >= size:
            head_len, body_len = protocol.HEADER.unpack_from(buf)
            if head_len > MAX_HEADER or body_len > MAX_BODY:
                buf.clear()
                self.close()
                break
            end = size + head_len + body_len
            if len(buf) < end:
                break
            header = protocol.decode_header(bytes(buf[size : size + head_len]))
            self._frames.append((header, bytes(buf[size + head_len : end])))
            del buf[:end]
        if self._frames:
            self._wake()

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

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
