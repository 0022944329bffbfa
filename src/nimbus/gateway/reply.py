"""A function's result as an HTTP response (payload format 2.0), and the gateway's own.

The mapping follows
https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html#urls-response-payload
and https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html#http-api-develop-integrations-lambda.response

- A JSON object with ``statusCode`` is a response description: ``statusCode``,
  ``headers`` (values stringified; a null value drops the header), ``cookies`` (each one
  a ``set-cookie`` header), ``body`` (a string; base64-decoded when ``isBase64Encoded``).
  Without a content-type header the reply gets the caller's default: function URLs send
  ``application/json``, HTTP APIs ``text/plain; charset=utf-8``.
- Any other JSON (an object without ``statusCode``, a list, a string, a number, true,
  null) is the body itself, as the function returned it: 200, ``application/json``.
- Anything else raises ``InvalidFunctionResponse``; the gateway then answers with
  ``invalid_response_reply``.

Payload format 1.0 (``reply_from_result_v1``) takes only a response description: an
object with ``statusCode``, and ``headers`` (one value a name), ``multiValueHeaders`` (a
list of values a name; merged with ``headers``, a pair given in both sent once),
``body`` and ``isBase64Encoded``. Anything else (no ``statusCode``, a list, a string) is
malformed, and the HTTP API answers 500 ``{"message": "Internal Server Error"}`` as API
Gateway's HTTP APIs do ("Troubleshooting issues with HTTP API Lambda integrations"; a
REST API would answer 502). ``cookies`` is not a 1.0 member and is ignored.

The gateway's own answers (``plain_reply`` and the named ones below) are API Gateway
shaped: a JSON ``{"message": ...}`` body and an ``x-amzn-ErrorType`` header naming the
error, so a client can tell them from a function that answered 5xx itself.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any

from nimbus import codec
from nimbus.gateway.headers import first_header

FUNCTION_URL_CONTENT_TYPE = "application/json"
HTTP_API_CONTENT_TYPE = "text/plain; charset=utf-8"

# Framing headers are the gateway's business: a function's stale content-length would
# corrupt the response. They are dropped from what the function returns.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 field names
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # not allowed in a field value (tab is)
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})


@dataclass
class HttpReply:
    """An HTTP response for the gateway to send."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)  # Set-Cookie may repeat
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or None."""
        return first_header(self.headers, name)


class InvalidFunctionResponse(ValueError):
    """The function's result cannot be mapped to an HTTP response; says why."""


def _result_json(payload: bytes, advice: str) -> Any:
    """The function's result, parsed; InvalidFunctionResponse (ending with ``advice``)
    when it is not JSON."""
    try:
        return codec.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidFunctionResponse(
            f"The function's response is not valid JSON ({exc}); {advice}."
        ) from exc


def reply_from_result(
    payload: bytes, *, default_content_type: str = FUNCTION_URL_CONTENT_TYPE
) -> HttpReply:
    """The HTTP response for a function's successful result ``payload`` (its JSON)."""
    result = _result_json(payload, "return a JSON value or an object like "
                                   '{"statusCode": 200, "body": "..."}')
    if not (isinstance(result, dict) and "statusCode" in result):
        return HttpReply(200, [("content-type", "application/json")], bytes(payload))
    status = _status(result["statusCode"])
    headers = _headers(result.get("headers"))
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("content-type", default_content_type))
    headers.extend(("set-cookie", cookie) for cookie in _cookies(result.get("cookies")))
    return HttpReply(status, headers, _body(result))


def reply_from_result_v1(
    payload: bytes, *, default_content_type: str = HTTP_API_CONTENT_TYPE
) -> HttpReply:
    """The HTTP response for a successful result of a payload format 1.0 integration."""
    result = _result_json(payload, "with payload format 1.0 return an object like "
                                   '{"statusCode": 200, "body": "..."}')
    if not (isinstance(result, dict) and "statusCode" in result):
        raise InvalidFunctionResponse(
            f"The function returned {_kind(result)} without statusCode; with payload format "
            '1.0 return an object like {"statusCode": 200, "headers": {...}, "body": "..."}.'
        )
    status = _status(result["statusCode"])
    single = _headers(result.get("headers"), "return repeated values in 'multiValueHeaders'")
    headers = _multi_value_headers(result.get("multiValueHeaders"))
    given = {(name.lower(), value) for name, value in headers}
    headers += [(n, v) for n, v in single if (n.lower(), v) not in given]
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("content-type", default_content_type))
    return HttpReply(status, headers, _body(result))


def _multi_value_headers(value: Any) -> list[tuple[str, str]]:
    if value is None:
        return []
    if not isinstance(value, dict):
        raise InvalidFunctionResponse(
            "The function's multiValueHeaders must be an object of header names to lists "
            f"of values, not {_kind(value)}."
        )
    headers: list[tuple[str, str]] = []
    for name, items in value.items():
        if items is None:
            continue
        if not isinstance(items, list):
            raise InvalidFunctionResponse(
                f"The function's multiValueHeaders[{name!r}] must be a list of values, "
                f"not {_kind(items)}."
            )
        for item in items:
            headers += _headers({name: item}, "give each value as a list item")
    return headers


def _status(value: Any) -> int:
    # API Gateway accepts the code as a number or a string of digits.
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    # 1xx codes are interim responses, never an answer: sent as one they would leave the
    # client waiting for the real response on a connection that has none.
    if isinstance(value, bool) or not isinstance(value, int) or not 200 <= value <= 599:
        raise InvalidFunctionResponse(
            f"The function's statusCode {json.dumps(value)} is not a final HTTP status "
            "code; return an integer from 200 to 599."
        )
    return value


def _headers(
    value: Any, repeats: str = "return repeated set-cookie values in 'cookies'"
) -> list[tuple[str, str]]:
    if value is None:
        return []
    if not isinstance(value, dict):
        raise InvalidFunctionResponse(
            f"The function's headers must be an object of header names to values, "
            f"not {_kind(value)}."
        )
    headers: list[tuple[str, str]] = []
    for name, item in value.items():
        if item is None or name.lower() in _FRAMING:
            continue
        if isinstance(item, bool):
            text = "true" if item else "false"
        elif isinstance(item, str):
            text = item
        elif isinstance(item, (int, float)):
            text = json.dumps(item)
        else:
            raise InvalidFunctionResponse(
                f"The function's header {name!r} has {_kind(item)} for a value; header "
                f"values must be strings, numbers or booleans ({repeats})."
            )
        if not _TOKEN.fullmatch(name) or _CONTROL.search(text):
            raise InvalidFunctionResponse(
                f"The function's header {name!r} has a name that is not an HTTP token or a "
                "value with a line break or other control character."
            )
        headers.append((name, text))
    return headers


def _cookies(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise InvalidFunctionResponse(
            f"The function's cookies must be a list of strings, not {_kind(value)}."
        )
    for cookie in value:
        if _CONTROL.search(cookie):
            raise InvalidFunctionResponse(
                "A cookie the function returned has a line break or other control character."
            )
    return value


def _body(result: dict[str, Any]) -> bytes:
    body = result.get("body")
    encoded = result.get("isBase64Encoded", False)
    if encoded is not None and not isinstance(encoded, bool):
        raise InvalidFunctionResponse(
            f"The function's isBase64Encoded must be true or false, not {_kind(encoded)}."
        )
    if body is None:
        return b""
    if not isinstance(body, str):
        raise InvalidFunctionResponse(
            f"The function's body must be a string, not {_kind(body)}; serialise it "
            "(e.g. json.dumps) or base64-encode it with isBase64Encoded true."
        )
    if not encoded:
        return body.encode("utf-8")
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidFunctionResponse(
            f"The function's body is not valid base64 ({exc}) but isBase64Encoded is true."
        ) from exc


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")


def plain_reply(
    status: int, message: str, error_type: str, headers: list[tuple[str, str]] | None = None
) -> HttpReply:
    """The gateway's own answer: ``{"message": ...}`` with ``x-amzn-ErrorType``."""
    body = json.dumps({"message": message}).encode()
    return HttpReply(
        status,
        [
            ("content-type", "application/json"),
            ("x-amzn-ErrorType", error_type),
            *(headers or []),
        ],
        body,
    )


def function_error_reply(*, function_url: bool) -> HttpReply:
    """The function failed (raised, timed out, ran out of memory, crashed).

    Function URLs answer 502, HTTP APIs 500, both "Internal Server Error".
    """
    status = 502 if function_url else 500
    return plain_reply(status, "Internal Server Error", "InternalServerErrorException")


def invalid_response_reply(*, function_url: bool) -> HttpReply:
    """The function returned something ``reply_from_result`` could not map (a malformed
    proxy response): the same answer as a function error, as AWS gives."""
    return function_error_reply(function_url=function_url)


def throttled_reply(retry_after: int | None = None) -> HttpReply:
    """A rate limit, quota or concurrency limit refused the request: 429."""
    extra = [("Retry-After", str(retry_after))] if retry_after is not None else []
    return plain_reply(429, "Too Many Requests", "TooManyRequestsException", extra)


def forbidden_reply(*, function_url: bool = False) -> HttpReply:
    """The caller may not invoke this (bad or missing signature or API key): 403.

    Function URLs name Lambda's error, AccessDeniedException; HTTP APIs
    ForbiddenException.
    """
    error_type = "AccessDeniedException" if function_url else "ForbiddenException"
    return plain_reply(403, "Forbidden", error_type)


def too_large_reply() -> HttpReply:
    """The request, or the event made of it, is over Lambda's 6 MB: 413."""
    return plain_reply(413, "Request Entity Too Large", "RequestEntityTooLargeException")


def not_found_reply() -> HttpReply:
    """No such URL id, API, stage or route: 404."""
    return plain_reply(404, "Not Found", "NotFoundException")
