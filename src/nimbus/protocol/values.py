"""Scalar values on the wire: reading them as their shape's Python type and writing them
as each protocol does.

Timestamps arrive as ISO 8601 (query, XML, URI and query-string members), epoch seconds
(JSON bodies) or RFC 822 (headers), unless the member's ``timestampFormat`` says
otherwise; they are read leniently (any of the three) and written in the member's
format. Handlers see aware UTC ``datetime``s.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import math
import re
from datetime import UTC, datetime
from email.utils import formatdate, parsedate_to_datetime
from typing import Any

from botocore.model import Shape


class BadValue(ValueError):
    """A value that does not read as its shape's type; the message says what it is."""


_INTEGER = re.compile(r"[+-]?[0-9]+")
_SURROGATE = re.compile("[\ud800-\udfff]")
INTEGERS = frozenset({"integer", "long", "short", "byte"})
FLOATS = frozenset({"float", "double"})
STRINGS = frozenset({"string", "character"})


def from_text(shape: Shape, text: str) -> Any:
    """A scalar member sent as text (query parameter, URI label, header, XML element)."""
    kind = shape.type_name
    if kind in STRINGS:
        return text
    if kind in INTEGERS:
        # Not int(): it also takes "1_000" and other scripts' digits (U+0665), which no
        # AWS service does.
        if _INTEGER.fullmatch(text.strip()) is None:
            raise BadValue(f"'{text}' is not an integer")
        try:
            number = int(text.strip())
        except ValueError:  # more digits than Python converts
            raise BadValue(f"'{text}' is not an integer") from None
        # Every integer AWS models fits 64 bits; past that a store would overflow.
        if not -(2**63) <= number < 2**63:
            raise BadValue(f"'{text}' is out of range for an integer")
        return number
    if kind == "boolean":
        lowered = text.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        raise BadValue(f"'{text}' is not a boolean (true or false)")
    if kind in FLOATS:
        if not text.strip().isascii() or "_" in text:
            raise BadValue(f"'{text}' is not a number")
        try:
            return float(text.strip())
        except ValueError:
            raise BadValue(f"'{text}' is not a number") from None
    if kind == "timestamp":
        return timestamp(text)
    if kind == "blob":
        return unbase64(text)
    raise BadValue(f"a {kind} cannot be sent as text")


def from_json(shape: Shape, value: Any) -> Any:
    """A scalar member of a JSON body."""
    kind = shape.type_name
    if kind in STRINGS:
        if isinstance(value, str):
            # JSON's "\ud800" escape makes a lone surrogate: not text any service (or
            # UTF-8) can hold, so refused here rather than failing where it is encoded.
            lone = _SURROGATE.search(value)
            if lone is not None:
                raise BadValue(
                    f"not valid Unicode text (a lone surrogate, U+{ord(lone[0]):04X}, at "
                    f"position {lone.start()})"
                )
            return value
        raise BadValue(f"expected a string, got {_json_type(value)}")
    if kind in INTEGERS:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise BadValue(f"expected an integer, got {_json_type(value)}")
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        raise BadValue(f"expected a boolean, got {_json_type(value)}")
    if kind in FLOATS:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if value in ("NaN", "Infinity", "-Infinity"):
            return float(value)
        raise BadValue(f"expected a number, got {_json_type(value)}")
    if kind == "timestamp":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return _epoch(value)
        if isinstance(value, str):
            return timestamp(value)
        raise BadValue(f"expected a timestamp, got {_json_type(value)}")
    if kind == "blob":
        if isinstance(value, str):
            return unbase64(value)
        raise BadValue(f"expected base64 text, got {_json_type(value)}")
    raise BadValue(f"unexpected {kind}")


def timestamp(text: str) -> datetime:
    """Epoch seconds, ISO 8601 or RFC 822, as an aware UTC datetime."""
    text = text.strip()
    try:
        return _epoch(float(text))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            raise BadValue(f"'{text}' is not a timestamp (ISO 8601 or epoch seconds)") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59:59-01:00 is past the last UTC datetime
        raise BadValue(f"'{text}' is out of range for a timestamp") from None


def _epoch(seconds: float) -> datetime:
    if not math.isfinite(seconds):
        raise BadValue(f"'{seconds}' is not a timestamp")
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise BadValue(f"'{seconds}' is out of range for a timestamp") from None


def unbase64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadValue("not valid base64") from None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "a number"
    )


# --- writing ---------------------------------------------------------------------------


def _aware(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, UTC)
    return timestamp(str(value))


def format_timestamp(value: Any, fmt: str) -> Any:
    """``value`` (datetime, epoch seconds or text) as ``fmt`` (iso8601, unixTimestamp,
    rfc822) writes it: ISO 8601 with milliseconds in UTC, as AWS answers."""
    moment = _aware(value).astimezone(UTC)
    fmt = fmt.lower()
    if fmt == "unixtimestamp":
        seconds = calendar.timegm(moment.timetuple())
        if moment.microsecond:
            return seconds + round(moment.microsecond / 1_000_000, 3)
        return seconds
    if fmt == "rfc822":
        return formatdate(calendar.timegm(moment.timetuple()), usegmt=True)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def to_text(shape: Shape, value: Any, default_timestamp: str = "iso8601") -> str:
    """A scalar as text (XML element, header, query parameter)."""
    kind = shape.type_name
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "timestamp":
        fmt = shape.serialization.get("timestampFormat", default_timestamp)
        return str(format_timestamp(value, fmt))
    if kind == "blob":
        return b64(value)
    if kind in FLOATS:
        return float_text(float(value))
    return str(value)


def to_json(shape: Shape, value: Any) -> Any:
    """A scalar as a JSON body carries it."""
    kind = shape.type_name
    if kind == "timestamp":
        return format_timestamp(value, shape.serialization.get("timestampFormat", "unixTimestamp"))
    if kind == "blob":
        return b64(value)
    if kind in FLOATS:
        number = float(value)
        return number if math.isfinite(number) else float_text(number)
    return value


def float_text(number: float) -> str:
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    return repr(number)


def b64(value: Any) -> str:
    raw = value.encode() if isinstance(value, str) else bytes(value)
    return base64.b64encode(raw).decode("ascii")
