"""The S3 API: which requests are S3's, and serving them.

S3 requests skip the control plane's router and middleware (the server's front door
hands them here: ``s3_target`` then ``serve``) because their bodies stream: the generic
AWS protocol layer reads whole bodies, S3's PutObject and UploadPart never do.

Addressing (README "S3-compatible buckets"):

- path style, ``http://HOST:PORT/<bucket>/<key>``: any request signed for service
  ``s3`` (Authorization header or presigned ``X-Amz-Credential``), a SigV2 presigned URL
  (``AWSAccessKeyId`` and ``Signature``), and any request to a host named
  ``s3.<anything>``;
- virtual-host style, ``Host: <bucket>.s3.<anything>`` (``<bucket>.s3.localhost``), with
  the key as the path; a request signed for ``s3`` to ``<bucket>.localhost`` too (what
  boto3 makes of ``endpoint_url="http://localhost:PORT"``).

Each request is authenticated (``s3_auth``), matched to its operation by botocore's S3
model (``nimbus.protocol.rest``), its small XML body and headers parsed by the same
model, and handed to the operation's handler (``s3_buckets``, ``s3_objects``,
``s3_multipart``), which answers with a ``Reply`` (``s3_wire``).
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote

from starlette.types import Receive, Scope, Send

from nimbus.api.s3_auth import authorize, is_presigned_v2
from nimbus.api.s3_buckets import BUCKET_HANDLERS
from nimbus.api.s3_call import S3Call
from nimbus.api.s3_multipart import MULTIPART_HANDLERS
from nimbus.api.s3_objects import OBJECT_HANDLERS
from nimbus.api.s3_payload import ClientGone, Payload
from nimbus.api.s3_wire import Reply, error, send_reply, spec
from nimbus.api.services import services_of
from nimbus.errors import NimbusError
from nimbus.protocol import rest
from nimbus.protocol.errors import AwsError
from nimbus.protocol.messages import HttpRequest
from nimbus.protocol.problems import Problems
from nimbus.s3.events import REQUEST
from nimbus.s3.records import RequestInfo

log = logging.getLogger("nimbus.api.s3")

HANDLERS = {**BUCKET_HANDLERS, **OBJECT_HANDLERS, **MULTIPART_HANDLERS}
# Operations whose body is the object's bytes: streamed, never read whole.
STREAMING = frozenset({"PutObject", "UploadPart"})
# The XML documents of the other operations (DeleteObjects: 1000 keys of 1 KiB at most).
MAX_DOCUMENT = 4 * 1024 * 1024
# Operations the model names twice (a deprecated shape and its successor).
_ALIASES = {
    "GetBucketNotification": "GetBucketNotificationConfiguration",
    "PutBucketNotification": "PutBucketNotificationConfiguration",
}
_VIRTUAL_HOST = re.compile(r"^(.+)\.s3\.")
_CREDENTIAL = re.compile(r"Credential=([^,\s]+)")


@dataclass(frozen=True)
class S3Target:
    """An S3 request: ``bucket`` from a virtual host (None: path style)."""

    bucket: str | None


def _host(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"host":
            host = value.decode("latin-1").lower()
            if host.startswith("["):  # [::1]:9000
                return host.partition("]")[0] + "]"
            return host.rsplit(":", 1)[0] if ":" in host else host
    return ""


def _signed_service(scope: Scope) -> str | None:
    credential = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            found = _CREDENTIAL.search(value.decode("latin-1"))
            credential = found[1] if found else None
            break
    else:
        query = scope.get("query_string", b"")
        if b"X-Amz-Credential=" in query:
            for key, value in parse_qsl(query.decode("latin-1")):
                if key == "X-Amz-Credential":
                    credential = value
    if credential is None:
        return None
    parts = unquote(credential).split("/")
    return parts[3] if len(parts) == 5 else None


def s3_target(scope: Scope) -> S3Target | None:
    """Whether an HTTP request is for the S3 API, and its virtual-host bucket."""
    host = _host(scope)
    found = _VIRTUAL_HOST.match(host)
    if found is not None:
        return S3Target(found[1])
    if host.startswith("s3."):
        return S3Target(None)
    if _signed_service(scope) != "s3" and not is_presigned_v2(scope.get("query_string", b"")):
        return None
    if host.endswith(".localhost"):
        return S3Target(host.removesuffix(".localhost"))
    return S3Target(None)


def _headers(scope: Scope) -> tuple[dict[str, str], list[tuple[str, str]]]:
    joined: dict[str, str] = {}
    pairs: list[tuple[str, str]] = []
    for key, value in scope["headers"]:
        name, text = key.decode("latin-1").lower(), value.decode("latin-1")
        pairs.append((name, text))
        joined[name] = f"{joined[name]},{text}" if name in joined else text
    return joined, pairs


def _raw_path(scope: Scope) -> bytes:
    raw = scope.get("raw_path")
    if raw:
        return bytes(raw).split(b"?", 1)[0]
    return quote(scope["path"], safe="/~!$&'()*+,;=:@").encode()


def request_id() -> str:
    return secrets.token_hex(8).upper()


async def serve(scope: Scope, receive: Receive, send: Send, target: S3Target) -> None:
    """Answer one S3 request (see the module docstring)."""
    rid = request_id()
    method = scope["method"]
    headers, pairs = _headers(scope)
    payload: Payload | None = None
    reply: Reply
    try:
        services = services_of(scope)
        config = services.config
        raw_path = _raw_path(scope)
        query = scope.get("query_string", b"")
        pending = authorize(
            method,
            raw_path,
            query,
            pairs,
            credentials=services.credentials if config.api_auth == "sigv4" else None,
            region=config.region,
            virtual_bucket=target.bucket,
        )
        path = raw_path.decode("latin-1")
        if target.bucket is not None:
            path = f"/{quote(target.bucket, safe='')}{path}"
        http = HttpRequest(method, path, query.decode("latin-1"), headers)
        found = rest.match(spec(), method, path, http.query, headers)
        if found is None:
            raise AwsError(
                "MethodNotAllowed",
                f"The specified method is not allowed against this resource: {method} {path}",
                status=405,
            )
        route, labels = found
        if route.operation.name in _ALIASES:
            route = _route(_ALIASES[route.operation.name], method)
        operation = route.operation.name
        handler = HANDLERS.get(operation)
        if handler is None:
            raise AwsError(
                "NotImplemented",
                f"nimbus does not implement the S3 operation {operation}.",
                status=501,
            )
        payload = Payload(receive, headers, pending)
        if operation not in STREAMING:
            http.body = await payload.read_all(MAX_DOCUMENT)
            payload.finish(_md5_hex(http.body) if "content-md5" in headers else None)
        problems = Problems("rest-xml")
        params = rest.parse(spec(), route, labels, http, problems)
        problems.check()
        REQUEST.set(RequestInfo(rid, _client_ip(scope), _principal(scope, pairs)))
        call = S3Call(
            operation=operation,
            params=params,
            headers=headers,
            query=dict(http.query),
            payload=payload,
            services=services,
            request_id=rid,
            base_url=_base_url(scope, headers),
            virtual_host=target.bucket is not None,
        )
        reply = await handler(call)
    except ClientGone:
        return  # nobody to answer
    except NimbusError as exc:
        reply = error(exc, rid)
    except Exception as exc:  # a bug must still get an S3-shaped answer
        log.exception("unexpected error serving S3 %s %s", method, scope.get("path"))
        reply = error(
            AwsError("InternalError", f"We encountered an internal error: {exc!r}", status=500),
            rid,
        )
    waiting = "100-continue" in headers.get("expect", "").lower()
    if payload is not None and (payload.done or payload.received):
        pass
    elif waiting and (payload is None or not payload.started):
        # The client waits for 100 Continue, which it never got, and sends no body: the
        # connection cannot carry another request (the server would take what comes next
        # for this one's body).
        reply.headers["Connection"] = "close"
    elif payload is not None:
        await payload.drain()  # so the client gets to read the answer
    else:
        await Payload.drain_receive(receive)
    await send_reply(send, reply, head=method == "HEAD", request_id=rid)


def _client_ip(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "127.0.0.1"


def _principal(scope: Scope, headers: list[tuple[str, str]]) -> str:
    """The access key a request was signed with ("anonymous": none)."""
    for name, value in headers:
        if name == "authorization":
            found = _CREDENTIAL.search(value)
            if found:
                return unquote(found[1]).split("/", 1)[0]
            if value.startswith("AWS "):
                return value[4:].split(":", 1)[0]
    for key, value in parse_qsl(scope.get("query_string", b"").decode("latin-1")):
        if key in ("X-Amz-Credential", "AWSAccessKeyId"):
            return value.split("/", 1)[0]
    return "anonymous"


def _route(operation: str, method: str) -> rest.RestRoute:
    """The route of ``operation`` (the successor of a deprecated operation that has the
    same method and path, and which ``rest.match`` may find first)."""
    return next(r for r in rest.routes(spec())[method] if r.operation.name == operation)


def _md5_hex(body: bytes) -> str:
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


def _base_url(scope: Scope, headers: dict[str, str]) -> str:
    host = headers.get("host") or "{}:{}".format(*(scope.get("server") or ("localhost", 80)))
    return f"{scope.get('scheme', 'http')}://{host}"
