"""AWS Signature Version 4's canonical request, shared by the side that verifies
(``sigv4.py``) and the side that signs (``signing.py``), so the two cannot drift apart.

Canonical form, as botocore computes it for every service but S3:

* path: the path as sent (already percent-encoded), dot segments and empty segments
  removed, then percent-encoded once more (so ``%20`` is signed as ``%2520``);
* query: each name and value decoded (``+`` is a space, as the application will read
  it) and encoded again per RFC 3986, sorted by name then value. botocore signs a query
  it did not build (``AWSRequest(url=...)``) exactly as written, so that form is
  accepted too when it differs;
* headers: the signed ones, lower-cased, values trimmed with inner runs of spaces
  collapsed, repeated headers joined with ``,``;
* payload: ``X-Amz-Content-SHA256`` when sent (``UNSIGNED-PAYLOAD`` included; a hash
  must match the body), else the SHA-256 of the body.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from urllib.parse import quote, unquote_to_bytes

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"


def as_bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def canonical_uri(raw_path: str | bytes) -> str:
    """The path as sent, normalised, then percent-encoded again (non-S3 services)."""
    path = as_bytes(raw_path)
    if not path:
        return "/"
    segments: list[bytes] = []
    for segment in path.split(b"/"):
        if segment == b"..":
            if segments:
                segments.pop()
        elif segment and segment != b".":
            segments.append(segment)
    first = b"/" if path.startswith(b"/") else b""
    last = b"/" if path.endswith(b"/") and segments else b""
    return quote(first + b"/".join(segments) + last, safe="/~")


def canonical_query(raw_query: str | bytes, *, drop_signature: bool = False) -> str:
    """RFC 3986 form: names and values decoded, re-encoded, sorted by name then value."""
    pairs = []
    for pair in as_bytes(raw_query).split(b"&"):
        if not pair:
            continue
        name, _, value = pair.partition(b"=")
        name = unquote_to_bytes(name.replace(b"+", b" "))
        if drop_signature and name == b"X-Amz-Signature":
            continue
        pairs.append(
            (
                quote(name, safe="-_.~"),
                quote(unquote_to_bytes(value.replace(b"+", b" ")), safe="-_.~"),
            )
        )
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def verbatim_query(raw_query: str | bytes, *, drop_signature: bool) -> str:
    """botocore's form for a query it did not encode itself: pairs as written, sorted."""
    query = as_bytes(raw_query).decode("utf-8", "replace")
    if not query:
        return ""
    pairs = [pair.partition("=")[::2] for pair in query.split("&")]
    if drop_signature:
        pairs = [(name, value) for name, value in pairs if name != "X-Amz-Signature"]
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def header_map(headers: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Header values by lower-cased name, repeated headers in the order received."""
    found: dict[str, list[str]] = {}
    for name, value in headers:
        found.setdefault(name.lower(), []).append(value)
    return found


def canonical_headers(headers: Mapping[str, list[str]], signed: Iterable[str]) -> str:
    """``name:value`` lines for the signed headers, each value trimmed, ending in ``\\n``."""
    lines = [
        f"{name}:{','.join(' '.join(value.split()) for value in headers.get(name, ()))}\n"
        for name in signed
    ]
    return "".join(lines)


def canonical_request(
    method: str, uri: str, query: str, headers: str, signed_headers: str, payload_hash: str
) -> str:
    return "\n".join((method.upper(), uri, query, headers, signed_headers, payload_hash))


def string_to_sign(timestamp: str, scope: str, request: str) -> str:
    digest = hashlib.sha256(request.encode()).hexdigest()
    return "\n".join((ALGORITHM, timestamp, scope, digest))


@lru_cache(maxsize=64)
def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, TERMINATOR):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def signature_of(key: bytes, to_sign: str) -> str:
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def amz_date(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), UTC).strftime(TIMESTAMP_FORMAT)
