"""Lambda's event filtering: which records of an event source mapping reach the function.

A mapping's ``FilterCriteria`` holds up to five patterns, OR'ed: a record that matches
none of them is dropped (acked without invoking), as Lambda discards it. A pattern is
the EventBridge-style JSON Lambda documents ("Lambda event filtering"): objects nest
like the record, and each leaf is a list of rules, any of which may match:

- ``"x": ["a", 1, null]`` equals (a string, a number, null); ``[""]`` empty
- ``{"prefix": "us-"}``, ``{"suffix": ".png"}`` (either also as
  ``{"prefix": {"equals-ignore-case": "us-"}}``), ``{"equals-ignore-case": "a"}``,
  ``{"wildcard": "*/lib/*"}``
- ``{"anything-but": ...}`` of a value, a list, or a prefix/suffix/equals-ignore-case/
  wildcard object
- ``{"numeric": [">", 10, "<=", 20]}``, ``{"exists": true|false}``
- ``"$or": [pattern, pattern, ...]`` alternatives of whole sub-patterns

The record's ``body`` (SQS) or ``data`` (streams) is matched as JSON when it parses as a
JSON object; a body that is not JSON only matches rules on the plain string, and an
object pattern never matches it (Lambda drops such a record).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from nimbus.errors import InvalidParameterValue

MAX_FILTERS = 5
MAX_PATTERN_LENGTH = 4096
INVALID = "Invalid filter pattern definition."
# Record members whose value is a JSON document the filter may look into.
PAYLOAD_KEYS = ("body", "data")
_MISSING = object()
_NUMERIC_OPS = ("<", "<=", "=", ">", ">=")
_STRING_RULES = ("prefix", "suffix", "equals-ignore-case", "wildcard")


class _Invalid(Exception):
    pass


@dataclass(frozen=True)
class FilterSet:
    """A mapping's filters, parsed once; ``matches`` says whether a record passes."""

    patterns: tuple[dict[str, Any], ...]

    @classmethod
    def parse(cls, raw_patterns: list[Any]) -> FilterSet:
        """Parse and check the ``Pattern`` strings; InvalidParameterValue (Lambda's
        words) if any is not a valid filter pattern."""
        return cls(tuple(parse_pattern(raw) for raw in raw_patterns))

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def matches(self, record: dict[str, Any]) -> bool:
        if not self.patterns:
            return True
        view = _record_view(record)
        return any(_match_object(pattern, view) for pattern in self.patterns)


def parse_pattern(raw: Any) -> dict[str, Any]:
    """One filter's ``Pattern`` string as a checked pattern object."""
    if not isinstance(raw, str) or len(raw) > MAX_PATTERN_LENGTH:
        raise InvalidParameterValue(INVALID)
    try:
        pattern = json.loads(raw)
        if not isinstance(pattern, dict) or not pattern:
            raise _Invalid
        _check_object(pattern)
    except (ValueError, _Invalid, RecursionError) as exc:  # "[[[[..." past json's depth
        raise InvalidParameterValue(INVALID) from exc
    return pattern


def _check_object(pattern: dict[str, Any]) -> None:
    for key, value in pattern.items():
        if key == "$or":
            if not isinstance(value, list) or len(value) < 2:
                raise _Invalid
            for alternative in value:
                if not isinstance(alternative, dict) or not alternative:
                    raise _Invalid
                _check_object(alternative)
        elif isinstance(value, dict):
            if not value:
                raise _Invalid
            _check_object(value)
        elif isinstance(value, list):
            if not value:
                raise _Invalid
            for rule in value:
                _check_rule(rule)
        else:
            raise _Invalid


def _check_rule(rule: Any) -> None:
    if rule is None or (isinstance(rule, (str, int, float)) and not isinstance(rule, bool)):
        return
    if not isinstance(rule, dict) or len(rule) != 1:
        raise _Invalid
    ((op, arg),) = rule.items()
    if op in ("prefix", "suffix"):
        if isinstance(arg, dict):
            if set(arg) != {"equals-ignore-case"} or not isinstance(
                arg["equals-ignore-case"], str
            ):
                raise _Invalid
        elif not isinstance(arg, str):
            raise _Invalid
    elif op in ("equals-ignore-case", "wildcard"):
        if not isinstance(arg, str):
            raise _Invalid
    elif op == "exists":
        if not isinstance(arg, bool):
            raise _Invalid
    elif op == "numeric":
        _check_numeric(arg)
    elif op == "anything-but":
        if isinstance(arg, list):
            if not arg or not all(_is_scalar(v) for v in arg):
                raise _Invalid
        elif isinstance(arg, dict):
            if len(arg) != 1 or next(iter(arg)) not in _STRING_RULES:
                raise _Invalid
            inner = next(iter(arg.values()))
            if not isinstance(inner, str) and not (
                isinstance(inner, list) and inner and all(isinstance(v, str) for v in inner)
            ):
                raise _Invalid
        elif not _is_scalar(arg):
            raise _Invalid
    else:
        raise _Invalid


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def _check_numeric(arg: Any) -> None:
    if not isinstance(arg, list) or len(arg) not in (2, 4):
        raise _Invalid
    for i in range(0, len(arg), 2):
        op, number = arg[i], arg[i + 1]
        if op not in _NUMERIC_OPS or not _is_scalar(number) or isinstance(number, str):
            raise _Invalid
    # A range: a lower bound then an upper one ("=" makes no range).
    if len(arg) == 4 and (arg[0] not in (">", ">=") or arg[2] not in ("<", "<=")):
        raise _Invalid


def _record_view(record: dict[str, Any]) -> dict[str, Any]:
    """The record with its payload member parsed when it is a JSON object."""
    view = record
    for key in PAYLOAD_KEYS:
        value = record.get(key)
        if isinstance(value, str):
            try:
                parsed = json.loads(value)
            except (ValueError, RecursionError):  # not JSON, or nested past json's depth
                continue
            if isinstance(parsed, dict):
                view = {**view, key: parsed}
    return view


def _match_object(pattern: dict[str, Any], value: Any) -> bool:
    for key, sub in pattern.items():
        if key == "$or":
            if not any(_match_object(alt, value) for alt in sub):
                return False
            continue
        field = value.get(key, _MISSING) if isinstance(value, dict) else _MISSING
        if isinstance(sub, dict):
            if isinstance(field, list):
                if not any(isinstance(f, dict) and _match_object(sub, f) for f in field):
                    return False
            elif not isinstance(field, dict) or not _match_object(sub, field):
                return False
        elif not _match_rules(sub, field):
            return False
    return True


def _match_rules(rules: list[Any], field: Any) -> bool:
    values = field if isinstance(field, list) else [field]
    for rule in rules:
        if isinstance(rule, dict) and "exists" in rule:
            present = field is not _MISSING
            if rule["exists"] == present:
                return True
            continue
        if field is _MISSING:
            continue
        if any(_match_rule(rule, v) for v in values):
            return True
    return False


def _match_rule(rule: Any, value: Any) -> bool:
    if rule is None:
        return value is None
    if isinstance(rule, str):
        return isinstance(value, str) and value == rule
    if _is_scalar(rule):
        return _is_number(value) and float(value) == float(rule)
    ((op, arg),) = rule.items()
    if op == "numeric":
        return _is_number(value) and _numeric(arg, float(value))
    if op == "anything-but":
        return _anything_but(arg, value)
    if not isinstance(value, str):
        return False
    return _string_rule(op, arg, value)


def _string_rule(op: str, arg: Any, value: str) -> bool:
    if op in ("prefix", "suffix"):
        if isinstance(arg, dict):
            arg, value = arg["equals-ignore-case"].lower(), value.lower()
        return value.startswith(arg) if op == "prefix" else value.endswith(arg)
    if op == "equals-ignore-case":
        return bool(value.lower() == arg.lower())
    return _wildcard(arg).fullmatch(value) is not None  # wildcard


def _anything_but(arg: Any, value: Any) -> bool:
    if isinstance(arg, dict):
        ((op, inner),) = arg.items()
        if not isinstance(value, str):
            return True
        inner_values = inner if isinstance(inner, list) else [inner]
        return not any(_string_rule(op, v, value) for v in inner_values)
    excluded = arg if isinstance(arg, list) else [arg]
    return not any(_match_rule(v, value) for v in excluded)


def _numeric(arg: list[Any], value: float) -> bool:
    for i in range(0, len(arg), 2):
        op, bound = arg[i], float(arg[i + 1])
        ok = {
            "<": value < bound,
            "<=": value <= bound,
            "=": value == bound,
            ">": value > bound,
            ">=": value >= bound,
        }[op]
        if not ok:
            return False
    return True


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _wildcard(pattern: str) -> re.Pattern[str]:
    # "*" matches any run of characters; "\*" is a literal star.
    parts = re.split(r"(\\\*|\*)", pattern)
    regex = "".join(
        ".*" if part == "*" else re.escape("*") if part == "\\*" else re.escape(part)
        for part in parts
    )
    return re.compile(regex, re.DOTALL)
