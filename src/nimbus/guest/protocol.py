"""The control channel between the server and an execution environment.

One stream socket per environment carries frames: a fixed header (two big-endian
lengths), a small JSON header and an opaque body (event or result payload). The body is
never re-encoded, so a 6 MB payload costs one copy each way.

Shared by the server (asyncio) and the in-sandbox runtimes (blocking sockets, Python
3.9+), so it uses the standard library only.

Frames, by ``t``:
  environment -> server: ``ready`` {init_ms, restore?, stages?}, ``init_error``
  {type, init_ms} + error JSON body, ``setup_error`` {message}, ``result`` {error: None |
  "Unhandled", tag, marked?} + payload body, ``exit`` {status} (provided runtimes: the
  bootstrap exited).
  server -> environment: ``invoke`` {id, tag, deadline, arn, trace, cc, ci} + event body.

The environment is not trusted: in a Python runtime the function shares the runtime's
process and can write on the socket too. So the server checks every frame it reads
(``nimbus.sandbox.frames``): sizes from the fixed header before any body is read, the
JSON header's type and fields, and that a ``result`` carries the ``tag`` of the
invocation in flight (a random number per invocation, echoed by the runtime), so that a
frame left behind by one invocation can never answer the next. Bodies are at most
``MAX_PAYLOAD``: a runtime replaces a larger result or error by Lambda's
``Function.ResponseSizeTooLarge`` error (``too_large_error``).

Logs do not travel here: stdout/stderr go to a pipe, and after each invocation the
runtime writes ``marker(nonce, seq)`` into that pipe, so the server can cut the log at
exactly the end of the invocation. A runtime that finds the pipe empty at that point
(the server has read every byte written so far) may skip the marker and say
``marked: false`` in its result: the log is then whatever the server has read.
"""

from __future__ import annotations

import json
import socket
import struct

HEADER = struct.Struct("!II")
MAX_PAYLOAD = 6 * 1024 * 1024 + 100  # Lambda's limit for a synchronous response
MAX_ERROR_TYPE = 1024  # an error type longer than this is cut (it travels in a header)

# The server encodes and decodes a frame header per invocation: with orjson (a
# dependency of nimbus) where it is importable. In-sandbox runtimes run the function's own
# interpreter, which has only the standard library: there, encoders made once (json.dumps
# and json.loads rebuild or re-check them on every call).
try:
    import orjson
except ImportError:  # pragma: no cover - the in-sandbox side
    orjson = None  # type: ignore[assignment]
_stdlib_encode = json.JSONEncoder(separators=(",", ":")).encode
_stdlib_decode = json.JSONDecoder().decode


def _encode_json(header: dict) -> bytes:
    if orjson is not None:
        return orjson.dumps(header)
    return _stdlib_encode(header).encode()


# A result's header is one of four shapes, differing only in its tag: their heads made
# once (in the key order json.dumps would give).
_RESULT_HEADS = {
    (error, marked): '{"t":"result","error":' + ("null" if error is None else '"Unhandled"')
    + "," + ("" if marked else '"marked":false,') + '"tag":'
    for error in (None, "Unhandled") for marked in (True, False)
}
_RESULT_KEYS = frozenset({"t", "error", "marked", "tag"})


def _header_bytes(header: dict) -> bytes:
    if header.get("t") == "result" and header.keys() <= _RESULT_KEYS:
        head = _RESULT_HEADS.get((header.get("error"), header.get("marked", True)))
        tag = header.get("tag")
        if head is not None and type(tag) is int:
            return (head + str(tag) + "}").encode()
    return _encode_json(header)


def encode(header: dict, body: bytes = b"") -> bytes:
    raw = _header_bytes(header)
    return HEADER.pack(len(raw), len(body)) + raw + body


def decode_header(raw: bytes) -> dict:
    if orjson is not None:
        return orjson.loads(raw)
    return _stdlib_decode(raw.decode())


def too_large_error(size: int, what: str = "Response payload") -> bytes:
    """Lambda's error for a result (or error) over ``MAX_PAYLOAD``: what a runtime sends
    instead of it."""
    return _stdlib_encode({
        "errorMessage": f"{what} size ({size} bytes) exceeded maximum allowed payload size "
        f"({MAX_PAYLOAD} bytes).",
        "errorType": "Function.ResponseSizeTooLarge",
    }).encode()


def marker(nonce: str, seq: int) -> bytes:
    """Bytes that end the log of one invocation; the nonce keeps prints from forging it."""
    return f"\x00nimbus-end {nonce} {seq}\x00".encode()


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    if size == 0:
        return b""
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:], size - got)
        if n == 0:
            raise EOFError("control channel closed")
        got += n
    return bytes(buf)


class FrameReader:
    """Blocking reads of frames through a buffer, for a runtime's invocation loop: one
    ``recv`` usually brings a whole frame (instead of one per part). Only for a socket
    this reader alone reads from, since it may read ahead."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def read(self) -> tuple[dict, bytes]:
        buf = self.buf
        while len(buf) < HEADER.size:
            self._fill(HEADER.size - len(buf))
        head_len, body_len = HEADER.unpack_from(buf)
        end = HEADER.size + head_len + body_len
        while len(buf) < end:
            self._fill(end - len(buf))
        header = decode_header(bytes(buf[HEADER.size:HEADER.size + head_len]))
        body = bytes(buf[HEADER.size + head_len:end])
        del buf[:end]
        return header, body

    def _fill(self, missing: int) -> None:
        chunk = self.sock.recv(max(missing, 65536))
        if not chunk:
            raise EOFError("control channel closed")
        self.buf += chunk


def read_frame(sock: socket.socket) -> tuple[dict, bytes]:
    """Blocking read of one frame (in-sandbox side)."""
    head_len, body_len = HEADER.unpack(_recv_exactly(sock, HEADER.size))
    header = decode_header(_recv_exactly(sock, head_len))
    return header, _recv_exactly(sock, body_len)


def write_frame(sock: socket.socket, header: dict, body: bytes = b"") -> None:
    if len(body) > 65536:
        # Avoid concatenating megabytes: header first, then the body as is.
        raw = _header_bytes(header)
        sock.sendall(HEADER.pack(len(raw), len(body)) + raw)
        sock.sendall(body)
    else:
        sock.sendall(encode(header, body))
