"""Lambda's filter rule syntax, checked against the examples of AWS's "Lambda event
filtering" and "Using event filtering with an Amazon SQS event source" pages."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nimbus.errors import InvalidParameterValue
from nimbus.events.sources.filters import FilterSet


def sqs(body: Any) -> dict[str, Any]:
    """An SQS record whose body is ``body`` (JSON-encoded unless it is a string)."""
    text = body if isinstance(body, str) else json.dumps(body)
    return {"messageId": "1", "body": text, "eventSource": "aws:sqs", "attributes": {}}


def passes(pattern: dict[str, Any], body: Any) -> bool:
    return FilterSet.parse([json.dumps({"body": pattern})]).matches(sqs(body))


# (rule, matching body, non-matching body), as in the documentation's syntax table.
DOCUMENTED = [
    ({"UserID": [None]}, {"UserID": None}, {"UserID": "x"}),  # Null
    ({"LastName": [""]}, {"LastName": ""}, {"LastName": "Doe"}),  # Empty
    ({"Name": ["Alice"]}, {"Name": "Alice"}, {"Name": "alice"}),  # Equals
    ({"Name": [{"equals-ignore-case": "alice"}]}, {"Name": "ALICE"}, {"Name": "Bob"}),
    (  # And
        {"Location": ["New York"], "Day": ["Monday"]},
        {"Location": "New York", "Day": "Monday"},
        {"Location": "New York", "Day": "Tuesday"},
    ),
    ({"PaymentType": ["Credit", "Debit"]}, {"PaymentType": "Debit"}, {"PaymentType": "Cash"}),
    (  # Or (multiple fields)
        {"$or": [{"Location": ["New York"]}, {"Day": ["Monday"]}]},
        {"Location": "Paris", "Day": "Monday"},
        {"Location": "Paris", "Day": "Friday"},
    ),
    ({"Weather": [{"anything-but": ["Raining"]}]}, {"Weather": "Sunny"}, {"Weather": "Raining"}),
    ({"Price": [{"numeric": ["=", 100]}]}, {"Price": 100}, {"Price": 101}),
    ({"Price": [{"numeric": [">", 10, "<=", 20]}]}, {"Price": 20}, {"Price": 10}),
    ({"ProductName": [{"exists": True}]}, {"ProductName": "x"}, {"Other": 1}),
    ({"ProductName": [{"exists": False}]}, {"Other": 1}, {"ProductName": "x"}),
    ({"Region": [{"prefix": "us-"}]}, {"Region": "us-east-1"}, {"Region": "eu-west-1"}),
    ({"FileName": [{"suffix": ".png"}]}, {"FileName": "a.png"}, {"FileName": "a.jpg"}),
    # The SQS page's examples.
    ({"RequestCode": ["BBBB"]}, {"RequestCode": "BBBB"}, {"RequestCode": "AAAA"}),
    ({"RecordNumber": [{"numeric": [">", 9999]}]}, {"RecordNumber": 10000}, {"RecordNumber": 1234}),
    # EventBridge-style operators Lambda accepts too.
    ({"FilePath": [{"wildcard": "*/lib/*"}]}, {"FilePath": "/usr/lib/x"}, {"FilePath": "/usr/x"}),
    (
        {"Region": [{"anything-but": {"prefix": "us-"}}]},
        {"Region": "eu-west-1"},
        {"Region": "us-east-1"},
    ),
    ({"Svc": [{"prefix": {"equals-ignore-case": "eventb"}}]}, {"Svc": "EventBridge"}, {"Svc": "x"}),
    ({"Tags": ["red"]}, {"Tags": ["blue", "red"]}, {"Tags": ["blue"]}),  # arrays: any element
    ({"A": {"B": {"C": ["deep"]}}}, {"A": {"B": {"C": "deep"}}}, {"A": {"B": {"C": "shallow"}}}),
]


@pytest.mark.parametrize(("rule", "yes", "no"), DOCUMENTED)
def test_documented_rules(rule: dict[str, Any], yes: Any, no: Any) -> None:
    assert passes(rule, yes)
    assert not passes(rule, no)


def test_json_pattern_drops_a_plain_string_body() -> None:
    # The SQS page: a valid-JSON filter pattern against a plain-string message: dropped.
    assert not passes({"my-key": ["my-value"]}, "plain-string")


def test_plain_string_rules_match_a_plain_body() -> None:
    filters = FilterSet.parse(['{"body": ["plain-string"]}'])
    assert filters.matches(sqs("plain-string"))
    assert not filters.matches(sqs("plain-string-not-matching"))


def test_filters_are_ored_and_metadata_is_matched() -> None:
    filters = FilterSet.parse(
        ['{"body": {"n": [1]}}', '{"eventSource": ["aws:sqs"], "body": {"n": [2]}}']
    )
    assert filters.matches(sqs({"n": 1}))
    assert filters.matches(sqs({"n": 2}))
    assert not filters.matches(sqs({"n": 3}))


def test_stream_data_is_parsed_as_json() -> None:
    # The Kinesis example: {"data": {"tire_pressure": [{"numeric": ["<", 32]}]}}
    filters = FilterSet.parse(['{"data": {"tire_pressure": [{"numeric": ["<", 32]}]}}'])
    assert filters.matches({"data": json.dumps({"tire_pressure": 31})})
    assert not filters.matches({"data": json.dumps({"tire_pressure": 33})})


def test_no_filters_pass_everything() -> None:
    assert FilterSet.parse([]).matches(sqs("anything"))


# LocalStack's recorded refusals (None, "simple string", a non-list leaf, an empty list),
# and other malformed rules.
@pytest.mark.parametrize(
    "pattern",
    [
        "null",
        "simple string",
        '{"eventSource": "aws:sqs"}',
        '{"eventSource": []}',
        '{"body": {"n": [{"numeric": ["<>", 1]}]}}',
        '{"body": {"n": [{"numeric": ["<", 1, ">", 2]}]}}',
        '{"body": {"n": [{"unknown-op": 1}]}}',
        '{"body": {"n": [{"exists": "yes"}]}}',
        '{"$or": [{"a": ["x"]}]}',
        "{}",
        None,
    ],
)
def test_invalid_patterns_are_refused_in_lambdas_words(pattern: Any) -> None:
    with pytest.raises(InvalidParameterValue) as exc:
        FilterSet.parse([pattern])
    assert exc.value.message == "Invalid filter pattern definition."
