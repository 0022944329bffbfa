"""Requests in: which operation a request is for and its input, as botocore's shapes
describe it, for the query, json, rest-json and rest-xml protocols.

``parse(spec, protocol, request)`` returns the operation and its parameters (member names
of the model, typed values: see ``service.py``) or raises the protocol's error
(``AwsError``): an unknown operation, a body that does not parse, a required member
missing, a value that does not read as its type.

The query protocol flattens nested input into dotted keys, as botocore's QuerySerializer
writes them: ``Attribute.1.Name=...&Attribute.1.Value=...`` (a flattened map named by
``locationName``), ``AttributeName.1=...`` (a flattened list, named by its member's
``locationName``), ``Tags.member.1=...`` / ``Map.entry.1.key=...`` (lists and maps that
are not flattened), ``Entries.2.MessageAttribute.1.Value.StringValue=...`` (nesting).
Like SQS, a list or map is also found under its member name (the Java SDK sends
``MessageAttributes.1.Name``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from botocore.model import ListShape, MapShape, OperationModel, Shape, StructureShape

from nimbus.protocol import jsoncodec, rest
from nimbus.protocol.errors import AwsError
from nimbus.protocol.messages import HttpRequest
from nimbus.protocol.models import ServiceSpec
from nimbus.protocol.problems import Problems
from nimbus.protocol.values import BadValue, from_text

FORM = "application/x-www-form-urlencoded"


@dataclass
class ParsedRequest:
    operation: OperationModel
    params: dict[str, Any]


def parse(spec: ServiceSpec, protocol: str, request: HttpRequest) -> ParsedRequest:
    """The operation ``request`` asks for and its input; raises ``AwsError``."""
    problems = Problems(protocol, query_compatible=spec.compat is not None)
    if protocol == "query":
        parsed = _parse_query(spec, request, problems)
    elif protocol == "json":
        parsed = _parse_json(spec, request, problems)
    else:
        found = rest.match(spec, request.method, request.raw_path, request.query, request.headers)
        if found is None:
            raise unknown_operation(protocol, f"{request.method} {request.path}")
        route, labels = found
        parsed = ParsedRequest(route.operation, rest.parse(spec, route, labels, request, problems))
    problems.check(parsed.operation)
    return parsed


def unknown_operation(protocol: str, name: str) -> AwsError:
    """What a client gets for an operation the service does not have."""
    if protocol == "query":
        return AwsError("InvalidAction", f"The action {name} is not valid for this endpoint.")
    return AwsError("UnknownOperationException", f"Unknown operation {name}.")


# --- query -----------------------------------------------------------------------------


def query_params(request: HttpRequest) -> dict[str, str]:
    """A query request's parameters: its query string and, when form-encoded, its body."""
    params = dict(request.query)
    if request.body and request.content_type in (FORM, ""):
        try:
            text = request.body.decode("utf-8")
        except UnicodeDecodeError:
            raise AwsError("MalformedQueryString", "The request body is not UTF-8.") from None
        params.update(parse_qsl(text, keep_blank_values=True))
    return params


def _parse_query(spec: ServiceSpec, request: HttpRequest, problems: Problems) -> ParsedRequest:
    params = query_params(request)
    action = params.get("Action")
    if not action:
        raise AwsError("MissingAction", "The request must contain the parameter Action.")
    operation = spec.operation(action, "query")
    if operation is None:
        raise unknown_operation("query", action)
    shape = operation.input_shape
    if shape is None:
        return ParsedRequest(operation, {})
    # Every dotted prefix with the keys under it, once: list and map checks look up their
    # own keys instead of scanning them all (which made a big batch quadratic).
    prefixes: dict[str, list[str]] = {}
    for key in params:
        dot = key.find(".")
        while dot != -1:
            prefixes.setdefault(key[:dot], []).append(key)
            dot = key.find(".", dot + 1)
    compat = spec.compat
    if (
        compat is not None
        and compat.resource_member is not None
        and compat.resource_member in shape.members
        and compat.resource_member not in params
        and compat.resource_path is not None
        and compat.resource_path.fullmatch(request.path)
    ):
        # Posted to the resource's own URL (SQS: the queue URL) without naming it again.
        scheme = request.headers.get("x-forwarded-proto", "http")
        host = request.headers.get("host", "localhost")
        params[compat.resource_member] = f"{scheme}://{host}{request.path}"
    reader = _QueryReader(params, prefixes, problems)
    return ParsedRequest(operation, reader.structure(shape, "") or {})


_NESTED = {
    "list": "expected numbered entries ({0}.1, {0}.2, ...)",
    "map": "expected numbered entries ({0}.1.Name, {0}.1.Value, ...)",
    "structure": "expected its members ({0}.<Member>)",
}


class _QueryReader:
    """Reads a shape from the flat ``Name.1.Sub=value`` parameters of a query request."""

    def __init__(self, params: dict[str, str], prefixes: dict[str, list[str]],
                 problems: Problems) -> None:
        self.params = params
        self.prefixes = prefixes
        self.problems = problems

    def present(self, key: str) -> bool:
        return key in self.params or key in self.prefixes

    def structure(self, shape: StructureShape, prefix: str) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for member, member_shape in shape.members.items():
            key = self._key(prefix, member, member_shape)
            value = self.value(member_shape, key)
            if value is not None:
                result[member] = value
            elif key in self.params and member_shape.type_name in _NESTED:
                # "AttributeName=All" for a list: would be dropped unseen
                self.problems.invalid.append(
                    (key, self.params[key], _NESTED[member_shape.type_name].format(key))
                )
        for member in shape.required_members:
            key = self._key(prefix, member, shape.members[member])
            if member not in result and key not in self.params:  # sent but unreadable: invalid
                self.problems.missing.append(key)
        return result

    def _check_numbering(self, base: str, count: int) -> None:
        """Entries of a list or map are numbered 1..n without gaps; a parameter under
        ``base`` numbered otherwise (``Attribute.0``, ``Attribute.7`` after 2 entries,
        ``Attribute.x``) would be silently dropped, so it is refused instead."""
        start = f"{base}."
        for key in self.prefixes.get(base, ()):
            index = key[len(start) :].split(".", 1)[0]
            number = int(index) if index.isascii() and index.isdigit() else 0
            if str(number) == index and 1 <= number <= count:
                continue
            reason = "entries are numbered from 1 without gaps"
            if str(number) == index and number > count:
                reason += f" ({base}.{count + 1} is missing)"
            self.problems.invalid.append((key, self.params[key], reason))
            return

    def _key(self, prefix: str, member: str, shape: Shape) -> str:
        name = shape.serialization.get("name", member)
        if shape.type_name == "list" and shape.serialization.get("flattened"):
            assert isinstance(shape, ListShape)
            name = shape.member.serialization.get("name", name)
        key = f"{prefix}.{name}" if prefix else name
        if name != member and shape.type_name in ("list", "map") and not self.present(key):
            other = f"{prefix}.{member}" if prefix else member
            if self.present(other):
                return other  # the member name instead of the XML name, as SQS accepts
        return key

    def value(self, shape: Shape, key: str) -> Any:
        kind = shape.type_name
        if kind == "structure":
            assert isinstance(shape, StructureShape)
            return self.structure(shape, key) if key in self.prefixes else None
        if kind == "list":
            assert isinstance(shape, ListShape)
            if self.params.get(key) == "":
                return []  # botocore sends an empty list as "Name="
            if key not in self.prefixes:
                return None
            if shape.serialization.get("flattened"):
                base = key
            else:
                base = f"{key}.{shape.member.serialization.get('name', 'member')}"
            items = []
            i = 1
            while self.present(f"{base}.{i}"):
                item = self.value(shape.member, f"{base}.{i}")
                if item is not None:
                    items.append(item)
                i += 1
            self._check_numbering(base, i - 1)
            return items
        if kind == "map":
            assert isinstance(shape, MapShape)
            if key not in self.prefixes:
                return None
            base = key if shape.serialization.get("flattened") else f"{key}.entry"
            key_name = shape.key.serialization.get("name", "key")
            value_name = shape.value.serialization.get("name", "value")
            mapped: dict[str, Any] = {}
            i = 1
            while self.present(f"{base}.{i}"):
                entry_key = self.params.get(f"{base}.{i}.{key_name}")
                entry_value = self.value(shape.value, f"{base}.{i}.{value_name}")
                if entry_key is None:
                    self.problems.missing.append(f"{base}.{i}.{key_name}")
                elif entry_value is None:
                    where = f"{base}.{i}.{value_name}"
                    if where in self.params and shape.value.type_name != "structure":
                        pass  # a value that does not read as its type: value() said so
                    elif self.present(where):  # "Attribute.1.Value.x", "...Value=v"
                        reason = _NESTED.get(shape.value.type_name, "expected a value at {0}")
                        self.problems.invalid.append(
                            (where, self.params.get(where, ""), reason.format(where))
                        )
                    else:
                        self.problems.missing.append(where)
                else:
                    mapped[entry_key] = entry_value
                i += 1
            self._check_numbering(base, i - 1)
            return mapped
        text = self.params.get(key)
        if text is None:
            return None
        try:
            return from_text(shape, text)
        except BadValue as exc:
            self.problems.invalid.append((key, text, str(exc)))
            return None


# --- json ------------------------------------------------------------------------------


def _parse_json(spec: ServiceSpec, request: HttpRequest, problems: Problems) -> ParsedRequest:
    target = request.headers.get("x-amz-target", "")
    prefix, _, name = target.rpartition(".")
    if not target or prefix != spec.target_prefix:
        raise AwsError(
            "UnknownOperationException",
            f"X-Amz-Target '{target}' names no operation of {spec.name} "
            f"(expected '{spec.target_prefix}.<Operation>').",
        )
    operation = spec.operation(name, "json")
    if operation is None:
        raise unknown_operation("json", name)
    shape = operation.input_shape
    if shape is None:
        return ParsedRequest(operation, {})
    body = request.body
    document: Any = {}
    if body.strip():
        document = jsoncodec.parse_body(body)
    if not isinstance(document, dict):
        raise AwsError("SerializationException", "The request body must be a JSON object.")
    return ParsedRequest(operation, jsoncodec.read_members(shape, document, "", problems))
