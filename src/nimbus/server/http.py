"""The HTTP/1.1 protocol nimbus serves with: uvicorn's httptools protocol, with the
limits uvicorn leaves out.

uvicorn closes a kept-alive connection that stays idle ``timeout_keep_alive`` seconds
after an answer, and that is all: a new connection that never sends a byte, a request
head that arrives a byte at a time or never ends, a body that stops half way, a client
that never reads its answer, each holds its connection (and a descriptor) for as long as
the client likes; a head has no size limit (httptools buffers a header line whatever its
length); and ``limit_concurrency`` counts requests, not idle connections. An attack run
held 800 connections for 40 s with slow clients. Here:

- a request's line and headers must arrive within ``header_timeout`` seconds of the
  connection (of its first byte, on a kept-alive connection): else 408, and closed;
- they may be at most ``MAX_HEAD_BYTES`` (API Gateway's limit is 10 KB; S3's 8 KB): else
  431 as soon as that much has come without their end, and closed;
- a body that stops arriving for ``body_timeout`` seconds while nimbus reads it ends the
  connection (408 if no answer was started);
- a client that reads nothing of an answer for ``WRITE_STALL_S`` seconds is cut off;
- connections beyond ``max_connections`` get 503 at once, and are closed; ``serve``
  sizes it from the descriptors left once the environments have theirs.

A response's head goes out with its body's first bytes, in one write (``coalescing``).

Refusals are JSON, as every nimbus error, with ``Connection: close``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from nimbus.server.coalescing import HeadHeld

log = logging.getLogger("nimbus.http")

MAX_HEAD_BYTES = 32 * 1024
WRITE_STALL_S = 60.0
# After a refusal, what the client still sends is read and dropped this long before the
# connection closes: closing on unread bytes would reset it, and the client could lose
# the answer (a "lingering close", as nginx does).
LINGER_S = 2.0
# Descriptors an execution environment holds in the server (control socket, log pipe,
# pidfd, cgroup and /tmp files), with room to spare.
FDS_PER_ENVIRONMENT = 8


def connection_limit(concurrency_limit: int) -> int:
    """How many client connections the server keeps at once: half the descriptors left
    after ``concurrency_limit`` environments have theirs (at least 64). Raises this
    process's soft descriptor limit to its hard limit first."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return max(64, min(65536, (soft - FDS_PER_ENVIRONMENT * concurrency_limit) // 2))


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with timeouts and size limits on what clients send;
    make one with its settings by ``configured``."""

    header_timeout: ClassVar[float] = 10.0
    body_timeout: ClassVar[float] = 30.0
    max_connections: ClassVar[int] = 10_000

    @classmethod
    def configured(
        cls, *, header_timeout: float, body_timeout: float, max_connections: int
    ) -> type[HttpProtocol]:
        settings = {
            "header_timeout": header_timeout,
            "body_timeout": body_timeout,
            "max_connections": max_connections,
        }
        return type("ConfiguredHttpProtocol", (cls,), settings)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # waiting for (the rest of) a request's line and headers
        self._head_bytes = 0  # bytes received while waiting for it (an upper bound)
        # When the head being waited for was due to start (the connection, or the first
        # byte of a kept-alive connection's next request); None once it has arrived.
        self._head_since: float | None = None
        # Not cancelled when a head arrives: it finds the head it fires for, if any, and
        # is armed again only for that (one timer per header_timeout, not per request).
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        self._refusal: tuple[int, str] | None = None
        self._refused = False  # answered with a refusal: lingering until closed
        self._linger: asyncio.TimerHandle | None = None
        self._idle_since: float | None = None  # answered, waiting for the next request

    # -- connection -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        if len(self.connections) > self.max_connections:
            log.warning("refusing a connection: %d are open (the limit)", self.max_connections)
            self._refuse(
                503, f"nimbus holds {self.max_connections} connections, its limit; retry shortly"
            )
            return
        self._head_since = self.loop.time()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        timers = (self._head_timer, self._body_timer, self._write_timer, self._linger,
                  self.timeout_keep_alive_task)  # fmt: skip
        for timer in timers:
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering after a refusal: dropped
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._refused or self.transport.is_closing():
            return
        if self._in_head:
            if self._head_bytes > MAX_HEAD_BYTES:
                # httptools would keep buffering an endless header line: refused now.
                self._refuse(
                    431, f"The request line and headers must be at most {MAX_HEAD_BYTES} bytes."
                )
        elif self.cycle is not None and self.cycle.more_body:
            self._arm_body_timer()  # a body is on its way: it must keep coming
        elif self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers whatever the parser raised with 400; a refusal of ours, raised
        # from a parser callback, gets its own answer.
        if self._refusal is not None:
            status, message = self._refusal
            self._refuse(status, message)
            return
        super().send_400_response(msg)

    # -- keep-alive -------------------------------------------------------------------
    # uvicorn cancels its idle timer on each request's first bytes and arms a new one
    # after each answer (2 us a request); here it stays armed, and when it fires it
    # finds out whether the connection has been idle for timeout_keep_alive.

    def _unset_keepalive_if_required(self) -> None:
        self._idle_since = None

    def on_response_complete(self) -> None:
        # uvicorn's, but for the timer.
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._idle_since = None
        self.flow.resume_reading()
        if self.pipeline:  # a pipelined request waits: it is next
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self._idle_since = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self._idle_timed_out
            )

    def _idle_timed_out(self) -> None:
        self.timeout_keep_alive_task = None
        if self._idle_since is None:
            return  # busy: armed again after its answer
        left = self._idle_since + self.timeout_keep_alive - self.loop.time()
        if left > 0:
            self.timeout_keep_alive_task = self.loop.call_later(left, self._idle_timed_out)
            return
        self.timeout_keep_alive_handler()

    # -- parser callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        if self._head_since is None:  # the next request on a kept-alive connection
            self._head_since = self.loop.time()
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._head_since = None
        size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
        if size > MAX_HEAD_BYTES:
            self._refusal = (
                431,
                f"The request line and headers must be at most "
                f"{MAX_HEAD_BYTES} bytes; these are {size}.",
            )
            raise _Refused
        previous = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle is not previous:  # not an upgrade: a new request
            # Its task has not run yet: it writes through this from its first send.
            cycle.transport = HeadHeld(self.transport, self.loop)  # type: ignore[assignment]

    # -- flow control -----------------------------------------------------------------

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(WRITE_STALL_S, self._write_stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    # -- timeouts ---------------------------------------------------------------------

    def _arm_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
        self._body_timer = self.loop.call_later(self.body_timeout, self._body_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._in_head or self._refused or self.transport.is_closing():
            return  # no head awaited: the next one arms the timer again
        if self.flow is not None and self.flow.read_paused:
            # uvicorn stopped reading (a pipelined request waits its turn): not the
            # client's delay.
            self._head_since = self.loop.time()
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)
            return
        since = self.loop.time() if self._head_since is None else self._head_since
        left = since + self.header_timeout - self.loop.time()
        if left > 0:  # armed for an earlier head: this one still has time
            self._head_timer = self.loop.call_later(left, self._head_timed_out)
            return
        self._refuse(
            408,
            f"The request line and headers did not arrive within {self.header_timeout:g} seconds.",
        )

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if self._refused or self.transport.is_closing():
            return
        if self.flow.read_paused:  # nimbus is not reading the body yet: not the client's delay
            self._arm_body_timer()
            return
        if self.cycle is not None and not self.cycle.response_started:
            self._refuse(
                408, f"No byte of the request body arrived for {self.body_timeout:g} seconds."
            )
        else:
            self.transport.close()

    def _write_stalled(self) -> None:
        self._write_timer = None
        if not self.transport.is_closing():
            log.info("closing a connection whose client read nothing for %gs", WRITE_STALL_S)
            self.transport.abort()  # close() would wait for the buffer to drain: never

    def _refuse(self, status: int, message: str) -> None:
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # The request in flight is over for its handler too: it reads a disconnect,
            # and what it sends from now on is dropped (the answer is this one).
            cycle.disconnected = True
            cycle.message_event.set()
            if isinstance(cycle.transport, HeadHeld):
                cycle.transport.discard()  # this refusal is the answer
        body = json.dumps({"message": message}).encode()
        self.transport.write(
            b"".join(
                [
                    STATUS_LINE[status],
                    b"content-type: application/json\r\n",
                    b"content-length: ",
                    str(len(body)).encode(),
                    b"\r\n",
                    b"connection: close\r\n\r\n",
                    body,
                ]
            )
        )
        self._refused = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._linger = self.loop.call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()

    def eof_received(self) -> None:
        if self._refused:
            self.transport.close()  # the client has sent all it will: done lingering
        super().eof_received()


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; ``_refusal`` says the answer."""
