"""Lambda's wire format: request bodies in, JSON and errors out.

``error_response`` is the one place a ``NimbusError`` becomes Lambda's error shape:
``{"Type": ..., "Message"|"message": ...}`` (no ``Type`` where Lambda sends none) with
the ``X-Amzn-ErrorType`` header that botocore reads to raise the modeled exception.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
import sqlalchemy.exc
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive

from nimbus import codec
from nimbus.errors import (
    DatabaseUnavailable,
    InvalidParameterValue,
    InvalidRequestContent,
    NimbusError,
    RequestTooLarge,
    ServiceError,
    ValidationError,
)
from nimbus.models import MAX_SYNC_PAYLOAD
from nimbus.threads import blocking

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    from nimbus.models import Page
    from nimbus.store.qualified import QualifiedSettings

T = TypeVar("T", bound="DataclassInstance")
log = logging.getLogger("nimbus.api")



def json_response(body: Any, status: int = 200) -> Response:
    return JSONResponse(body, status_code=status, headers=request_id_header())


def empty_response(status: int = 204) -> Response:
    return Response(status_code=status, headers=request_id_header())


def request_id_header() -> dict[str, str]:
    return {"x-amzn-RequestId": str(uuid.uuid4())}


async def settings_page(request: Request, function: str, store: QualifiedSettings[T]) -> Page:
    """One page of ``function``'s per-qualifier settings for Lambda's List...Configs
    operations: ``Marker``, ``MaxItems`` 1-50 (default 50)."""
    max_items = query_int(request, "MaxItems", 50, 1, 50)
    marker = request.query_params.get("Marker")
    return await blocking(store.list, function, marker, max_items)


def page_response(key: str, items: list[Any], next_marker: str | None) -> Response:
    """A listing as Lambda returns it: the items under ``key``, and NextMarker if any."""
    body: dict[str, Any] = {key: items}
    if next_marker:
        body["NextMarker"] = next_marker
    return json_response(body)


def error_response(exc: NimbusError) -> Response:
    headers = {"X-Amzn-ErrorType": exc.type_name, **request_id_header(), **exc.headers()}
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


async def nimbus_error_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, NimbusError)
    return error_response(exc)


async def unexpected_error_handler(request: Request, exc: Exception) -> Response:
    if isinstance(exc, sqlalchemy.exc.OperationalError | psycopg.OperationalError):
        # The database is down or out of reach: a condition to report, not a bug.
        log.warning("database unreachable serving %s %s: %s", request.method,
                    request.url.path, exc)
        return error_response(DatabaseUnavailable(
            "nimbus cannot reach its database now; retry later (the operator should "
            f"check the database and this server's network): {type(exc).__name__}"))
    log.exception("unhandled error serving %s %s", request.method, request.url.path)
    return error_response(ServiceError(f"nimbus failed to serve this request: {exc!r}"))


async def read_body(request: Request, limit: int, operation: str) -> bytes:
    """The request's body, refusing (413, Lambda's message) anything over ``limit``."""
    return await receive_body(request.receive, limit, operation)


async def receive_body(receive: Receive, limit: int, operation: str) -> bytes:
    """Read a body from the ASGI channel, refusing (413, Lambda's message) anything over
    ``limit``.

    An oversized body is still read to its end (and dropped) so the client, which is
    busy sending it, gets to read our answer instead of a reset connection.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        elif chunks:
            chunks.clear()
        if not message.get("more_body", False):
            break
    if size > limit:
        raise RequestTooLarge(
            f"Request must be smaller than {limit} bytes for the {operation} operation"
        )
    return b"".join(chunks)


async def read_json(
    request: Request,
    operation: str,
    limit: int = MAX_SYNC_PAYLOAD,  # Lambda's limit for requests that are not code uploads
) -> dict[str, Any]:
    raw = await read_body(request, limit, operation)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequestContent(
            f"Could not parse request body into json: {exc}. Send a JSON object."
        ) from exc
    except RecursionError:  # nested past the decoder's depth: bad input, not our failure
        body = _TOO_DEEP
    if body is _TOO_DEEP or codec.nested_too_deep(raw, body):
        raise InvalidRequestContent(
            "Could not parse request body into json: it is nested too deeply (at most "
            f"{codec.MAX_NESTING} levels of objects and arrays). Send a JSON object."
        )
    if _SURROGATE_ESCAPE.search(raw):
        # A "\ud800" escape decodes to a lone surrogate, which no UTF-8 text (the store,
        # an answer quoting it) can hold: refused as the JSON text it is not.
        try:
            json.dumps(body, ensure_ascii=False).encode()
        except UnicodeEncodeError as exc:
            raise InvalidRequestContent(
                "Could not parse request body into json: a string holds a lone surrogate "
                f"(U+{ord(exc.object[exc.start]):04X}), which is not valid Unicode text."
            ) from None
    if not isinstance(body, dict):
        raise InvalidRequestContent(
            "Could not parse request body into json: expected a JSON object, got "
            f"{type(body).__name__}."
        )
    return body


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_TOO_DEEP = object()


def _camel(member: str) -> str:
    return member[:1].lower() + member[1:]


class Params:
    """Validates request members against the service model's constraints.

    Constraint violations are collected and raised together as Lambda does:
    ``ValidationException: 2 validation errors detected: Value '0' at 'timeout' failed
    to satisfy constraint: Member must have value greater than or equal to 1; ...``.
    """

    def __init__(self, data: dict[str, Any], prefix: str = "") -> None:
        self.data = data
        self.prefix = prefix
        self.problems: list[str] = []

    def _where(self, member: str) -> str:
        return f"{self.prefix}{_camel(member)}"

    def _fail(self, value: Any, member: str, constraint: str) -> None:
        self.violation(value, member, f"Member must {constraint}")

    def violation(self, value: Any, member: str, constraint: str) -> None:
        """Record that ``value`` of ``member`` breaks ``constraint`` (Lambda's words)."""
        self.problems.append(
            f"Value '{shown(value)}' at '{self._where(member)}' failed to satisfy "
            f"constraint: {constraint}"
        )

    def has(self, member: str) -> bool:
        return self.data.get(member) is not None

    def string(
        self,
        member: str,
        *,
        required: bool = False,
        min_len: int = 0,
        max_len: int | None = None,
        pattern: str | None = None,
        value: Any = None,
    ) -> str | None:
        value = self.data.get(member) if value is None else value
        if value is None:
            if required:
                self.problems.append(
                    f"Value null at '{self._where(member)}' failed to satisfy constraint: "
                    "Member must not be null"
                )
            return None
        if not isinstance(value, str):
            self._fail(value, member, "be a string")
            return None
        # Each constraint violated is one entry, as Lambda reports them.
        if len(value) < min_len:
            self._fail(value, member, f"have length greater than or equal to {min_len}")
        if max_len is not None and len(value) > max_len:
            self._fail(value, member, f"have length less than or equal to {max_len}")
        if pattern is not None and not re.fullmatch(pattern, value):
            self._fail(value, member, f"satisfy regular expression pattern: {pattern}")
        return value

    def integer(
        self, member: str, *, minimum: int | None = None, maximum: int | None = None
    ) -> int | None:
        value = self.data.get(member)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self._fail(value, member, "be an integer")
            return None
        if minimum is not None and value < minimum:
            self._fail(value, member, f"have value greater than or equal to {minimum}")
        elif maximum is not None and value > maximum:
            self._fail(value, member, f"have value less than or equal to {maximum}")
        return value

    def enum(self, member: str, allowed: tuple[str, ...], *, required: bool = False) -> Any:
        """A string member that must be one of ``allowed``; None if it is not."""
        value = self.string(member, required=required)
        if value is not None and value not in allowed:
            self._fail(value, member, f"satisfy enum value set: [{', '.join(allowed)}]")
            return None
        return value

    def boolean(self, member: str) -> bool | None:
        value = self.data.get(member)
        if value is None:
            return None
        if not isinstance(value, bool):
            self._fail(value, member, "be a boolean")
            return None
        return value

    def mapping(self, member: str) -> dict[str, Any] | None:
        value = self.data.get(member)
        if value is None:
            return None
        if not isinstance(value, dict):
            self._fail(value, member, "be a map")
            return None
        return value

    def sequence(self, member: str, *, max_items: int | None = None) -> list[Any] | None:
        value = self.data.get(member)
        if value is None:
            return None
        if not isinstance(value, list):
            self._fail(value, member, "be a list")
            return None
        if max_items is not None and len(value) > max_items:
            self._fail(value, member, f"have length less than or equal to {max_items}")
        return value

    def nested(self, member: str) -> Params:
        """Validate a sub-structure; its problems are reported with this one's."""
        sub = Params(self.mapping(member) or {}, prefix=f"{self._where(member)}.")
        sub.problems = self.problems
        return sub

    def check(self) -> None:
        if self.problems:
            count = len(self.problems)
            noun = "error" if count == 1 else "errors"
            raise ValidationError(
                f"{count} validation {noun} detected: " + "; ".join(self.problems)
            )


def shown(value: Any) -> str:
    """A value as Lambda quotes it in a constraint violation: Java's rendering, so lists
    read ``[a, b]`` and maps ``{k=v}``."""
    if isinstance(value, list):
        return "[" + ", ".join(shown(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{shown(k)}={shown(v)}" for k, v in value.items()) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def decimal_int(raw: str) -> int | None:
    """``raw`` as an integer if it is one written in ASCII decimal digits (an optional
    minus sign), else None: ``int()`` would also take "١٢" or " 12_0", and fail on "²"."""
    if _DECIMAL.fullmatch(raw) is None:
        return None
    return int(raw)


# Python refuses to convert more than 4,300 digits; no limit comes near this many.
_DECIMAL = re.compile(r"-?[0-9]{1,4000}")


def query_int(request: Request, name: str, default: int, minimum: int, maximum: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    number = decimal_int(raw)
    params = Params({name: raw if number is None else number})
    value = params.integer(name, minimum=minimum, maximum=maximum)
    params.check()
    assert value is not None
    return value


def query_text(request: Request, name: str, most: int = 256) -> str | None:
    """A text query parameter as a store may hold it: at most ``most`` characters and no
    NUL (PostgreSQL refuses one in text, which would be a 500)."""
    raw = request.query_params.get(name)
    if raw is not None and (len(raw) > most or "\x00" in raw):
        raise InvalidParameterValue(
            f"{name} must be at most {most} characters, without NUL: {raw[:40]!r}."
        )
    return raw
