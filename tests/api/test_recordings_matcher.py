"""Matching a live response against a response recorded against real AWS.

The recordings (``tests/api/recordings/``) come from LocalStack's snapshot tests, where
snapshot transformers have already replaced what changes from run to run with
placeholders: ``<function-name:1>``, ``<uuid:2>``, ``<code-sha256:1>`` name one value each
within a scenario (the same value always got the same placeholder, different values
different numbers); ``<code-size>``, ``<location>``, ``date``, ``datetime`` stand for any
value of their kind; ``111111111111``, ``<region>`` and ``<partition>`` are the account,
the region and the partition.

``Matcher`` compares one scenario's responses in order: a placeholder is bound to the
value it first meets and must then meet that value again, two numbered placeholders of
one kind may not stand for the same value, and everything else must be equal, key for
key (no key missing, none extra), so that nothing is compared loosely by accident.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

# A placeholder as LocalStack's transformers write them: <kind> or <kind:n>.
PLACEHOLDER = re.compile(r"<([a-z0-9_.-]+)(?::(\d+))?>", re.IGNORECASE)
# Placeholders replacing a value without tracking it (``reference_replacement=False`` in
# LocalStack's transformers): any value matches, nothing is bound.
# ``<any>`` is what a key LocalStack replaced with a plain word was turned into.
ANY = "<any>"
VALUE_ONLY = {"<code-size>", "<location>", "<layer-location>", "<aws_internal_failure>", ANY}
# What nimbus does not compare, on purpose (a documented difference put it there).
IGNORED = "<ignored>"
# LocalStack's RegexTransformer(PATTERN_ISO8601, "date") and its datetime transformer.
# What a placeholder of a kind can stand for (a function name has no ':'), so that a
# qualified ARN cannot pass for an unqualified one by binding ``name:1`` as the name.
KINDS = {
    "function-name": r"[A-Za-z0-9_-]+",
    "fn-name": r"[A-Za-z0-9_-]+",
    "resource": r"[A-Za-z0-9_.+=,@-]+",
    "uuid": r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
    "code-sha256": r"[A-Za-z0-9+/]{43}=",
}
ISO8601 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})?")


class Matcher:
    """Placeholder bindings of one scenario, and the comparison that uses them."""

    def __init__(self, account: str, region: str) -> None:
        self.fixed = {"111111111111": account, "<partition>": "aws", "<region>": region}
        self.bindings: dict[str, str] = {}

    def bind(self, placeholder: str, value: str) -> None:
        """Fix what ``placeholder`` stands for before it is met (e.g. a name we chose)."""
        self._check_distinct(placeholder, value)
        self.bindings[placeholder] = value

    def compare(self, recorded: Any, actual: Any, path: str = "$") -> list[str]:
        """Every difference between ``recorded`` and ``actual``, one line each."""
        if isinstance(recorded, dict):
            if not isinstance(actual, dict):
                return [f"{path}: recorded an object, got {actual!r}"]
            problems = [f"{path}.{k}: missing" for k in recorded if k not in actual]
            problems += [f"{path}.{k}: not recorded, got {actual[k]!r}" for k in actual
                         if k not in recorded]
            for key in recorded:
                if key in actual:
                    problems += self.compare(recorded[key], actual[key], f"{path}.{key}")
            return problems
        if isinstance(recorded, list):
            if not isinstance(actual, list) or len(actual) != len(recorded):
                return [f"{path}: recorded {len(recorded)} items, got {actual!r}"]
            problems = []
            for i, (want, got) in enumerate(zip(recorded, actual, strict=True)):
                problems += self.compare(want, got, f"{path}[{i}]")
            return problems
        if isinstance(recorded, str):
            return self._compare_string(recorded, actual, path)
        if type(recorded) is not type(actual) or recorded != actual:
            return [f"{path}: recorded {recorded!r}, got {actual!r}"]
        return []

    def _compare_string(self, recorded: str, actual: Any, path: str) -> list[str]:
        if recorded in VALUE_ONLY or recorded == IGNORED:
            return [] if actual is not None else [f"{path}: recorded {recorded}, got None"]
        if recorded == "datetime":
            ok = isinstance(actual, datetime.datetime)
            return [] if ok else [f"{path}: recorded a datetime, got {actual!r}"]
        if recorded == "date":
            ok = isinstance(actual, str) and ISO8601.fullmatch(actual) is not None
            return [] if ok else [f"{path}: recorded an ISO 8601 date, got {actual!r}"]
        if isinstance(actual, (int, float)) and not isinstance(actual, bool):
            actual = str(actual)  # e.g. a number the recording replaced by a placeholder
        if not isinstance(actual, str):
            return [f"{path}: recorded {recorded!r}, got {actual!r}"]
        for token, value in self.fixed.items():
            recorded = recorded.replace(token, value)
        found = self._match(recorded, actual)
        if found is None:
            return [f"{path}: recorded {recorded!r} ({self._known(recorded)}), got {actual!r}"]
        for placeholder, value in found.items():
            problem = self._check_distinct(placeholder, value)
            if problem:
                return [f"{path}: {problem}"]
            self.bindings[placeholder] = value
        return []

    def _match(self, recorded: str, actual: str) -> dict[str, str] | None:
        """The new bindings under which ``recorded`` reads ``actual``, or None."""
        pattern, groups, pos = [], {}, 0
        for m in PLACEHOLDER.finditer(recorded):
            pattern.append(re.escape(recorded[pos : m.start()]))
            token = m.group(0)
            if token in self.bindings:
                pattern.append(re.escape(self.bindings[token]))
            elif token in groups:
                pattern.append(f"(?P={groups[token]})")
            else:
                groups[token] = f"g{len(groups)}"
                pattern.append(f"(?P<{groups[token]}>{KINDS.get(m.group(1), '.+?')})")
            pos = m.end()
        pattern.append(re.escape(recorded[pos:]))
        m = re.fullmatch("".join(pattern), actual, re.DOTALL)
        if m is None:
            return None
        return {token: m.group(name) for token, name in groups.items()}

    def _check_distinct(self, placeholder: str, value: str) -> str | None:
        kind = placeholder.split(":")[0]
        for other, bound in self.bindings.items():
            if other != placeholder and other.split(":")[0] == kind and bound == value:
                return f"{placeholder} and {other} were different values, both are {value!r}"
        return None

    def _known(self, recorded: str) -> str:
        tokens = [m.group(0) for m in PLACEHOLDER.finditer(recorded)]
        known = {t: self.bindings[t] for t in tokens if t in self.bindings}
        return f"bound: {known}" if known else "nothing bound"


# -- the matcher's own tests ----------------------------------------------------------


def test_placeholders_bind_once_and_stay_bound() -> None:
    m = Matcher("000000000000", "us-east-1")
    arn = "arn:<partition>:lambda:<region>:111111111111:function:<function-name:1>"
    assert m.compare(arn, "arn:aws:lambda:us-east-1:000000000000:function:fn-1") == []
    assert m.bindings == {"<function-name:1>": "fn-1"}
    latest = "arn:aws:lambda:us-east-1:000000000000:function:fn-1:$LATEST"
    assert m.compare(arn + ":$LATEST", latest) == []
    assert m.compare("<function-name:1>", "fn-2") != []
    qualified = "arn:aws:lambda:us-east-1:000000000000:function:fn-3:1"
    assert Matcher("000000000000", "us-east-1").compare(arn, qualified) != []


def test_numbered_placeholders_of_a_kind_are_different_values() -> None:
    m = Matcher("000000000000", "us-east-1")
    assert m.compare({"a": "<resource:1>", "b": "<resource:2>"}, {"a": "x", "b": "y"}) == []
    two = {"a": "<resource:1>", "b": "<resource:2>"}
    problems = Matcher("0", "r").compare(two, {"a": "x", "b": "x"})
    assert problems and "different values" in problems[0]


def test_keys_are_compared_both_ways_and_scalars_exactly() -> None:
    m = Matcher("000000000000", "us-east-1")
    problems = m.compare({"A": 1, "B": "x"}, {"A": "1", "C": "x"})
    assert problems == [
        "$.B: missing",
        "$.C: not recorded, got 'x'",
        "$.A: recorded 1, got '1'",
    ]


def test_value_only_placeholders_dates_and_ignored_values() -> None:
    m = Matcher("000000000000", "us-east-1")
    recorded = {"CodeSize": "<code-size>", "LastModified": "date", "RevisionId": IGNORED,
                "T": "datetime"}
    actual = {"CodeSize": 312, "LastModified": "2024-01-31T12:00:00.000+0000",
              "RevisionId": "r", "T": datetime.datetime.now(datetime.UTC)}
    assert m.compare(recorded, actual) == []
    assert m.compare("date", "yesterday") != []
