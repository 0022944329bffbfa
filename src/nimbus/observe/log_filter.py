"""CloudWatch Logs filter patterns: which log events FilterLogEvents (and ``nimbus logs
--filter``) returns.

The syntax is CloudWatch's (its "Filter pattern syntax" page), case sensitive throughout:

- ``""`` matches every event; so does ``" "`` (the documented "match everything").
- Terms: ``ERROR`` matches events containing the word ERROR; ``ERROR ARGUMENTS`` both
  words; ``"INTERNAL SERVER ERROR"`` that exact phrase; ``?ERROR ?WARN`` either word
  (a ``?`` term starts an alternative the terms after it join: ``?ERROR main ?WARN``
  is ERROR and main, or WARN); ``ERROR -ARGUMENTS`` ERROR but not ARGUMENTS. A term
  matches a whole word: the characters around it (when its own edge is a letter or
  digit) are not letters or digits, so ``ERROR`` does not match ``ERRORS`` (a ``%regex%`` does).
- ``%regex%``: events the regular expression finds something in (CloudWatch's subset:
  no parentheses).
- JSON: ``{ $.level = "ERROR" }``, ``{ $.latency > 5 }``, ``{ $.ip != 123.123.* }``
  (``*`` a wildcard in string values; ``= "*"`` alone: the field exists, whatever its
  value), ``{ $.a[0].b = 1 }``, ``IS NULL``, ``IS TRUE``, ``IS FALSE``, ``NOT EXISTS``,
  ``%regex%`` values, and ``&&`` / ``||`` (``&&`` binding tighter) with parentheses.
  Events that are not a JSON object never match.

Space-delimited patterns (``[ip, user, ...]``) are refused with a clear error: nimbus does
not implement them.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Matcher = Callable[[str], bool]
_MISSING = object()


class FilterPatternError(ValueError):
    """The pattern cannot be read: the message says where and why."""


def compile_pattern(pattern: str | None) -> Matcher:
    """A predicate over event messages for ``pattern`` (None or blank: every event)."""
    try:
        return _compile(pattern)
    except FilterPatternError:
        raise
    except (RecursionError, OverflowError, ValueError) as exc:
        # Nested too deeply, a repeat count or an index too large to use.
        raise FilterPatternError(f"Invalid filter pattern {pattern!r:.200}: {exc}.") from None


def _compile(pattern: str | None) -> Matcher:
    text = (pattern or "").strip()
    if not text:
        return _always
    if text.startswith("{"):
        if not text.endswith("}"):
            raise FilterPatternError(f"Invalid filter pattern {pattern!r}: a JSON pattern "
                                     "must end with '}'.")
        return _json_matcher(text[1:-1], pattern or "")
    if text.startswith("["):
        raise FilterPatternError(
            "Space-delimited filter patterns ([field, ...]) are not supported by nimbus; "
            "use terms, \"phrases\", %regex% or a JSON pattern { $.field = value }."
        )
    if len(text) > 1 and text.startswith("%") and text.endswith("%"):
        return _regex(text[1:-1]).search  # type: ignore[return-value]
    return _terms(text, pattern or "")


def _always(message: str) -> bool:
    return True


def _regex(body: str) -> re.Pattern[str]:
    if "(" in body or ")" in body:
        raise FilterPatternError(f"Invalid regex %{body}%: CloudWatch filter patterns do not "
                                 "support ( and ) in regular expressions.")
    try:
        return re.compile(body)
    except re.error as exc:
        raise FilterPatternError(f"Invalid regex %{body}%: {exc}.") from None


# -- terms -----------------------------------------------------------------------------------


def _word(term: str) -> re.Pattern[str]:
    """``term`` as a whole word (bounded where its own edge is a letter or digit)."""
    before = r"(?<![A-Za-z0-9])" if term[:1].isalnum() else ""
    after = r"(?![A-Za-z0-9])" if term[-1:].isalnum() else ""
    return re.compile(before + re.escape(term) + after)


_TERM = re.compile(r'\s*([?-]?)(?:"((?:[^"\\]|\\.)*)"|(\S+))')


@dataclass
class _Group:
    """Terms that must all appear (``required``) and none of ``excluded``."""

    required: list[re.Pattern[str]]
    excluded: list[re.Pattern[str]]

    def match(self, message: str) -> bool:
        return (all(p.search(message) for p in self.required)
                and not any(p.search(message) for p in self.excluded))


def _terms(text: str, pattern: str) -> Matcher:
    """Terms; each ``?`` term starts an alternative that the terms after it join (CDK's
    ``anyTermGroup``: ``?"ERROR" "MainThread" ?"WARN" "Deadlock"`` is (ERROR and
    MainThread) or (WARN and Deadlock)); terms before the first ``?`` hold for all."""
    common = _Group([], [])
    alternatives: list[_Group] = []
    everything = False
    pos = 0
    while pos < len(text):
        found = _TERM.match(text, pos)
        if found is None:
            if text[pos:].strip():
                raise FilterPatternError(f"Invalid filter pattern {pattern!r}: cannot read "
                                         f"{text[pos:]!r} (an unclosed quote?).")
            break
        pos = found.end()
        sign, quoted, bare = found.groups()
        if bare is not None and '"' in bare:
            raise FilterPatternError(f"Invalid filter pattern {pattern!r}: unbalanced "
                                     f"quote in {bare!r}.")
        term = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else str(bare)
        if quoted is not None and not term.strip():
            everything = sign == ""  # '" "': CloudWatch's "match everything"
            continue
        matcher = _word(term)
        if sign == "?":
            alternatives.append(_Group([matcher], []))
            continue
        group = alternatives[-1] if alternatives else common
        (group.excluded if sign == "-" else group.required).append(matcher)

    def match(message: str) -> bool:
        if not common.match(message):
            return False
        if alternatives and not any(g.match(message) for g in alternatives):
            return False
        return bool(common.required or common.excluded or alternatives or everything)

    return match


# -- JSON ------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<op>&&|\|\||!=|>=|<=|=|>|<|\(|\))
    | (?P<str>"(?:[^"\\]|\\.)*")
    | (?P<regex>%[^%]*%)
    | (?P<selector>\$(?:\.[A-Za-z0-9_\-@$]+|\[\s*\d+\s*\]|\.?\[\s*'[^']*'\s*\])*)
    | (?P<word>[^\s()&|=!<>"]+)
    )""",
    re.VERBOSE,
)


@dataclass
class _Tok:
    kind: str
    text: str


def _tokens(body: str, pattern: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(body):
        if not body[pos:].strip():
            break
        found = _TOKEN.match(body, pos)
        if found is None or found.end() == pos:
            raise FilterPatternError(f"Invalid filter pattern {pattern!r}: cannot read "
                                     f"{body[pos:].strip()!r}.")
        kind = found.lastgroup or "word"
        out.append(_Tok(kind, found.group(kind)))
        pos = found.end()
    return out


def _json_matcher(body: str, pattern: str) -> Matcher:
    parser = _JsonParser(_tokens(body, pattern), pattern)
    test = parser.parse()

    def match(message: str) -> bool:
        if not message.lstrip().startswith("{"):
            return False
        try:
            document = json.loads(message)
        except (ValueError, RecursionError):
            return False
        return isinstance(document, dict) and test(document)

    return match


Test = Callable[[Any], bool]


class _JsonParser:
    """``or := and ('||' and)*``, ``and := unit ('&&' unit)*``,
    ``unit := '(' or ')' | selector op value | selector IS (NULL|TRUE|FALSE) |
    selector NOT EXISTS``."""

    def __init__(self, tokens: list[_Tok], pattern: str) -> None:
        self.tokens = tokens
        self.pos = 0
        self.pattern = pattern

    def fail(self, why: str) -> FilterPatternError:
        return FilterPatternError(f"Invalid filter pattern {self.pattern!r}: {why}.")

    def peek(self) -> _Tok | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> _Tok:
        token = self.peek()
        if token is None:
            raise self.fail("it ends too early")
        self.pos += 1
        return token

    def parse(self) -> Test:
        if not self.tokens:
            raise self.fail("a JSON pattern needs a condition, e.g. { $.level = \"ERROR\" }")
        test = self.either()
        if self.peek() is not None:
            raise self.fail(f"unexpected {self.peek().text!r}")  # type: ignore[union-attr]
        return test

    def either(self) -> Test:
        tests = [self.both()]
        while (t := self.peek()) is not None and t.text == "||":
            self.take()
            tests.append(self.both())
        return tests[0] if len(tests) == 1 else (lambda d: any(t(d) for t in tests))

    def both(self) -> Test:
        tests = [self.unit()]
        while (t := self.peek()) is not None and t.text == "&&":
            self.take()
            tests.append(self.unit())
        return tests[0] if len(tests) == 1 else (lambda d: all(t(d) for t in tests))

    def unit(self) -> Test:
        token = self.take()
        if token.text == "(":
            inner = self.either()
            if self.take().text != ")":
                raise self.fail("a '(' is not closed")
            return inner
        if token.kind != "selector":
            raise self.fail(f"expected a selector such as $.field, found {token.text!r}")
        path = _path(token.text, self)
        op = self.take()
        if op.kind == "word" and op.text.upper() in ("IS", "NOT"):
            return self.keyword(op.text.upper(), path)
        if op.kind != "op" or op.text in ("(", ")", "&&", "||"):
            raise self.fail(f"expected an operator after {token.text}, found {op.text!r}")
        return _comparison(path, op.text, self.take(), self)

    def keyword(self, first: str, path: list[str | int]) -> Test:
        second = self.take().text.upper()
        if first == "NOT" and second == "EXISTS":
            return lambda d: _select(d, path) is _MISSING
        if first == "IS" and second == "NULL":
            return lambda d: _select(d, path) is None
        if first == "IS" and second in ("TRUE", "FALSE"):
            want = second == "TRUE"
            return lambda d: _select(d, path) is want
        raise self.fail(f"unknown condition {first} {second} (IS NULL, IS TRUE, IS FALSE, "
                        "NOT EXISTS)")


def _path(selector: str, parser: _JsonParser) -> list[str | int]:
    parts: list[str | int] = []
    for name, index, quoted in re.findall(r"\.([^.\[]+)|\[\s*(\d+)\s*\]|\[\s*'([^']*)'\s*\]",
                                          selector[1:]):
        parts.append(name if name else int(index) if index else quoted)
    if not parts:
        raise parser.fail(f"the selector {selector!r} names no field")
    return parts


def _select(document: Any, path: list[str | int]) -> Any:
    value = document
    for part in path:
        if isinstance(part, int):
            if not isinstance(value, list) or part >= len(value):
                return _MISSING
        elif not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _number(text: str) -> float | int | None:
    """A pattern's number: an integer exactly (a 64-bit id compares equal to itself),
    anything else as a float."""
    if _INTEGER.fullmatch(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return None


_INTEGER = re.compile(r"[-+]?[0-9]+")


def _comparison(path: list[str | int], op: str, value: _Tok, parser: _JsonParser) -> Test:
    if value.kind == "op":
        raise parser.fail(f"expected a value after {op}, found {value.text!r}")
    if op in (">", "<", ">=", "<="):
        bound = _number(value.text) if value.kind == "word" else None
        if bound is None:
            raise parser.fail(f"{op} compares numbers; {value.text!r} is not one")
        # Python compares an int of any size with a float exactly (no float(), which
        # overflows on a 400-digit number in a log line).
        compare = {">": operator.gt, "<": operator.lt, ">=": operator.ge, "<=": operator.le}[op]

        def numeric(d: Any) -> bool:
            found = _select(d, path)
            return (isinstance(found, (int, float)) and not isinstance(found, bool)
                    and compare(found, bound))

        return numeric
    equal = _equality(value, parser)
    if op == "=":
        return lambda d: (found := _select(d, path)) is not _MISSING and equal(found)
    return lambda d: (found := _select(d, path)) is not _MISSING and not equal(found)


def _equality(value: _Tok, parser: _JsonParser) -> Test:
    """Whether a selected value equals the pattern's ``value``."""
    if value.kind == "regex":
        found = _regex(value.text[1:-1])
        return lambda v: isinstance(v, str) and found.search(v) is not None
    if value.kind == "str":
        text = re.sub(r"\\(.)", r"\1", value.text[1:-1])
    else:
        text = value.text
        number = _number(text)
        if number is not None:
            return lambda v: (isinstance(v, (int, float)) and not isinstance(v, bool)
                              and v == number)
        if text in ("true", "false"):
            return lambda v: v is (text == "true")
        if text == "null":
            return lambda v: v is None
    if text == "*":  # "the field exists", whatever its value (CDK's FilterPattern.exists)
        return lambda v: True
    if "*" in text:
        wildcard = re.compile(".*".join(re.escape(part) for part in text.split("*")))
        return lambda v: isinstance(v, str) and wildcard.fullmatch(v) is not None
    return lambda v: isinstance(v, str) and v == text
