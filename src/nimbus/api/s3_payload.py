"""An S3 request's body as it streams in: never held whole (``chunks``), or read whole
only for the small XML documents of bucket and multipart calls (``read_all``).

The body may come as sent, or ``aws-chunked`` (``x-amz-content-sha256:
STREAMING-...`` or ``Content-Encoding: aws-chunked``): ``<hex size>[;chunk-signature=
<sig>]\\r\\n<data>\\r\\n`` chunks, a zero-size last chunk, then trailing headers (the
``x-amz-checksum-*`` a client computed while sending, and ``x-amz-trailer-signature``
when signed), each line ending ``\\r\\n``, then an empty line. Chunk and trailer
signatures are checked against the request's (``sigv4.chunks``) when requests are
authenticated; a signed payload hash is checked against the SHA-256 of the body.

``finish`` checks what can only be checked at the end (the signature's payload hash,
the decoded length, the declared checksums and Content-MD5) and must pass before
anything the body made is committed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import AsyncIterator, Callable, Mapping

from starlette.types import Receive

from nimbus.api.s3_auth import check_body_hash
from nimbus.errors import NimbusError
from nimbus.protocol.errors import AwsError
from nimbus.s3.checksums import HEADER_PREFIX, KNOWN, check_algorithm, new_checksum
from nimbus.s3.errors import bad_digest, invalid_argument, invalid_request
from nimbus.sigv4.chunks import STREAMING_PAYLOADS, UNSIGNED_TRAILER, SignatureChain
from nimbus.sigv4.verification import Pending
from nimbus.threads import blocking

# Bytes gathered from the network before they are hashed and handed on (one thread hop):
# large enough that the hop costs little, small enough that an upload holds little.
BATCH = 1024 * 1024
MAX_CHUNK_HEADER = 4096  # a chunk's size line (signature included) or a trailer line
MAX_TRAILER = 16 * 1024


class ClientGone(Exception):
    """The client disconnected before its body was whole: nobody to answer."""


def signature_error(exc: NimbusError) -> AwsError:
    return AwsError(
        "SignatureDoesNotMatch",
        exc.message,
        status=403,
    )


class Payload:
    """One request's body (see the module docstring)."""

    def __init__(
        self, receive: Receive, headers: Mapping[str, str], pending: Pending | None
    ) -> None:
        self._receive = receive
        self.headers = headers
        sha = headers.get("x-amz-content-sha256", "")
        encodings = [e.strip() for e in headers.get("content-encoding", "").split(",")]
        self.chunked = sha in STREAMING_PAYLOADS or "aws-chunked" in encodings
        self._chain: SignatureChain | None = (
            pending.chain()
            if pending is not None and pending.streaming and sha != UNSIGNED_TRAILER
            else None
        )
        # A whole-body hash the signature covers: checked in finish.
        self._sha256 = hashlib.sha256() if pending is not None and pending.needs_body_hash else None
        self._declared_sha = sha if self._sha256 is not None and sha else None
        self._pending = pending
        self.started = False  # the app has asked for the body (100-continue sent)
        self.done = False  # the body has been read (and decoded) to its end
        self.received = False  # its last message has arrived (receive() would now wait)
        self.size = 0  # decoded bytes so far
        self.trailers: dict[str, str] = {}
        self.declared_size = self._declared_size()
        self.checksum_algorithm = self._checksum_algorithm()
        self._checksum = new_checksum(self.checksum_algorithm) if self.checksum_algorithm else None

    # -- what the client declared ------------------------------------------------------

    def _declared_size(self) -> int | None:
        name = "x-amz-decoded-content-length" if self.chunked else "content-length"
        text = self.headers.get(name)
        if text is None:
            if self.chunked:
                raise AwsError(
                    "MissingContentLength",
                    "You must provide the Content-Length HTTP header: an aws-chunked body "
                    "needs x-amz-decoded-content-length.",
                    status=411,
                )
            return None
        if not (text.strip().isascii() and text.strip().isdigit()):
            raise invalid_argument(f"{name} must be a number of bytes", name, text)
        return int(text)

    def _checksum_algorithm(self) -> str | None:
        """The algorithm of the checksum the client sends (header or trailer), if any."""
        trailer = self.headers.get("x-amz-trailer", "").strip().lower()
        if trailer:
            if not trailer.startswith(HEADER_PREFIX):
                raise invalid_request(f"The trailing header {trailer} is not supported.")
            return check_algorithm(trailer.removeprefix(HEADER_PREFIX))
        found = [name for name in self.headers if name.startswith(HEADER_PREFIX)]
        named = [n for n in found if n.removeprefix(HEADER_PREFIX).upper() in KNOWN]
        if len(named) > 1:
            raise invalid_request(
                "Expecting a single x-amz-checksum- header. Multiple "
                "checksum Types are not allowed."
            )
        if named:
            return check_algorithm(named[0].removeprefix(HEADER_PREFIX))
        sdk = self.headers.get("x-amz-sdk-checksum-algorithm")
        return check_algorithm(sdk) if sdk else None

    def compute(self, algorithm: str) -> None:
        """Compute ``algorithm``'s checksum of the body (a multipart upload's parts all
        have the upload's), unless the client declared it; one of another algorithm is
        refused."""
        if self.checksum_algorithm is None:
            self.checksum_algorithm = algorithm
            self._checksum = new_checksum(algorithm)
        elif self.checksum_algorithm != algorithm:
            raise invalid_request(
                f"Checksum Type mismatch occurred, expected checksum Type: "
                f"{algorithm.lower()}, actual checksum Type: {self.checksum_algorithm.lower()}"
            )

    @staticmethod
    async def drain_receive(receive: Receive) -> None:
        """Read a body no ``Payload`` was made for (refused before), to its end."""
        while True:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                return

    @property
    def expected_checksum(self) -> str | None:
        """The checksum value the client declared (header, or trailer once read)."""
        if self.checksum_algorithm is None:
            return None
        name = HEADER_PREFIX + self.checksum_algorithm.lower()
        return self.trailers.get(name) or self.headers.get(name)

    def computed_checksum(self) -> dict[str, str] | None:
        """``{"algorithm", "value"}`` of the body read (after ``finish``)."""
        if self._checksum is None or self.checksum_algorithm is None:
            return None
        return {"algorithm": self.checksum_algorithm, "value": self._checksum.value()}

    # -- reading ------------------------------------------------------------------------

    async def _raw(self) -> AsyncIterator[bytes]:
        self.started = True
        while True:
            message = await self._receive()
            if message["type"] != "http.request":
                raise ClientGone()
            body = message.get("body", b"")
            # Noted before the piece is handed on: the consumer may stop at it.
            self.received = not message.get("more_body", False)
            if body:
                if self._sha256 is not None and self.chunked:
                    self._sha256.update(body)  # a declared hash covers the body as sent
                yield body
            if self.received:
                return

    async def chunks(
        self, batch: int = BATCH, sink: Callable[[bytes], object] | None = None
    ) -> AsyncIterator[bytes]:
        """The body's bytes (decoded from aws-chunked) in pieces of about ``batch`` bytes,
        each hashed off the event loop (and given to ``sink`` there, in the same hop)
        before it is handed on."""
        source = self._decode(self._raw()) if self.chunked else self._raw()
        pending: list[bytes] = []
        gathered = 0
        async for data in source:
            self.size += len(data)
            if self.declared_size is not None and self.size > self.declared_size:
                raise _incomplete(self.declared_size, self.size)
            pending.append(data)
            gathered += len(data)
            if gathered >= batch:
                joined = b"".join(pending)
                pending.clear()
                gathered = 0
                await blocking(self._digest, joined, sink)
                yield joined
        if pending:
            joined = b"".join(pending)
            await blocking(self._digest, joined, sink)
            yield joined
        self.done = True

    async def write_to(self, sink: Callable[[bytes], object]) -> None:
        """Stream the whole body into ``sink`` (a blob writer's ``write``), a batch at a
        time, never holding more than one batch."""
        async for _ in self.chunks(sink=sink):
            pass

    def _digest(self, data: bytes, sink: Callable[[bytes], object] | None = None) -> None:
        if sink is not None:
            sink(data)
        if self._sha256 is not None and not self.chunked:
            self._sha256.update(data)
        if self._checksum is not None:
            self._checksum.update(data)

    async def read_all(self, limit: int) -> bytes:
        """The whole (small) body; over ``limit`` bytes is refused."""
        if self.declared_size is not None and self.declared_size > limit:
            raise _too_big(limit)
        parts: list[bytes] = []
        size = 0
        async for data in self.chunks():
            size += len(data)
            if size > limit:
                raise _too_big(limit)
            parts.append(data)
        return b"".join(parts)

    async def drain(self) -> None:
        """Read what is left of the body, unused, so the client gets to read the answer."""
        if self.done or self.received:
            return
        try:
            async for _ in self._raw():
                pass
        except ClientGone:
            pass
        self.done = True

    def finish(self, md5_hex: str | None = None) -> None:
        """Check what the end of the body settles; raise before anything is committed.
        ``md5_hex``: the body's MD5 where the caller computed it (else Content-MD5 is
        checked here only if the caller hashed nothing)."""
        if self.declared_size is not None and self.size != self.declared_size:
            raise _incomplete(self.declared_size, self.size)
        if self._sha256 is not None and self._pending is not None and self._declared_sha is None:
            check_body_hash(self._pending, self._sha256.hexdigest())
        if (
            self._sha256 is not None
            and self._declared_sha is not None
            and not hmac.compare_digest(self._sha256.hexdigest(), self._declared_sha)
        ):
            raise AwsError(
                "XAmzContentSHA256Mismatch",
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
                ClientComputedContentSHA256=self._declared_sha,
                S3ComputedContentSHA256=self._sha256.hexdigest(),
            )
        content_md5 = self.headers.get("content-md5")
        if content_md5 is not None and md5_hex is not None:
            try:
                declared = base64.b64decode(content_md5.strip(), validate=True)
            except (binascii.Error, ValueError):
                declared = b""
            if len(declared) != 16:
                refused = AwsError("InvalidDigest", "The Content-MD5 you specified was invalid.")
                refused.extra["Content-MD5"] = content_md5
                raise refused
            if declared.hex() != md5_hex:
                raise AwsError(
                    "BadDigest",
                    "The Content-MD5 you specified did not match what we received.",
                    ExpectedDigest=content_md5,
                    CalculatedDigest=base64.b64encode(bytes.fromhex(md5_hex)).decode(),
                )
        computed = self.computed_checksum()
        if computed is not None:
            expected = self.expected_checksum
            if expected is None:
                if self.headers.get("x-amz-trailer"):
                    raise invalid_request(
                        f"The trailing header {self.headers['x-amz-trailer']} was declared "
                        "but not sent."
                    )
                return  # an algorithm was named (x-amz-sdk-checksum-algorithm) but no value
            if expected.strip() != computed["value"]:
                raise bad_digest(computed["algorithm"])

    # -- aws-chunked ---------------------------------------------------------------------

    async def _decode(self, raw: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        reader = _Buffered(raw)
        while True:
            line = await reader.line()
            size_text, _, extension = line.partition(";")
            try:
                size = int(size_text.strip(), 16)
            except ValueError:
                raise _malformed(f"chunk size line '{line[:80]}' is not hexadecimal") from None
            signature = _chunk_signature(extension)
            if self._chain is not None and signature is None:
                raise _malformed("a chunk of a signed aws-chunked payload has no signature")
            digest = hashlib.sha256() if self._chain is not None else None
            remaining = size
            while remaining:
                data = await reader.take(remaining)
                remaining -= len(data)
                if digest is not None:
                    digest.update(data)
                yield data
            if self._chain is not None and digest is not None and signature is not None:
                try:
                    self._chain.chunk(digest.hexdigest(), signature)
                except NimbusError as exc:
                    raise signature_error(exc) from None
            if size == 0:
                break
            if await reader.line() != "":
                raise _malformed("a chunk's data does not end with CRLF")
        await self._read_trailers(reader)
        if not await reader.at_end():
            raise _malformed("bytes follow the end of the aws-chunked body")

    async def _read_trailers(self, reader: _Buffered) -> None:
        lines: list[str] = []
        total = 0
        signature: str | None = None
        while True:
            line = await reader.line_or_end()
            if line is None or line == "":
                break
            total += len(line)
            if total > MAX_TRAILER:
                raise _malformed("the trailing headers are too long")
            name, colon, value = line.partition(":")
            if not colon:
                raise _malformed(f"trailing header line '{line[:80]}' has no colon")
            name = name.strip().lower()
            if name == "x-amz-trailer-signature":
                signature = value.strip()
                continue
            self.trailers[name] = value.strip()
            lines.append(f"{name}:{value.strip()}\n")
        if self._chain is not None and self.headers.get("x-amz-trailer"):
            if signature is None:
                raise _malformed("the trailing headers of a signed payload have no signature")
            try:
                self._chain.trailer("".join(lines), signature)
            except NimbusError as exc:
                raise signature_error(exc) from None


class _Buffered:
    """Lines and byte counts out of a stream of body pieces, holding one piece at most
    (plus a line being assembled)."""

    def __init__(self, raw: AsyncIterator[bytes]) -> None:
        self._raw = raw
        self._buffer = b""
        self._ended = False

    async def _more(self) -> bool:
        if self._ended:
            return False
        try:
            piece = await anext(self._raw)
        except StopAsyncIteration:
            self._ended = True
            return False
        self._buffer += piece
        return True

    async def line(self) -> str:
        found = await self.line_or_end()
        if found is None:
            raise _malformed("the aws-chunked body ends where a line was expected")
        return found

    async def line_or_end(self) -> str | None:
        """The next line (without its CRLF); None when the body ends instead."""
        while True:
            end = self._buffer.find(b"\r\n")
            if end >= 0:
                text = self._buffer[:end]
                self._buffer = self._buffer[end + 2 :]
                return text.decode("latin-1")
            if len(self._buffer) > MAX_CHUNK_HEADER:
                raise _malformed("a chunk header or trailer line is too long")
            if not await self._more():
                if not self._buffer:
                    return None
                raise _malformed("the aws-chunked body ends in the middle of a line")

    async def take(self, limit: int) -> bytes:
        while not self._buffer:
            if not await self._more():
                raise _malformed("the aws-chunked body ends in the middle of a chunk")
        data = self._buffer[:limit]
        self._buffer = self._buffer[limit:]
        return data

    async def at_end(self) -> bool:
        while not self._buffer:
            if not await self._more():
                return True
        return not self._buffer.strip(b"\r\n")


def _chunk_signature(extension: str) -> str | None:
    for item in extension.split(";"):
        name, _, value = item.strip().partition("=")
        if name == "chunk-signature":
            return value.strip()
    return None


def _malformed(detail: str) -> AwsError:
    return AwsError("IncompleteBody", f"The aws-chunked request body is malformed: {detail}.")


def _incomplete(declared: int, got: int) -> AwsError:
    return AwsError(
        "IncompleteBody",
        f"You did not provide the number of bytes specified by the Content-Length HTTP "
        f"header: {declared} declared, {got} received.",
    )


def _too_big(limit: int) -> AwsError:
    return AwsError(
        "MaxMessageLengthExceeded",
        f"Your request was too big: this request's body must be at most {limit} bytes.",
    )
