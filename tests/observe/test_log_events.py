"""CloudWatch filter patterns against the examples of CloudWatch's "Filter pattern syntax"
pages, and invocation logs seen as log events (streams, levels)."""

from __future__ import annotations

import json

import pytest

from nimbus.observe.log_events import events_of, level_of, stream_of
from nimbus.observe.log_filter import FilterPatternError, compile_pattern
from nimbus.observe.logs import InvocationLog

# The unstructured events the documentation's examples match against.
EVENTS = [
    "[ERROR 400] BAD REQUEST",
    "[ERROR 401] UNAUTHORIZED REQUEST",
    "[ERROR 419] MISSING ARGUMENTS",
    "[ERROR 420] INVALID ARGUMENTS",
    "[ERROR 500] INTERNAL SERVER ERROR",
    "[WARN 301] DEPRECATED ARGUMENTS",
    "[SUCCESS 200] AUTHORIZED REQUEST",
]


def matching(pattern: str, events: list[str] = EVENTS) -> list[str]:
    matches = compile_pattern(pattern)
    return [e for e in events if matches(e)]


def test_single_term() -> None:
    assert matching("ERROR") == EVENTS[:5]


def test_all_terms_must_match() -> None:
    assert matching("ERROR ARGUMENTS") == [EVENTS[2], EVENTS[3]]


def test_optional_terms_any_matches() -> None:
    assert matching("?ERROR ?ARGUMENTS") == EVENTS[:6]


def test_a_question_mark_starts_a_group_of_terms() -> None:
    # CDK's FilterPattern.anyTermGroup(["ERROR", "MISSING"], ["WARN", "ARGUMENTS"]).
    assert matching('?"ERROR" "MISSING" ?"WARN" "ARGUMENTS"') == [EVENTS[2], EVENTS[5]]
    # Terms before the first "?" hold for every group; "-" joins its group.
    assert matching("ERROR ?REQUEST -UNAUTHORIZED ?SERVER") == [EVENTS[0], EVENTS[4]]


def test_exact_phrase() -> None:
    assert matching('"INTERNAL SERVER ERROR"') == [EVENTS[4]]
    assert matching('"ERROR 401"') == [EVENTS[1]]


def test_include_and_exclude() -> None:
    assert matching("ERROR -ARGUMENTS") == [EVENTS[0], EVENTS[1], EVENTS[4]]


def test_match_everything() -> None:
    assert matching('" "') == EVENTS
    assert matching("") == EVENTS
    assert matching("   ") == EVENTS


def test_terms_are_case_sensitive_whole_words() -> None:
    assert matching("error") == []
    assert matching("AUTHORIZED") == [EVENTS[6]]  # not UNAUTHORIZED: a word of its own


def test_regex_finds_inside_words() -> None:
    assert matching("%AUTHORIZED%") == [EVENTS[1], EVENTS[6]]
    assert matching("%^\\[WARN%") == [EVENTS[5]]
    with pytest.raises(FilterPatternError, match="do not support"):
        compile_pattern("%(a|b)%")


# The JSON event of the documentation's examples.
DOC = {
    "eventType": "UpdateTrail",
    "sourceIPAddress": "111.111.111.111",
    "arrayKey": ["value", "another value"],
    "objectList": [{"name": "a", "id": 1}, {"name": "b", "id": 2}],
    "SomeObject": None,
    "cluster.name": "c1",
    "ThisFlag": True,
}
USERS = {
    "user": {"id": 1, "email": "John.Stiles@example.com"},
    "users": [{"id": 2, "email": "John.Doe@example.com"},
              {"id": 3, "email": "Jane.Doe@example.com"}],
    "actions": ["GET", "PUT", "DELETE"],
    "coordinates": [[0, 1], [2, 3]],
}


def json_matches(pattern: str, document: dict) -> bool:
    return compile_pattern(pattern)(json.dumps(document))


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ('{ $.eventType = "UpdateTrail" }', True),
        ('{ $.eventType = "CreateTrail" }', False),
        ("{ $.sourceIPAddress != 123.123.* }", True),
        ("{ $.sourceIPAddress != 111.111.* }", False),
        ("{ $.sourceIPAddress = 111.111.* }", True),
        ('{ $.arrayKey[0] = "value" }', True),
        ('{ $.arrayKey[1] = "value" }', False),
        ("{ $.objectList[1].id = 2 }", True),
        ("{ $.objectList[1].id = 1 }", False),
        ("{ $.SomeObject IS NULL }", True),
        ("{ $.eventType IS NULL }", False),
        ("{ $.SomeOtherObject NOT EXISTS }", True),
        ("{ $.SomeObject NOT EXISTS }", False),
        ("{ $.ThisFlag IS TRUE }", True),
        ("{ $.ThisFlag IS FALSE }", False),
        ("{ $.eventType = %Update% }", True),
    ],
)
def test_json_patterns_of_the_documentation(pattern: str, expected: bool) -> None:
    assert json_matches(pattern, DOC) is expected


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ('{ ($.user.id = 1) && ($.users[0].email = "John.Doe@example.com") }', True),
        ('{ ($.user.id = 2 && $.users[0].email = "nonmatch") || $.actions[2] = "GET" }', False),
        ('{ $.user.email = "John.Stiles@example.com" || $.coordinates[0][1] = "nonmatch" '
         '&& $.actions[2] = "nonmatch" }', True),
        ('{ ($.user.email = "John.Stiles@example.com" || $.coordinates[0][1] = "nonmatch") '
         '&& $.actions[2] = "nonmatch" }', False),
        ("{ $.coordinates[1][0] = 2 }", True),
        ("{ $.user.id >= 1 && $.user.id < 2 }", True),
        ("{ $.user.id > 1 }", False),
        ('{ $.users[1].email = "*Doe@example.com" }', True),
        ('{ $.user.id = "*" }', True),  # the field exists, a number as well
        ('{ $.user = "*" }', True),
        ('{ $.user.nickname = "*" }', False),
    ],
)
def test_compound_json_patterns(pattern: str, expected: bool) -> None:
    assert json_matches(pattern, USERS) is expected


def test_json_levels_and_numbers() -> None:
    lines = [
        '{"level": "ERROR", "message": "boom", "latency": 12}',
        '{"level": "INFO", "message": "fine", "latency": 3}',
        "ERROR but not JSON",
    ]
    assert matching('{ $.level = "ERROR" }', lines) == [lines[0]]
    assert matching("{ $.latency > 5 }", lines) == [lines[0]]
    assert matching('{ $.latency > 5 || $.level = "INFO" }', lines) == lines[:2]


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ('{ $.level = "ERROR" ', "must end with"),
        ("{ }", "needs a condition"),
        ("{ level = 1 }", "expected a selector"),
        ("{ $.a > abc }", "compares numbers"),
        ("{ ($.a = 1 }", "ends too early"),
        ("{ $.a IS MAYBE }", "unknown condition"),
        ("[ip, user]", "Space-delimited"),
        ('"unclosed', "unbalanced quote"),
        # Once a 500: too deep, a repeat count and an index too large.
        ("{" + "(" * 400 + "$.a = 1" + ")" * 400 + "}", "recursion"),
        ("%a{4294967296}%", "Invalid"),
        ("{ $.a[" + "9" * 4400 + "] = 1 }", "Invalid filter pattern"),
    ],
)
def test_bad_patterns_are_refused_with_the_reason(pattern: str, why: str) -> None:
    with pytest.raises(FilterPatternError, match=why):
        compile_pattern(pattern)


def test_a_number_too_large_for_a_float_still_compares() -> None:
    huge = '{"a": 1' + "0" * 400 + "}"
    assert compile_pattern("{ $.a > 5 }")(huge)
    assert not compile_pattern("{ $.a < 5 }")(huge)
    assert not compile_pattern("{ $.a = 5 }")(huge)
    # A 64-bit id equals itself (not rounded to a float on one side only).
    assert compile_pattern("{ $.id = 9007199254740993 }")('{"id": 9007199254740993}')
    assert not compile_pattern("{ $.id = 9007199254740992 }")('{"id": 9007199254740993}')
    assert compile_pattern("{ $.a = 5 }")('{"a": 5.0}')


def record(text: str, stream: str = "2024/01/31/[$LATEST]" + "a" * 32) -> InvocationLog:
    return InvocationLog("req-1", "fn", "$LATEST", stream, 1_706_700_000_123, text,
                         1.0, 1, 128, 20, None, None)


def test_events_are_the_lines_of_an_invocation() -> None:
    text = ("START RequestId: req-1 Version: $LATEST\nhello\n"
            "[ERROR]\t2024-01-31T00:00:00Z\treq-1\tbad\nEND RequestId: req-1\n")
    events = events_of(record(text))
    assert [e.message for e in events] == [
        "START RequestId: req-1 Version: $LATEST", "hello",
        "[ERROR]\t2024-01-31T00:00:00Z\treq-1\tbad", "END RequestId: req-1",
    ]
    assert [e.level for e in events] == ["INFO", "INFO", "ERROR", "INFO"]
    assert {e.timestamp for e in events} == {1_706_700_000_123}
    assert len({e.event_id for e in events}) == 4


def test_levels_of_lines() -> None:
    assert level_of('{"level": "warning", "message": "x"}') == "WARN"
    assert level_of('{"type": "platform.report", "record": {"status": "error"}}') == "WARN"
    assert level_of('{"type": "platform.start", "record": {"requestId": "r"}}') == "INFO"
    assert level_of("WARNING:root:careful") == "WARN"
    assert level_of("CRITICAL something") == "FATAL"
    assert level_of("an ERROR in the middle") == "INFO"
    assert level_of("") == "INFO"


def test_a_record_without_an_environment_gets_a_lambda_shaped_stream() -> None:
    name = stream_of(record("x\n", stream=""))
    assert name.startswith("2024/01/31/[$LATEST]") and len(name.split("]")[1]) == 32
    assert name == stream_of(record("y\n", stream=""))  # stable across reads


def test_a_traced_report_is_one_event_over_two_lines() -> None:
    report = "REPORT RequestId: req-1\tDuration: 1.00 ms\t"
    xray = "XRAY TraceId: 1-5e1b4151-5ac6c58f5b5dbd6a0f1e5a7d\tSegmentId: 6b3c0a1f2e4d5c6b\t"
    text = f"START RequestId: req-1 Version: $LATEST\nEND RequestId: req-1\n{report}\n{xray}\n"
    messages = [e.message for e in events_of(record(text))]
    assert messages[-1] == f"{report}\n{xray}"
    assert len(messages) == 3
