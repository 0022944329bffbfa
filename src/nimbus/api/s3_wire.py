"""S3 answers on the wire: results and errors written from botocore's S3 model (the
protocol layer's rest-xml serialiser), object bodies streamed from their files a piece
at a time, never read whole."""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, BinaryIO

from starlette.types import Send

from nimbus.errors import NimbusError
from nimbus.protocol.models import ServiceSpec, load
from nimbus.protocol.serializer import serialize_error, serialize_result
from nimbus.threads import blocking

READ_CHUNK = 512 * 1024
_NO_BODY = frozenset({204, 304})


@functools.cache
def spec() -> ServiceSpec:
    return load("s3")


@dataclass
class Reply:
    """An answer: ``body`` bytes, or ``length`` bytes of ``file`` from ``offset``."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    file: BinaryIO | None = None
    offset: int = 0
    length: int = 0

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def result(operation: str, output: dict[str, Any], request_id: str) -> Reply:
    """``output`` (the operation's output shape, as a dict) as S3 writes it."""
    model = spec().operation(operation, "rest-xml")
    assert model is not None, operation
    answer = serialize_result(spec(), "rest-xml", model, output, request_id)
    return Reply(answer.status, dict(answer.headers), answer.body)


def error(exc: NimbusError, request_id: str) -> Reply:
    answer = serialize_error(spec(), "rest-xml", exc, request_id)
    return Reply(answer.status, dict(answer.headers), answer.body)


def timestamp(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def quoted(etag: str) -> str:
    return f'"{etag}"'


async def send_reply(send: Send, reply: Reply, *, head: bool, request_id: str) -> None:
    """Send ``reply`` (a HEAD's without its body; a file's a piece at a time)."""
    headers: dict[str, str] = {}
    for name, value in reply.headers.items():
        headers[name.lower()] = value
    headers.pop("x-amzn-requestid", None)
    headers["x-amz-request-id"] = request_id
    headers["x-amz-id-2"] = request_id
    length = reply.length if reply.file is not None else len(reply.body)
    if reply.status in _NO_BODY:
        headers.pop("content-length", None)
    elif not (head and "content-length" in headers):
        headers["content-length"] = str(length)
    try:
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
            }
        )
        if head or reply.status in _NO_BODY or length == 0:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        if reply.file is None:
            await send({"type": "http.response.body", "body": reply.body, "more_body": False})
            return
        fd = reply.file.fileno()
        position, end = reply.offset, reply.offset + length
        while position < end:
            piece = await blocking(os.pread, fd, min(READ_CHUNK, end - position), position)
            if not piece:
                raise OSError(f"object file ended {end - position} bytes early")
            position += len(piece)
            await send({"type": "http.response.body", "body": piece, "more_body": position < end})
    finally:
        with contextlib.suppress(OSError):
            reply.close()
