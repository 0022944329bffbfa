"""Shapes as JSON (the json and rest-json protocols), both ways.

Members are keyed by their ``locationName`` when the model gives one, else by the member
name; timestamps are epoch seconds, blobs base64; ``null`` is the same as absent.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.model import ListShape, MapShape, Shape, StructureShape

from nimbus import codec
from nimbus.protocol.errors import AwsError
from nimbus.protocol.problems import Problems
from nimbus.protocol.values import BadValue, from_json, to_json

# A body nested deeper than nimbus reads: no model comes near (``codec.MAX_NESTING``).
TOO_DEEP = (
    "The request body is not valid JSON: it is nested too deeply (at most "
    f"{codec.MAX_NESTING} levels of objects and arrays)."
)


def parse_body(body: bytes) -> Any:
    """A request body as JSON; SerializationException (400) if it is not JSON or nests
    deeper than ``codec.MAX_NESTING``."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AwsError(
            "SerializationException", f"The request body is not valid JSON: {exc}"
        ) from None
    except RecursionError:  # json's C decoder gives up past ~1000 levels
        raise AwsError("SerializationException", TOO_DEEP) from None
    if codec.nested_too_deep(body, document):
        raise AwsError("SerializationException", TOO_DEEP)
    return document


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def read(shape: Shape, value: Any, path: str, problems: Problems) -> Any:
    """``value`` (parsed JSON) as ``shape``; what does not fit goes to ``problems``."""
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(shape, StructureShape)
        if shape.is_document_type:
            return value
        if not isinstance(value, dict):
            problems.invalid.append((path or "body", _shown(value), "expected an object"))
            return None
        return read_members(shape, value, path, problems)
    if kind == "list":
        assert isinstance(shape, ListShape)
        if not isinstance(value, list):
            problems.invalid.append((path, _shown(value), "expected an array"))
            return None
        return [
            read(shape.member, item, f"{path}.{i + 1}", problems)
            for i, item in enumerate(value)
            if item is not None
        ]
    if kind == "map":
        assert isinstance(shape, MapShape)
        if not isinstance(value, dict):
            problems.invalid.append((path, _shown(value), "expected an object"))
            return None
        mapped: dict[str, Any] = {}
        for key, item in value.items():
            if item is None:
                continue
            if read(shape.key, key, f"{path}.{key}", problems) is None:
                continue  # a key that is not text of the key's shape (a lone surrogate)
            mapped[key] = read(shape.value, item, f"{path}.{key}", problems)
        return mapped
    try:
        return from_json(shape, value)
    except BadValue as exc:
        problems.invalid.append((path, _shown(value), str(exc)))
        return None


def read_members(
    shape: StructureShape,
    value: dict[str, Any],
    path: str,
    problems: Problems,
    skip_located: bool = False,
    report_required: bool = True,
) -> dict[str, Any]:
    """The body members of ``shape`` in ``value``; required ones missing are reported
    (``skip_located``: members bound to the URI, query or headers are not the body's;
    ``report_required=False``: the caller checks this level's required members)."""
    result: dict[str, Any] = {}
    unreadable: set[str] = set()  # present but of the wrong type: reported as invalid
    for member, member_shape in shape.members.items():
        if skip_located and member_shape.serialization.get("location"):
            continue
        item = value.get(member_shape.serialization.get("name", member))
        if item is None:
            continue
        where = _path(path, member, problems)
        parsed = read(member_shape, item, where, problems)
        if parsed is not None:
            result[member] = parsed
        else:
            unreadable.add(member)
    if not report_required:
        return result
    for member in shape.required_members:
        if member not in result and member not in unreadable:
            problems.missing.append(_path(path, member, problems))
    return result


def _path(path: str, member: str, problems: Problems) -> str:
    # SQS (query-compatible) names the parameter as sent; Coral's validation its path.
    if problems.query_compatible:
        return f"{path}.{member}" if path else member
    return f"{path}.{_camel(member)}" if path else _camel(member)


def write(shape: Shape, value: Any) -> Any:
    """``value`` of ``shape`` as JSON-ready data (``None`` members left out)."""
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(shape, StructureShape)
        if shape.is_document_type:
            return value
        members = shape.members
        out: dict[str, Any] = {}
        for member, item in value.items():
            if item is None:
                continue
            member_shape = members.get(member)
            if member_shape is None or member_shape.serialization.get("location"):
                continue  # not in the model (or a header): not the body's to carry
            out[member_shape.serialization.get("name", member)] = write(member_shape, item)
        return out
    if kind == "list":
        assert isinstance(shape, ListShape)
        return [write(shape.member, item) for item in value]
    if kind == "map":
        assert isinstance(shape, MapShape)
        return {key: write(shape.value, item) for key, item in value.items()}
    return to_json(shape, value)


def _shown(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= 100 else text[:97] + "..."
