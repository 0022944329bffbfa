"""SigV4 for S3's aws-chunked payloads: each chunk (and the trailer) carries a signature
chained to the previous one, starting from the request's own (the "seed").

``STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]``: every chunk is signed over
``AWS4-HMAC-SHA256-PAYLOAD``, the request's timestamp and scope, the previous signature,
the SHA-256 of the empty string and the chunk's SHA-256; a signed trailer over
``AWS4-HMAC-SHA256-TRAILER``, the previous signature and the SHA-256 of its
``name:value\\n`` lines. ``STREAMING-UNSIGNED-PAYLOAD-TRAILER`` signs neither.
"""

from __future__ import annotations

import hashlib
import hmac

from nimbus.errors import InvalidSignature
from nimbus.sigv4.canonical import signature_of

SIGNED_CHUNKS = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
SIGNED_CHUNKS_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_PAYLOADS = frozenset({SIGNED_CHUNKS, SIGNED_CHUNKS_TRAILER, UNSIGNED_TRAILER})
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class SignatureChain:
    """Checks chunk signatures in order; raises ``InvalidSignature`` on the first wrong one."""

    def __init__(self, key: bytes, timestamp: str, scope: str, seed: str) -> None:
        self._key = key
        self._timestamp = timestamp
        self._scope = scope
        self._previous = seed

    def chunk(self, data_sha256: str, signature: str) -> None:
        self._check(
            "AWS4-HMAC-SHA256-PAYLOAD",
            f"{self._previous}\n{EMPTY_SHA256}\n{data_sha256}",
            signature,
        )

    def trailer(self, lines: str, signature: str) -> None:
        """``lines``: the trailing headers as ``name:value\\n`` each."""
        digest = hashlib.sha256(lines.encode()).hexdigest()
        self._check("AWS4-HMAC-SHA256-TRAILER", f"{self._previous}\n{digest}", signature)

    def _check(self, algorithm: str, tail: str, signature: str) -> None:
        to_sign = f"{algorithm}\n{self._timestamp}\n{self._scope}\n{tail}"
        expected = signature_of(self._key, to_sign)
        if not hmac.compare_digest(expected, signature):
            raise InvalidSignature(
                "The request signature we calculated does not match the signature you "
                "provided: a chunk of the aws-chunked payload is not signed as its chain "
                "requires."
            )
        self._previous = signature
