"""One write per small response: a response's head held until its body's first bytes.

uvicorn writes a response's status line and headers as soon as the app sends
``http.response.start``, and its body on ``http.response.body``: two ``send`` system
calls and two TCP segments per response, so the client is woken twice and its kernel
acknowledges twice. Every data-plane reply (and most API replies) is one start and one
body sent back to back, so holding the head for the body costs nothing and saves a
system call (and a segment) per request on the function URL path.

A head is held at most until the event loop's next turn: a streamed response whose first
chunk is slow to come still gets its head at once.
"""

from __future__ import annotations

import asyncio
from typing import Any

# What uvicorn writes before a request's body is read when the client expects it.
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class HeadHeld:
    """The transport as one request-response cycle sees it: the cycle's first write (the
    head of its response) is held and goes out with the next one (the body's first
    chunk), or on the loop's next turn. Everything else is the connection's transport."""

    __slots__ = ("_head_seen", "_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._head_seen = False

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
        elif self._head_seen or data == _CONTINUE:
            self._transport.write(data)
        else:
            self._head_seen = True
            self._held = data
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write the held head, if any (a response whose body is not coming this turn)."""
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def discard(self) -> None:
        """Drop the held head: the connection answers otherwise (a refusal)."""
        self._held = None
        self._head_seen = True

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
