"""Signing requests with AWS Signature Version 4: the nimbus CLI's side of ``api_auth =
"sigv4"``, and presigned URLs. The canonical form is ``canonical.py``'s, as the server's
(``sigv4.py``), so what this signs is what the server verifies."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from time import time
from typing import TYPE_CHECKING
from urllib.parse import quote

from nimbus.sigv4.canonical import (
    ALGORITHM,
    TERMINATOR,
    amz_date,
    as_bytes,
    canonical_headers,
    canonical_query,
    canonical_request,
    canonical_uri,
    header_map,
    signature_of,
    signing_key,
    string_to_sign,
)
from nimbus.sigv4.credentials import Credentials

if TYPE_CHECKING:
    import httpx


def _signed_names(headers: Mapping[str, list[str]]) -> list[str]:
    # What survives proxies unchanged: Host, Content-Type and the x-amz-* headers.
    names = [n for n in headers if n in ("host", "content-type") or n.startswith("x-amz-")]
    if "host" not in names:
        raise ValueError("a request to sign needs its Host header")
    return sorted(names)


def sign(
    method: str,
    raw_path: str | bytes,
    raw_query: str | bytes,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    credentials: Credentials,
    *,
    region: str,
    service: str,
    now: float | None = None,
) -> list[tuple[str, str]]:
    """The headers to add to sign a request: ``X-Amz-Date`` and ``Authorization``.

    ``headers`` must include ``Host`` and no ``X-Amz-Date`` or ``Authorization`` yet;
    path and query are signed as they will be sent.
    """
    timestamp = amz_date(time() if now is None else now)
    found = header_map([*headers, ("x-amz-date", timestamp)])
    names = _signed_names(found)
    signed = ";".join(names)
    declared = found.get("x-amz-content-sha256", [None])[0]
    payload = declared or hashlib.sha256(body).hexdigest()
    request = canonical_request(
        method,
        canonical_uri(raw_path),
        canonical_query(raw_query),
        canonical_headers(found, names),
        signed,
        payload,
    )
    date = timestamp[:8]
    scope = f"{date}/{region}/{service}/{TERMINATOR}"
    key = signing_key(credentials.secret_access_key, date, region, service)
    signature = signature_of(key, string_to_sign(timestamp, scope, request))
    authorization = (
        f"{ALGORITHM} Credential={credentials.access_key_id}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
    return [("X-Amz-Date", timestamp), ("Authorization", authorization)]


def presign(
    method: str,
    raw_path: str | bytes,
    raw_query: str | bytes,
    headers: Iterable[tuple[str, str]],
    credentials: Credentials,
    *,
    region: str,
    service: str,
    expires: int = 3600,
    body: bytes = b"",
    now: float | None = None,
) -> str:
    """The query string of a presigned request: ``raw_query`` plus the ``X-Amz-*`` fields."""
    timestamp = amz_date(time() if now is None else now)
    found = header_map(headers)
    names = _signed_names(found)
    date = timestamp[:8]
    scope = f"{date}/{region}/{service}/{TERMINATOR}"
    auth = {
        "X-Amz-Algorithm": ALGORITHM,
        "X-Amz-Credential": f"{credentials.access_key_id}/{scope}",
        "X-Amz-Date": timestamp,
        "X-Amz-Expires": str(expires),
        "X-Amz-SignedHeaders": ";".join(names),
    }
    encoded = "&".join(f"{k}={quote(v, safe='-_.~')}" for k, v in auth.items())
    query = as_bytes(raw_query).decode()
    query = f"{query}&{encoded}" if query else encoded
    payload = found.get("x-amz-content-sha256", [None])[0] or hashlib.sha256(body).hexdigest()
    request = canonical_request(
        method,
        canonical_uri(raw_path),
        canonical_query(query),
        canonical_headers(found, names),
        auth["X-Amz-SignedHeaders"],
        payload,
    )
    key = signing_key(credentials.secret_access_key, date, region, service)
    return f"{query}&X-Amz-Signature={signature_of(key, string_to_sign(timestamp, scope, request))}"


def httpx_auth(
    credentials: Credentials, *, region: str, service: str = "lambda"
) -> Callable[[httpx.Request], httpx.Request]:
    """An ``auth=`` for httpx that signs each request (its body must be bytes, not a stream)."""

    def auth(request: httpx.Request) -> httpx.Request:
        path, _, query = request.url.raw_path.partition(b"?")
        added = sign(
            request.method,
            path,
            query,
            request.headers.multi_items(),
            request.content,
            credentials,
            region=region,
            service=service,
        )
        for name, value in added:
            request.headers[name] = value
        return request

    return auth
