"""Subscription filter policies: which published messages a subscription receives.

A policy is SNS's JSON (checked as SNS checks it, refused in SNS's words): each key names
a message attribute (``FilterPolicyScope`` MessageAttributes, the default) or a property
of the JSON message body (MessageBody, where objects nest like the body, and a dotted key
``"a.b"`` also reaches ``{"a": {"b": ..}}``); each leaf is a list of conditions, any of
which may match, and every key must match:

- ``"x": ["a", 1, true, null]``: equals (a number equals numerically)
- ``{"prefix": "us-"}``, ``{"suffix": ".png"}`` (either also as ``{"prefix":
  {"equals-ignore-case": "us-"}}``), ``{"equals-ignore-case": "A"}``
- ``{"anything-but": "a" | 1 | ["a", "b"] | {"prefix": "x"}}``: present and none of them
- ``{"numeric": [">", 0, "<=", 100]}``, ``{"numeric": ["=", 5]}``
- ``{"exists": true | false}``, ``{"cidr": "10.0.0.0/24"}``
- ``"$or": [policy, policy, ...]``: alternatives of whole sub-policies

An attribute of type ``String.Array`` matches when any of its elements does, as does an
array in the body; a Binary attribute only ever matches ``exists``. A body that is not a
JSON object matches no body policy (the message is not delivered).

Limits (SNS's): at most 5 top-level keys, and at most 150 combinations, counted as SNS
counts them (each leaf's values times its depth, multiplied along a policy and summed
over ``$or`` alternatives).
"""

from __future__ import annotations

import ipaddress
import json
import math
from dataclasses import dataclass
from typing import Any

from nimbus.sns.arns import invalid

ATTRIBUTES = "MessageAttributes"
BODY = "MessageBody"
SCOPES = (ATTRIBUTES, BODY)
MAX_KEYS = 5
MAX_COMBINATIONS = 150
_MISSING = object()
_LOWER = (">", ">=")
_UPPER = ("<", "<=")


class _Bad(Exception):
    """A policy SNS refuses; the message is SNS's, after "FilterPolicy: "."""


@dataclass(frozen=True)
class FilterPolicy:
    """A checked policy and its scope; ``matches`` decides one message."""

    branches: tuple[dict[str, list[Any]], ...]  # $or expanded: dotted key -> conditions
    scope: str

    @classmethod
    def parse(cls, text: str, scope: str, *, subscribing: bool) -> FilterPolicy | None:
        """The policy ``text`` says (None: an empty one, ``{}``, which filters nothing),
        or SNS's InvalidParameter: prefixed "Attributes Reason: " on Subscribe."""
        prefix = "Invalid parameter: Attributes Reason: " if subscribing else "Invalid parameter: "
        try:
            policy = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise invalid(f"{prefix}FilterPolicy: failed to parse JSON. {exc}") from None
        if not isinstance(policy, dict):
            raise invalid(f"{prefix}FilterPolicy: Filter policy must be a JSON object")
        if not policy:
            return None
        try:
            if len(policy) > MAX_KEYS:
                raise _Bad(f"Filter policy can not have more than {MAX_KEYS} keys")
            if _combinations(policy, 1, 1, scope) > MAX_COMBINATIONS:
                raise _Bad("Filter policy is too complex")
            branches = tuple(_expand(policy, ""))
        except _Nested:
            raise invalid(
                f"{prefix}Filter policy scope {ATTRIBUTES} does not support nested filter policy"
            ) from None
        except _Bad as exc:
            raise invalid(f"{prefix}FilterPolicy: {exc}") from None
        return cls(branches, scope)

    def matches(self, message: str, attributes: dict[str, dict[str, Any]]) -> bool:
        if self.scope == BODY:
            try:
                body = json.loads(message)
            except (ValueError, RecursionError):
                return False
            if not isinstance(body, dict):
                return False
            values = _flatten_body(body)
        else:
            values = {name: _attribute_values(attr) for name, attr in attributes.items()}
        return any(
            all(_key_matches(conditions, values.get(key, _MISSING)) for key, conditions in
                branch.items())
            for branch in self.branches
        )  # fmt: skip


class _Nested(Exception):
    pass


# -- checking -----------------------------------------------------------------------------


def _combinations(policy: dict[str, Any], depth: int, combinations: int, scope: str) -> int:
    for key, value in policy.items():
        if isinstance(value, dict):
            if scope == ATTRIBUTES:
                raise _Nested
            combinations = _combinations(value, depth + 1, combinations, scope)
        elif isinstance(value, list):
            if not value:
                raise _Bad("Empty arrays are not allowed")
            if key == "$or":
                if len(value) < 2 or not all(isinstance(v, dict) and v for v in value):
                    raise _Bad('"$or" must be an array of at least two non-empty objects')
                combinations = sum(_combinations(v, depth, combinations, scope) for v in value)
            else:
                for condition in value:
                    _check_condition(condition)
                combinations *= len(value) * depth
        else:
            raise _Bad(f'"{key}" must be an object or an array')
    return combinations


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_condition(condition: Any) -> None:
    if condition is None or isinstance(condition, str | bool) or _number(condition):
        return
    if not isinstance(condition, dict):
        raise _Bad("Match value must be String, number, true, false, or null")
    if len(condition) != 1:
        raise _Bad("Only one key allowed in match expression")
    ((op, arg),) = condition.items()
    if op in ("prefix", "suffix"):
        if isinstance(arg, dict) and list(arg) == ["equals-ignore-case"]:
            arg = arg["equals-ignore-case"]
        if not isinstance(arg, str):
            raise _Bad(f"{op} match pattern must be a string")
    elif op == "equals-ignore-case":
        if not isinstance(arg, str):
            raise _Bad("equals-ignore-case match pattern must be a string")
    elif op == "anything-but":
        _check_anything_but(arg)
    elif op == "numeric":
        _numeric_range(arg)
    elif op == "exists":
        if not isinstance(arg, bool):
            raise _Bad("exists match pattern must be either true or false.")
    elif op == "cidr":
        _network(arg)
    else:
        raise _Bad(f"Unrecognized match type {op}")


def _check_anything_but(arg: Any) -> None:
    if isinstance(arg, str) or _number(arg):
        return
    if isinstance(arg, list):
        if not arg:
            raise _Bad("Empty arrays are not allowed")
        if not all(isinstance(v, str) or _number(v) for v in arg):
            raise _Bad("Inside anything but list, start|null|boolean is not supported.")
        return
    if isinstance(arg, dict):
        if len(arg) != 1:
            raise _Bad("Only one key allowed in match expression")
        ((op, value),) = arg.items()
        if op != "prefix":
            raise _Bad(f"Unsupported anything-but pattern: {op}")
        if not isinstance(value, str):
            raise _Bad("prefix match pattern must be a string")
        return
    raise _Bad("Value of anything-but must be an array or single string/number value.")


def _numeric_range(arg: Any) -> tuple[float, bool, float, bool] | float:
    """A checked ``numeric`` condition: the value it equals, or (low, low inclusive, high,
    high inclusive) with infinities for an open side."""
    if not isinstance(arg, list) or not arg:
        raise _Bad("Invalid member in numeric match: ]")
    first = arg[0]
    if not isinstance(first, str):
        raise _Bad(f"Invalid member in numeric match: {_shown(first)}")
    if first not in ("=", *_LOWER, *_UPPER):
        raise _Bad(f"Unrecognized numeric range operator: {first}")
    if len(arg) < 2 or not _number(arg[1]):
        raise _Bad(f"Value of {'equals' if first == '=' else first} must be numeric")
    value = float(arg[1])
    if first == "=":
        if len(arg) > 2:
            raise _Bad("Too many elements in numeric expression")
        return value
    if first in _UPPER:
        if len(arg) > 2:
            raise _Bad("Too many elements in numeric expression")
        return (-math.inf, False, value, first == "<=")
    if len(arg) == 2:
        return (value, first == ">=", math.inf, False)
    second = arg[2]
    if not isinstance(second, str):
        raise _Bad(f"Bad value in numeric range: {_shown(second)}")
    if second not in _UPPER:
        raise _Bad(f"Bad numeric range operator: {second}")
    if len(arg) < 4 or not _number(arg[3]):
        raise _Bad(f"Value of {second} must be numeric")
    if len(arg) > 4:
        raise _Bad("Too many terms in numeric range expression")
    top = float(arg[3])
    if value >= top:
        raise _Bad("Bottom must be less than top")
    return (value, first == ">=", top, second == "<=")


def _network(arg: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if not isinstance(arg, str):
        raise _Bad("prefix match pattern must be a string")
    if "/" not in arg:
        try:
            ipaddress.ip_address(arg)
        except ValueError:
            raise _Bad(f"Nonstandard IP address: {arg}") from None
        return ipaddress.ip_network(arg)
    address, _, bits = arg.partition("/")
    if not bits.isdigit():
        raise _Bad("Malformed CIDR, mask bits must be an integer")
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise _Bad(f"Nonstandard IP address: {address}") from None
    try:
        return ipaddress.ip_network(arg, strict=False)
    except ValueError:
        raise _Bad(f"Malformed CIDR: {arg}") from None


def _shown(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def _expand(policy: dict[str, Any], prefix: str) -> list[dict[str, list[Any]]]:
    """The policy as alternatives of flat {dotted key: conditions} (``$or`` expanded)."""
    branches: list[dict[str, list[Any]]] = [{}]
    for key, value in policy.items():
        if key == "$or":
            options = [b for alt in value for b in _expand(alt, prefix)]
        elif isinstance(value, dict):
            options = _expand(value, f"{prefix}{key}.")
        else:
            options = [{f"{prefix}{key}": value}]
        branches = [{**b, **o} for b in branches for o in options]
    return branches


# -- matching ------------------------------------------------------------------------------


def _attribute_values(attribute: dict[str, Any]) -> list[Any]:
    """What a message attribute offers to conditions: a String's text, a Number's text
    (compared as a number by numeric conditions), a String.Array's elements; nothing for
    Binary (only ``exists`` sees it)."""
    kind = str(attribute.get("DataType") or attribute.get("Type") or "")
    text = attribute.get("StringValue")
    if kind.startswith("Binary") or text is None:
        return []
    if kind == "String.Array":
        try:
            items = json.loads(text)
        except (ValueError, RecursionError):
            return []
        return items if isinstance(items, list) else []
    if kind.startswith("Number"):
        try:
            return [_NumberText(text, float(text))]
        except ValueError:
            return [text]
    return [text]


@dataclass(frozen=True)
class _NumberText:
    """A Number attribute: equal to a policy number by value, to a policy string by text."""

    text: str
    value: float


def _flatten_body(body: dict[str, Any]) -> dict[str, list[Any]]:
    """Every leaf of the body by its dotted path (array elements each a value there)."""
    out: dict[str, list[Any]] = {}

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}" if path else str(key))
        elif isinstance(value, list):
            out.setdefault(path, [])  # an empty array still exists
            for item in value:
                walk(item, path)
        else:
            out.setdefault(path, []).append(value)

    walk(body, "")
    return out


def _key_matches(conditions: list[Any], values: Any) -> bool:
    present = values is not _MISSING
    items: list[Any] = values if present else []
    for condition in conditions:
        if isinstance(condition, dict) and "exists" in condition:
            if condition["exists"] == present:
                return True
        elif any(_value_matches(condition, item) for item in items):
            return True
    return False


def _as_number(value: Any) -> float | None:
    if isinstance(value, _NumberText):
        return value.value
    if _number(value):
        return float(value)
    return None


def _as_text(value: Any) -> str | None:
    if isinstance(value, _NumberText):
        return value.text
    return value if isinstance(value, str) else None


def _equals(condition: Any, value: Any) -> bool:
    if condition is None or isinstance(condition, bool):
        return value is condition
    if _number(condition):
        number = _as_number(value)
        return number is not None and number == float(condition)
    return _as_text(value) == condition


def _value_matches(condition: Any, value: Any) -> bool:
    if not isinstance(condition, dict):
        return _equals(condition, value)
    ((op, arg),) = condition.items()
    text = _as_text(value)
    if op in ("prefix", "suffix"):
        if text is None:
            return False
        fold = isinstance(arg, dict)
        pattern = arg["equals-ignore-case"] if fold else arg
        if fold:
            text, pattern = text.casefold(), pattern.casefold()
        return text.startswith(pattern) if op == "prefix" else text.endswith(pattern)
    if op == "equals-ignore-case":
        return text is not None and text.casefold() == str(arg).casefold()
    if op == "anything-but":
        if isinstance(arg, dict):
            return text is not None and not text.startswith(arg["prefix"])
        excluded = arg if isinstance(arg, list) else [arg]
        return not any(_equals(item, value) for item in excluded)
    if op == "numeric":
        number = _as_number(value)
        if number is None:
            return False
        bounds = _numeric_range(arg)
        if isinstance(bounds, float):
            return number == bounds
        low, low_in, high, high_in = bounds
        above = number >= low if low_in else number > low
        below = number <= high if high_in else number < high
        return above and below
    if op == "cidr":
        if text is None:
            return False
        try:
            return ipaddress.ip_address(text) in _network(arg)
        except (ValueError, _Bad):
            return False
    return False
