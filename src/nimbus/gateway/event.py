"""An HTTP request as a Lambda event: API Gateway payload format versions 2.0 and 1.0.

Function URLs and HTTP APIs send functions the same event, documented at

- https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html#urls-payloads
- https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html

What a handler sees, and where the documents leave it open, what AWS is observed to do:

- ``headers``: names lower-cased, repeated headers joined with ``,``; the ``Cookie``
  header(s) are removed and split into ``cookies`` (omitted when there are none).
  ``x-forwarded-for`` (the client's address appended), ``x-forwarded-proto`` and
  ``x-forwarded-port`` are set by the gateway, as AWS's front end does.
- ``rawQueryString`` is the query as received (``""`` when none);
  ``queryStringParameters`` holds the decoded values (``+`` is a space), repeated keys
  joined with ``,``, and is omitted when there is no query.
- ``rawPath`` and ``requestContext.http.path`` are the path as received, still
  percent-encoded, as function URLs deliver it. (HTTP APIs on AWS are seen to deliver a
  decoded path, which loses the difference between ``/`` and ``%2F``; not copied.)
- ``body`` is omitted when the request has none. It is a string with ``isBase64Encoded``
  false only for text media types (``text/*``, JSON, XML, JavaScript and their ``+json``
  / ``+xml`` forms) whose bytes are UTF-8; anything else, including
  ``application/x-www-form-urlencoded`` and a body without a content type, is base64
  with ``isBase64Encoded`` true, which is what AWS is observed to send for form posts.
- ``requestContext.authorizer``, ``pathParameters`` and ``stageVariables`` appear only
  when set (a function URL with auth type NONE has none of them, and its ``accountId`` is
  ``"anonymous"``).

Payload format 1.0 (``build_event_v1``, HTTP API integrations with
``payloadFormatVersion`` 1.0) is the REST-API-style event of the same guide:

- ``resource`` and ``requestContext.resourcePath`` are the route's path (``/pets/{id}``),
  or ``$default`` for the ``$default`` route; ``requestContext.resourceId`` is the route
  key (``GET /pets/{id}``).
- ``path`` and ``requestContext.path`` are the path as received, which on an HTTP API
  starts with the stage's name for a named stage (``/Prod/hello``): HTTP APIs, unlike
  REST APIs, do not strip it (observed; Powertools and serverless-http strip it
  themselves).
- ``headers`` holds the last value of a repeated header, ``multiValueHeaders`` all of
  them; ``Cookie`` stays a header. The gateway's own headers carry AWS's spelling
  (``X-Forwarded-For``...); the client's arrive lower-cased, as ASGI hands them over.
- ``queryStringParameters`` holds the last value of a repeated key,
  ``multiValueQueryStringParameters`` all of them; both are null without a query, as are
  ``pathParameters``, ``stageVariables`` and ``body`` when there are none.
- ``requestContext.identity`` has REST's members, null but ``sourceIp`` and
  ``userAgent`` (and, for an ``AWS_IAM`` caller, its ``accessKey``, ``accountId``,
  ``caller``, ``user`` and ``userArn``).
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from nimbus import ids
from nimbus.clock import now_ms
from nimbus.gateway.headers import first_header
from nimbus.observe.tracing import TraceHeader

# Month names for ``requestContext.time``; strftime's %b would follow the locale.
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# Media types sent as text besides text/*. Everything else is base64: when in doubt the
# bytes reach the function intact.
_TEXT_SUBTYPES = frozenset({"json", "xml", "javascript", "x-javascript", "ecmascript"})

# Headers the gateway sets itself; what a client sent under these names is replaced.
_GATEWAY_HEADERS = frozenset({"x-forwarded-proto", "x-forwarded-port", "x-amzn-trace-id"})

# requestContext.identity of a payload format 1.0 event: REST's members, null unless known.
_IDENTITY_KEYS = (
    "accessKey", "accountId", "caller", "cognitoAmr", "cognitoAuthenticationProvider",
    "cognitoAuthenticationType", "cognitoIdentityId", "cognitoIdentityPoolId",
    "principalOrgId", "sourceIp", "user", "userAgent", "userArn",
)  # fmt: skip



# Not frozen: a frozen dataclass sets each field through object.__setattr__, 2.6 us for
# these twelve against 0.4, once per request. Nothing changes them after creation.
@dataclass(slots=True)
class HttpRequest:
    """An HTTP request as it arrived at the gateway, before any interpretation."""

    method: str
    raw_path: str  # path as received (percent-encoded), without the query string
    raw_query: str  # the bytes after '?', as received ('' when none)
    headers: list[tuple[str, str]]  # in order, original case, duplicates kept
    body: bytes
    source_ip: str
    protocol: str = "HTTP/1.1"
    request_id: str = field(default_factory=ids.request_id)
    time_epoch_ms: int = field(default_factory=now_ms)
    scheme: str = "http"  # of the connection the client made: x-forwarded-proto
    server_port: int | None = None  # the port the client connected to: x-forwarded-port
    trace_id: str | None = None  # X-Ray header to pass on as x-amzn-trace-id, if any
    # trace_id parsed, when the gateway set it: the trigger's segment continues it without
    # reading the headers (and parsing the text) again.
    trace: TraceHeader | None = None

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or None."""
        return first_header(self.headers, name)


@dataclass(slots=True)
class Trigger:
    """How a request was routed to the function: which URL or API, route and stage."""

    api_id: str  # the URL id for function URLs, the API id for HTTP APIs
    domain_name: str  # the host the client used: "<url-id>.lambda-url.localhost", ...
    account_id: str  # "anonymous" for function URLs with AuthType NONE (as Lambda does)
    route_key: str = "$default"
    stage: str = "$default"
    path_parameters: dict[str, str] | None = None
    stage_variables: dict[str, str] | None = None
    authorizer: dict[str, Any] | None = None  # e.g. {"iam": {...}} for AWS_IAM callers


def build_event(request: HttpRequest, trigger: Trigger) -> dict[str, Any]:
    """The payload format 2.0 event a function receives for ``request``."""
    headers, cookies = _headers_and_cookies(request)
    raw_path = _text(request.raw_path)
    raw_query = _text(request.raw_query)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": trigger.route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    query = query_parameters(raw_query)
    if query:
        event["queryStringParameters"] = query
    context: dict[str, Any] = {
        "accountId": trigger.account_id,
        "apiId": trigger.api_id,
    }
    if trigger.authorizer is not None:
        context["authorizer"] = trigger.authorizer
    context.update(
        {
            "domainName": trigger.domain_name,
            # The URL or API id, whichever host the client used (Lambda: the first label
            # of the domain, which is that id).
            "domainPrefix": trigger.api_id,
            "http": {
                "method": request.method,
                "path": raw_path,
                "protocol": request.protocol,
                "sourceIp": request.source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": request.request_id,
            "routeKey": trigger.route_key,
            "stage": trigger.stage,
            "time": format_time(request.time_epoch_ms),
            "timeEpoch": request.time_epoch_ms,
        }
    )
    event["requestContext"] = context
    if request.body:
        body, encoded = encode_body(request.body, request.header("content-type"))
        event["body"] = body
    else:
        encoded = False
    if trigger.path_parameters:
        event["pathParameters"] = dict(trigger.path_parameters)
    event["isBase64Encoded"] = encoded
    if trigger.stage_variables:
        event["stageVariables"] = dict(trigger.stage_variables)
    return event


def build_event_v1(request: HttpRequest, trigger: Trigger) -> dict[str, Any]:
    """The payload format 1.0 event (REST API style) a function receives for ``request``."""
    headers, multi_headers = _headers_v1(request)
    path = _text(request.raw_path)
    query, multi_query = query_parameters_v1(_text(request.raw_query))
    route_path = _route_path(trigger.route_key)
    identity: dict[str, Any] = dict.fromkeys(_IDENTITY_KEYS)
    identity["sourceIp"] = request.source_ip
    identity["userAgent"] = _text(request.header("user-agent") or "") or None
    iam = (trigger.authorizer or {}).get("iam")
    if isinstance(iam, dict):
        identity.update(
            accessKey=iam.get("accessKey"),
            accountId=iam.get("accountId"),
            caller=iam.get("callerId"),
            user=iam.get("userId"),
            userArn=iam.get("userArn"),
        )
    if request.body:
        body, encoded = encode_body(request.body, request.header("content-type"))
    else:
        body, encoded = None, False
    return {
        "version": "1.0",
        "resource": route_path,
        "path": path,
        "httpMethod": request.method,
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": multi_query or None,
        "requestContext": {
            "accountId": trigger.account_id,
            "apiId": trigger.api_id,
            "domainName": trigger.domain_name,
            "domainPrefix": trigger.api_id,
            "extendedRequestId": request.request_id,
            "httpMethod": request.method,
            "identity": identity,
            "path": path,
            "protocol": request.protocol,
            "requestId": request.request_id,
            "requestTime": format_time(request.time_epoch_ms),
            "requestTimeEpoch": request.time_epoch_ms,
            "resourceId": trigger.route_key,
            "resourcePath": route_path,
            "stage": trigger.stage,
        },
        "pathParameters": dict(trigger.path_parameters) if trigger.path_parameters else None,
        "stageVariables": dict(trigger.stage_variables) if trigger.stage_variables else None,
        "body": body,
        "isBase64Encoded": encoded,
    }


def _route_path(route_key: str) -> str:
    """``/pets/{id}`` of ``GET /pets/{id}``; ``$default`` stays itself."""
    method, _, path = route_key.partition(" ")
    return path or method


def _headers_v1(request: HttpRequest) -> tuple[dict[str, str], dict[str, list[str]]]:
    """(headers, multiValueHeaders) of a 1.0 event: the last value, and every value."""
    multi: dict[str, list[str]] = {}
    forwarded: list[str] = []
    for name, raw_value in request.headers:
        key = name.lower()
        if key in _GATEWAY_HEADERS:
            continue
        value = _text(raw_value)
        if key == "x-forwarded-for":
            forwarded.append(value)
            continue
        multi.setdefault(name, []).append(value)
    forwarded.append(request.source_ip)
    multi["X-Forwarded-For"] = [", ".join(forwarded)]
    multi["X-Forwarded-Proto"] = [request.scheme]
    if request.server_port is not None:
        multi["X-Forwarded-Port"] = [str(request.server_port)]
    if request.trace_id:
        multi["X-Amzn-Trace-Id"] = [request.trace_id]
    return {name: values[-1] for name, values in multi.items()}, multi


def query_parameters_v1(raw_query: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """(queryStringParameters, multiValueQueryStringParameters) of a 1.0 event: decoded,
    the last value of a repeated key, and every value."""
    multi: dict[str, list[str]] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        multi.setdefault(key, []).append(value)
    return {key: values[-1] for key, values in multi.items()}, multi


def _headers_and_cookies(request: HttpRequest) -> tuple[dict[str, str], list[str]]:
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, raw_value in request.headers:
        key = name.lower()
        value = _text(raw_value)
        if key == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
        elif key in _GATEWAY_HEADERS:
            continue
        elif key in headers:
            headers[key] = f"{headers[key]},{value}"
        else:
            headers[key] = value
    forwarded = headers.get("x-forwarded-for")
    headers["x-forwarded-for"] = (
        f"{forwarded}, {request.source_ip}" if forwarded else request.source_ip
    )
    headers["x-forwarded-proto"] = request.scheme
    if request.server_port is not None:
        headers["x-forwarded-port"] = str(request.server_port)
    if request.trace_id:
        headers["x-amzn-trace-id"] = request.trace_id
    return headers, cookies


def _text(value: str) -> str:
    """Undo an ASGI server's latin-1 decoding of header and URL bytes sent as UTF-8.

    ASGI hands headers over as bytes that the gateway decodes as latin-1 (lossless);
    clients send UTF-8, so a value that is valid UTF-8 is shown as such.
    """
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def query_parameters(raw_query: str) -> dict[str, str]:
    """Decoded query parameters, repeated keys joined with ``,`` (payload format 2.0)."""
    params: dict[str, str] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        params[key] = f"{params[key]},{value}" if key in params else value
    return params


def is_text(content_type: str | None) -> bool:
    """Whether a body of this media type is passed to the function as a string."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    kind, _, subtype = media.partition("/")
    if kind == "text":
        return True
    return subtype in _TEXT_SUBTYPES or subtype.endswith("+json") or subtype.endswith("+xml")


def encode_body(body: bytes, content_type: str | None) -> tuple[str, bool]:
    """(body as the event carries it, isBase64Encoded)."""
    if is_text(content_type):
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), True


def format_time(epoch_ms: int) -> str:
    """``requestContext.time``: ``12/Mar/2020:19:03:58 +0000`` (UTC)."""
    second = epoch_ms // 1000
    if second != _last_time[0]:
        # Once per second rather than per request (a few µs each on the hot path).
        t = time.gmtime(second)
        _last_time[:] = (
            second,
            f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000",
        )
    return _last_time[1]


_last_time: list = [None, ""]
