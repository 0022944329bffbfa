"""PostgreSQL column values (their text form, as pgoutput sends them) as DynamoDB
AttributeValues, the typed JSON of DynamoDB Streams records.

Which AttributeValue a column gets follows its type (a domain follows its base type):

- ``boolean`` → ``{"BOOL": true}``
- numeric types (``smallint``, ``integer``, ``bigint``, ``numeric``, ``real``,
  ``double precision``, ``oid``: PostgreSQL's type category N, ``money`` excepted) →
  ``{"N": "12.50"}`` as PostgreSQL writes the number; ``NaN`` and ``±Infinity``, which
  DynamoDB numbers cannot hold, → ``{"S": "NaN"}``
- ``bytea`` → ``{"B": "<base64>"}``
- ``json`` / ``jsonb`` → the document as ``M`` / ``L`` / ``S`` / ``N`` / ``BOOL`` / ``NULL``
- arrays → ``{"L": [...]}`` of their elements, each by the element type (nested for
  multi-dimensional arrays; lower bounds other than 1 are not kept)
- SQL NULL → ``{"NULL": true}``
- everything else (text, varchar, uuid, dates and times, intervals, enums, network
  addresses, geometric types, ``money``, ranges, composites...) → ``{"S": "<text>"}``
  in PostgreSQL's output format (``timestamptz`` in the server's TimeZone).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

BOOL_OID = 16
BYTEA_OID = 17
JSON_OIDS = frozenset({114, 3802})
MONEY_OID = 790
NOT_NUMBERS = frozenset({"nan", "infinity", "-infinity", "+infinity", "inf", "-inf"})


@dataclass(frozen=True)
class ValueType:
    """How values of one PostgreSQL type become AttributeValues."""

    kind: str  # "N", "BOOL", "B", "JSON", "L" (array) or "S"
    element: ValueType | None = None  # arrays: the element type
    delimiter: str = ","  # arrays: between elements (";" for box)


TEXT = ValueType("S")


@dataclass(frozen=True)
class CatalogType:
    """A row of ``pg_type``: what ``value_type`` needs of it."""

    oid: int
    category: str  # typcategory
    typtype: str  # b(ase), d(omain), e(num), c(omposite), r(ange), p(seudo)
    base: int  # typbasetype (domains)
    element: int  # typelem (arrays)
    delimiter: str  # typdelim


def value_type(oid: int, catalog: dict[int, CatalogType], depth: int = 0) -> ValueType:
    """The ValueType of type ``oid``; a type missing from ``catalog`` is text."""
    entry = catalog.get(oid)
    if entry is None or depth > 16:
        return TEXT
    if entry.typtype == "d" and entry.base:
        return value_type(entry.base, catalog, depth + 1)
    if oid == BOOL_OID:
        return ValueType("BOOL")
    if oid == BYTEA_OID:
        return ValueType("B")
    if oid in JSON_OIDS:
        return ValueType("JSON")
    if entry.category == "N" and oid != MONEY_OID:
        return ValueType("N")
    if entry.category == "A" and entry.element:
        element = value_type(entry.element, catalog, depth + 1)
        delimiter = catalog[entry.element].delimiter if entry.element in catalog else ","
        return ValueType("L", element, delimiter or ",")
    return TEXT


def attribute(text: str | None, vtype: ValueType) -> dict[str, Any]:
    """The AttributeValue of one column value (``None``: SQL NULL)."""
    if text is None:
        return {"NULL": True}
    kind = vtype.kind
    if kind == "N":
        return {"S": text} if text.strip().lower() in NOT_NUMBERS else {"N": text}
    if kind == "BOOL":
        return {"BOOL": text in ("t", "true")}
    if kind == "B":
        return {"B": base64.b64encode(bytea(text)).decode("ascii")}
    if kind == "JSON":
        try:
            return document(
                json.loads(text, parse_int=_Number, parse_float=_Number, parse_constant=_Number)
            )
        except (ValueError, RecursionError):
            return {"S": text}
    if kind == "L":
        assert vtype.element is not None
        try:
            items = parse_array(text, vtype.delimiter)
        except (IndexError, ValueError):
            return {"S": text}
        return _list(items, vtype.element)
    return {"S": text}


def _list(items: list[Any], element: ValueType) -> dict[str, Any]:
    return {
        "L": [_list(i, element) if isinstance(i, list) else attribute(i, element) for i in items]
    }


class _Number(str):
    """A JSON number, kept as written (json.loads hands it over as text)."""


def document(value: Any) -> dict[str, Any]:
    """A parsed JSON value as an AttributeValue (DynamoDB's own JSON mapping)."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, _Number):
        text = str(value)
        return {"S": text} if text.lower() in NOT_NUMBERS else {"N": text}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, list):
        return {"L": [document(v) for v in value]}
    if isinstance(value, dict):
        return {"M": {str(k): document(v) for k, v in value.items()}}
    return {"S": str(value)}


def bytea(text: str) -> bytes:
    """A bytea value from its text output: hex (``\\x0a0b``, the default) or escape
    format (``bytea_output = escape``: printable bytes as is, others ``\\ooo``)."""
    if text.startswith("\\x"):
        return bytes.fromhex(text[2:])
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and text[i + 1 : i + 2] == "\\":
            out.append(0x5C)
            i += 2
        elif ch == "\\" and len(text) >= i + 4:
            out.append(int(text[i + 1 : i + 4], 8))
            i += 4
        else:
            out.extend(ch.encode("utf-8"))
            i += 1
    return bytes(out)


def parse_array(text: str, delimiter: str = ",") -> list[Any]:
    """An array's text output (``{1,2,NULL}``, ``{{"a b",c},{d,e}}``, ``[0:1]={x,y}``) as
    nested lists of element texts, ``None`` for NULL elements."""
    if text.startswith("["):  # dimension decoration: lower bounds other than 1
        text = text[text.index("=") + 1 :]
    items, end = _parse_list(text, 0, delimiter)
    if text[end:].strip():
        raise ValueError("text after the array")
    return items


def _parse_list(text: str, pos: int, delimiter: str) -> tuple[list[Any], int]:
    if text[pos] != "{":
        raise ValueError("an array starts with {")
    pos += 1
    items: list[Any] = []
    if text[pos] == "}":
        return items, pos + 1
    while True:
        ch = text[pos]
        if ch == "{":
            sub, pos = _parse_list(text, pos, delimiter)
            items.append(sub)
        elif ch == '"':
            pos += 1
            chars = []
            while text[pos] != '"':
                if text[pos] == "\\":
                    pos += 1
                chars.append(text[pos])
                pos += 1
            pos += 1
            items.append("".join(chars))
        else:
            start = pos
            while text[pos] not in (delimiter, "}"):
                pos += 1
            raw = text[start:pos].strip()
            items.append(None if raw.upper() == "NULL" else raw)
        if text[pos] == delimiter:
            pos += 1
            continue
        if text[pos] == "}":
            return items, pos + 1
        raise ValueError(f"unexpected {text[pos]!r} in an array")
