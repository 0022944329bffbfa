"""The rest-json and rest-xml protocols: which operation a method and path are (the
model's ``requestUri`` templates, greedy ``{Key+}`` labels included) and where each
input member is (URI label, query string, header, header-prefix map, payload, body).

Route tables are built once per service and matched against the raw path, so a label
holding an encoded ``/`` (an ARN in ``/tags/{ResourceArn}``) stays one label.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote
from xml.etree.ElementTree import ParseError, fromstring

from botocore.model import ListShape, MapShape, OperationModel, Shape, StructureShape

from nimbus.protocol import jsoncodec, xmlcodec
from nimbus.protocol.errors import AwsError
from nimbus.protocol.messages import HttpRequest
from nimbus.protocol.models import ServiceSpec
from nimbus.protocol.problems import Problems
from nimbus.protocol.values import BadValue, from_text, unbase64

# Query keys botocore puts in some requestUris only to tell operations apart in logs.
_OPTIONAL_QUERY = frozenset({"x-id"})
_LABEL = re.compile(r"\{([^}]+)\}")


@dataclass(frozen=True)
class RestRoute:
    operation: OperationModel
    pattern: re.Pattern[str]
    labels: tuple[str, ...]  # the URI labels' names, in group order ("Key+" as "Key")
    query: tuple[tuple[str, str | None], ...]  # query keys (and values) the URI requires
    headers: tuple[str, ...]  # required header members (S3's CopyObject: x-amz-copy-source)
    rank: tuple[int, int, int, int]


def _compile(operation: OperationModel) -> RestRoute:
    uri: str = operation.http["requestUri"]
    path, _, query = uri.partition("?")
    pieces: list[str] = []
    labels: list[str] = []
    literal = 0
    position = 0
    for found in _LABEL.finditer(path):
        text = path[position : found.start()]
        literal += len(text)
        pieces.append(re.escape(text))
        name = found[1]
        greedy = name.endswith("+")
        labels.append(name.rstrip("+"))
        pieces.append("(.+)" if greedy else "([^/]+)")
        position = found.end()
    tail = path[position:]
    literal += len(tail)
    pieces.append(re.escape(tail))
    regex = "".join(pieces)
    if not path.endswith("/"):
        regex += "/?"  # clients differ on a trailing slash (S3's "/bucket" and "/bucket/")
    required: list[tuple[str, str | None]] = []
    for pair in filter(None, query.split("&")):
        key, equals, value = pair.partition("=")
        if key not in _OPTIONAL_QUERY:
            required.append((key, value if equals else None))
    # Operations sharing a method and template (S3's PutObject, CopyObject, UploadPart)
    # are told apart by the query parameters and headers they require.
    headers: list[str] = []
    shape = operation.input_shape
    if shape is not None:
        for member in shape.required_members:
            where = shape.members[member].serialization
            if where.get("location") == "querystring":
                required.append((where.get("name", member), None))
            elif where.get("location") == "header":
                headers.append(where.get("name", member).lower())
    greedy_rank = 0 if "(.+)" in regex else 1
    return RestRoute(
        operation=operation,
        pattern=re.compile(regex),
        labels=tuple(labels),
        query=tuple(required),
        headers=tuple(headers),
        rank=(len(required) + len(headers), literal + 10 * len(labels), greedy_rank, 0),
    )


@functools.cache
def routes(spec: ServiceSpec) -> dict[str, list[RestRoute]]:
    """The service's routes by HTTP method, most specific first."""
    table: dict[str, list[RestRoute]] = {}
    for operation in spec.operations():
        route = _compile(operation)
        table.setdefault(operation.http.get("method", "POST"), []).append(route)
    for found in table.values():
        found.sort(key=lambda r: r.rank, reverse=True)
    return table


def match(
    spec: ServiceSpec,
    method: str,
    raw_path: str,
    query: list[tuple[str, str]],
    headers: Mapping[str, str],
) -> tuple[RestRoute, dict[str, str]] | None:
    """The route a request is for and its URI labels (decoded); None: none matches."""
    candidates = routes(spec).get(method.upper())
    if not candidates:
        return None
    keys: dict[str, str] | None = None
    for route in candidates:
        found = route.pattern.fullmatch(raw_path)
        if found is None:
            continue
        if route.query:
            if keys is None:
                keys = dict(query)
            if not all(k in keys and (v is None or keys[k] == v) for k, v in route.query):
                continue
        if route.headers and not all(h in headers for h in route.headers):
            continue
        return route, {
            name: unquote(value) for name, value in zip(route.labels, found.groups(), strict=True)
        }
    return None


def parse(
    spec: ServiceSpec,
    route: RestRoute,
    labels: dict[str, str],
    request: HttpRequest,
    problems: Problems,
) -> dict[str, Any]:
    """The operation's input from the request's URI, query, headers and body."""
    shape = route.operation.input_shape
    if shape is None:
        return {}
    params: dict[str, Any] = {}
    claimed: set[str] = set()
    query_map: tuple[str, Shape] | None = None
    for member, member_shape in shape.members.items():
        location = member_shape.serialization.get("location")
        name = member_shape.serialization.get("name", member)
        if location == "uri":
            if name in labels:
                _put(params, member, member_shape, labels[name], name, problems)
        elif location == "querystring":
            if member_shape.type_name == "map":
                query_map = (member, member_shape)
                continue
            claimed.add(name)
            values = [v for k, v in request.query if k == name]
            if not values:
                continue
            if isinstance(member_shape, ListShape):
                items = []
                for v in values:
                    try:
                        items.append(from_text(member_shape.member, v))
                    except BadValue as exc:
                        problems.invalid.append((name, v, str(exc)))
                params[member] = items
            else:
                _put(params, member, member_shape, values[0], name, problems)
        elif location == "header":
            value = request.headers.get(name.lower())
            if value is not None:
                _header(params, member, member_shape, value, name, problems)
        elif location == "headers":
            prefix = name.lower()
            params[member] = {
                k[len(prefix) :]: v for k, v in request.headers.items() if k.startswith(prefix)
            }
            if not params[member]:
                del params[member]
    if query_map is not None:
        member, map_shape = query_map
        assert isinstance(map_shape, MapShape)
        found: dict[str, Any] = {}
        for k, v in request.query:
            if k in claimed:
                continue
            if map_shape.value.type_name == "list":
                found.setdefault(k, []).append(v)
            else:
                found.setdefault(k, v)
        if found:
            params[member] = found
    _body(spec, route.operation, shape, request, params, problems)
    for member in shape.required_members:
        if member not in params:
            where = shape.members[member].serialization.get("name", member)
            if spec.protocol == "rest-json":
                where = where[:1].lower() + where[1:]
            problems.missing.append(where)
    return params


def _put(
    params: dict[str, Any], member: str, shape: Shape, text: str, name: str, problems: Problems
) -> None:
    try:
        params[member] = from_text(shape, text)
    except BadValue as exc:
        problems.invalid.append((name, text, str(exc)))


def _header(
    params: dict[str, Any], member: str, shape: Shape, value: str, name: str, problems: Problems
) -> None:
    if shape.serialization.get("jsonvalue"):
        try:
            params[member] = json.loads(unbase64(value))
        except (ValueError, BadValue):
            problems.invalid.append((name, value, "not base64-encoded JSON"))
    elif isinstance(shape, ListShape):
        params[member] = [part.strip().strip('"') for part in value.split(",") if part.strip()]
    else:
        _put(params, member, shape, value, name, problems)


def _body(
    spec: ServiceSpec,
    operation: OperationModel,
    shape: StructureShape,
    request: HttpRequest,
    params: dict[str, Any],
    problems: Problems,
) -> None:
    payload = shape.serialization.get("payload")
    body = request.body
    if payload is not None:
        payload_shape = shape.members[payload]
        if payload_shape.type_name == "blob":
            params[payload] = body
            return
        if payload_shape.type_name == "string":
            params[payload] = body.decode("utf-8", "replace")
            return
        if not body.strip():
            return
        assert isinstance(payload_shape, StructureShape)
        if spec.protocol == "rest-json":
            found = jsoncodec.read(payload_shape, _json(body), payload, problems)
        else:
            found = _xml(payload_shape, body, payload)
        if found is not None:
            params[payload] = found
        return
    if not any(not m.serialization.get("location") for m in shape.members.values()):
        return
    if not body.strip():
        return
    if spec.protocol == "rest-json":
        document = _json(body)
        if not isinstance(document, dict):
            problems.invalid.append(("body", "...", "expected a JSON object"))
            return
        params.update(
            jsoncodec.read_members(
                shape, document, "", problems, skip_located=True, report_required=False
            )
        )
    else:
        params.update(_xml(shape, body, operation.name) or {})


def _json(body: bytes) -> Any:
    return jsoncodec.parse_body(body)


def _xml(shape: StructureShape, body: bytes, where: str) -> dict[str, Any] | None:
    try:
        root = fromstring(body)
    except ParseError as exc:
        raise AwsError(
            "MalformedXML",
            f"The XML you provided was not well-formed or did not validate: {exc}",
        ) from None
    try:
        found = xmlcodec.read(shape, root, where)
    except xmlcodec.XmlValueError as exc:
        raise AwsError("InvalidArgument", f"Invalid value at {exc.path}: {exc.detail}.") from None
    except RecursionError:
        raise AwsError("MalformedXML", "The XML you provided is nested too deeply.") from None
    return found if isinstance(found, dict) else None
