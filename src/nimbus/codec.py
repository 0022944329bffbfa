"""JSON on the hot path: orjson, behaving as the standard library does where it matters.

Every invocation encodes an event and decodes a payload at least once; the standard
library's C encoder costs ~12 µs for a function URL's 660-byte event on a small VM,
orjson ~1 µs. The two differ at the edges: orjson rejects ``NaN``/``Infinity`` (which
Python runtimes emit for float('nan')) and integers beyond 64 bits, and words its errors
differently. So ``loads`` falls back to ``json.loads`` for whatever orjson refuses (the
same values are accepted, with the same error messages as before), and ``dumps`` to
``json.dumps`` for what orjson cannot encode. Output is compact (no spaces) UTF-8.

Nesting is bounded: ``loads`` refuses JSON deeper than its parsers go (orjson's 1,024
levels; past that the standard library would raise RecursionError, not ValueError), and
``too_deep`` tells whether a parsed request body nests deeper than ``MAX_NESTING``, the
depth nimbus's own recursive code (validation, error messages) handles safely.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

# Request bodies nimbus parses and then walks (the control plane's) nest no deeper: no
# AWS request shape comes near, and each level costs a few Python frames of the ~1,000.
MAX_NESTING = 100


class TooDeep(ValueError):
    """JSON nested deeper than nimbus reads."""


def loads(data: bytes | str) -> Any:
    """Parse JSON; raises ValueError (or UnicodeDecodeError) as ``json.loads`` would, and
    TooDeep (a ValueError) past the parsers' depth."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        try:
            return json.loads(data)
        except RecursionError:
            raise TooDeep("the JSON is nested too deeply") from None


def too_deep(value: Any, limit: int = MAX_NESTING) -> bool:
    """Whether the parsed JSON ``value`` nests objects and arrays more than ``limit``
    deep (``[]`` is one level). Iterative: it never recurses itself."""
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def nested_too_deep(raw: bytes | str, value: Any, limit: int = MAX_NESTING) -> bool:
    """``too_deep`` for ``value`` parsed from ``raw``, skipping the walk when ``raw`` has
    too few brackets to nest that deep (the usual case)."""
    opening = ("[", "{") if isinstance(raw, str) else (b"[", b"{")
    if raw.count(opening[0]) + raw.count(opening[1]) <= limit:  # type: ignore[arg-type]
        return False
    return isinstance(value, dict | list) and too_deep(value, limit)


def dumps(value: Any) -> bytes:
    """Compact JSON as UTF-8 bytes."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return _compact(value).encode()
