"""Filter policies as SNS checks and applies them: each kind of condition, both scopes,
and the refusals (SNS's words) of what SNS refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nimbus.protocol.errors import AwsError
from nimbus.sns.filter_policy import FilterPolicy


def policy(doc: Any, scope: str = "MessageAttributes") -> FilterPolicy:
    parsed = FilterPolicy.parse(json.dumps(doc), scope, subscribing=False)
    assert parsed is not None
    return parsed


def attrs(**values: Any) -> dict[str, dict[str, str]]:
    out = {}
    for name, value in values.items():
        if isinstance(value, list):
            out[name] = {"DataType": "String.Array", "StringValue": json.dumps(value)}
        elif isinstance(value, int | float):
            out[name] = {"DataType": "Number", "StringValue": str(value)}
        elif isinstance(value, bytes):
            out[name] = {"DataType": "Binary", "BinaryValue": "AQI="}
        else:
            out[name] = {"DataType": "String", "StringValue": value}
    return out


def on_attributes(doc: Any, **values: Any) -> bool:
    return policy(doc).matches("body", attrs(**values))


def on_body(doc: Any, body: Any) -> bool:
    text = body if isinstance(body, str) else json.dumps(body)
    return policy(doc, "MessageBody").matches(text, {})


@pytest.mark.parametrize(
    ("doc", "values", "expected"),
    [
        ({"color": ["red", "blue"]}, {"color": "blue"}, True),
        ({"color": ["red"]}, {"color": "Red"}, False),
        ({"color": ["red"]}, {}, False),
        ({"price": [100]}, {"price": 100.0}, True),
        ({"price": [100]}, {"price": "100"}, False),  # a String is not a number
        ({"color": [{"prefix": "bl"}]}, {"color": "blue"}, True),
        ({"color": [{"suffix": "ue"}]}, {"color": "blue"}, True),
        ({"color": [{"prefix": {"equals-ignore-case": "BL"}}]}, {"color": "blue"}, True),
        ({"color": [{"equals-ignore-case": "BLUE"}]}, {"color": "blue"}, True),
        ({"color": [{"anything-but": ["red", "green"]}]}, {"color": "blue"}, True),
        ({"color": [{"anything-but": ["red", "green"]}]}, {"color": "red"}, False),
        ({"color": [{"anything-but": "red"}]}, {}, False),  # must be present
        ({"color": [{"anything-but": {"prefix": "re"}}]}, {"color": "red"}, False),
        ({"price": [{"numeric": [">", 0, "<=", 100]}]}, {"price": 99.5}, True),
        ({"price": [{"numeric": [">", 0, "<=", 100]}]}, {"price": 100}, True),
        ({"price": [{"numeric": [">", 0, "<", 100]}]}, {"price": 100}, False),
        ({"price": [{"numeric": ["=", 5]}]}, {"price": 5}, True),
        ({"price": [{"numeric": [">=", 5]}]}, {"price": "7"}, False),  # String, not Number
        ({"color": [{"exists": True}]}, {"color": "x"}, True),
        ({"color": [{"exists": False}]}, {"color": "x"}, False),
        ({"color": [{"exists": False}]}, {}, True),
        ({"blob": [{"exists": True}]}, {"blob": b"\x01\x02"}, True),
        ({"blob": ["AQI="]}, {"blob": b"\x01\x02"}, False),  # Binary: only exists
        ({"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": "10.0.0.7"}, True),
        ({"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": "10.0.1.7"}, False),
        ({"tags": ["b"]}, {"tags": ["a", "b"]}, True),  # String.Array: any element
        ({"tags": [5]}, {"tags": ["a", 5]}, True),
        ({"tags": ["c"]}, {"tags": ["a", "b"]}, False),
        ({"a": ["x"], "b": ["y"]}, {"a": "x"}, False),  # every key must match
        ({"a": ["x"], "b": ["y"]}, {"a": "x", "b": "y"}, True),
    ],
)
def test_attribute_conditions(doc: Any, values: dict, expected: bool) -> None:
    assert on_attributes(doc, **values) is expected


def test_or_of_whole_sub_policies() -> None:
    doc = {"source": ["a"], "$or": [{"kind": ["x"]}, {"size": [{"numeric": [">", 10]}]}]}
    assert on_attributes(doc, source="a", kind="x")
    assert on_attributes(doc, source="a", size=11)
    assert not on_attributes(doc, source="a", size=9)
    assert not on_attributes(doc, source="b", kind="x")


def test_body_policies_nest_and_reach_into_arrays() -> None:
    doc = {"order": {"status": ["paid"], "items": {"sku": [{"prefix": "A-"}]}}}
    body = {"order": {"status": "paid", "items": [{"sku": "B-1"}, {"sku": "A-7"}]}}
    assert on_body(doc, body)
    assert not on_body(doc, {"order": {"status": "paid", "items": [{"sku": "B-1"}]}})
    assert not on_body(doc, {"order": {"status": "open", "items": [{"sku": "A-1"}]}})
    # A dotted key reaches a nested property too.
    assert on_body({"order.status": ["paid"]}, body)
    # JSON types are kept: true, null and numbers match as such.
    assert on_body({"ok": [True], "none": [None], "n": [{"numeric": ["<", 3]}]},
                   {"ok": True, "none": None, "n": 2})  # fmt: skip
    assert not on_body({"ok": [True]}, {"ok": "true"})


def test_body_that_is_not_a_json_object_matches_no_body_policy() -> None:
    assert not on_body({"a": [{"exists": False}]}, "plain text")
    assert not on_body({"a": [{"exists": False}]}, "[1, 2]")
    assert on_body({"a": [{"exists": False}]}, {"b": 1})


def test_empty_policy_filters_nothing() -> None:
    assert FilterPolicy.parse("{}", "MessageAttributes", subscribing=False) is None


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"key": [["value"]]}, "Match value must be String, number, true, false, or null"),
        ({"key": [{"wrong-operator": True}]}, "Unrecognized match type wrong-operator"),
        ({"key": [{"suffix": "a", "prefix": "b"}]}, "Only one key allowed in match expression"),
        ({"key": []}, "Empty arrays are not allowed"),
        ({"key": [{"suffix": 100}]}, "suffix match pattern must be a string"),
        ({"key": "value"}, '"key" must be an object or an array'),
        ({"key": [{"numeric": []}]}, "Invalid member in numeric match: ]"),
        ({"key": [{"numeric": ["operator"]}]}, "Unrecognized numeric range operator: operator"),
        ({"key": [{"numeric": [1, "<="]}]}, "Invalid member in numeric match: 1"),
        ({"key": [{"numeric": ["=", "000"]}]}, "Value of equals must be numeric"),
        ({"key": [{"numeric": [">="]}]}, "Value of >= must be numeric"),
        ({"key": [{"numeric": ["<", 100, ">", 10]}]}, "Too many elements in numeric expression"),
        ({"key": [{"numeric": [">=", 1, ">", 2]}]}, "Bad numeric range operator: >"),
        ({"key": [{"numeric": [">", 3, "<", 1]}]}, "Bottom must be less than top"),
        ({"key": [{"numeric": [">", 20, 30]}]}, "Bad value in numeric range: 30"),
        ({"key": [{"numeric": [">", 20, "<", 30, "<", 50]}]},
         "Too many terms in numeric range expression"),
        ({"key": [{"exists": "no"}]}, "exists match pattern must be either true or false."),
        ({"key": [{"anything-but": {"suffix": "x"}}]}, "Unsupported anything-but pattern: suffix"),
        ({"key": [{"cidr": "bad-filter"}]}, "Nonstandard IP address: bad-filter"),
        ({"key": [{"cidr": "10.0.0.0/x"}]}, "Malformed CIDR, mask bits must be an integer"),
        ({"key": [f"v{i}" for i in range(151)]}, "Filter policy is too complex"),
        ({f"k{i}": ["v"] for i in range(6)}, "Filter policy can not have more than 5 keys"),
    ],
)  # fmt: skip
def test_refused_as_sns_refuses(doc: Any, message: str) -> None:
    with pytest.raises(AwsError) as exc:
        FilterPolicy.parse(json.dumps(doc), "MessageBody", subscribing=True)
    assert exc.value.type_name == "InvalidParameter"
    assert exc.value.message == f"Invalid parameter: Attributes Reason: FilterPolicy: {message}"


def test_complexity_counts_or_and_nesting_as_sns() -> None:
    # SNS's own examples: 152 and 160 combinations are too many, 150 is not.
    flat = {
        "source": ["a", "b", "c", "d"],
        "$or": [
            {"metricName": ["1", "2", "3", "4", "5", "6"]},
            {"metricType": ["1", "2", "3", "4"],
             "$or": [{"metricId": [1, 2, 3, 4]}, {"spaceId": [1, 2, 3, 4]}]},
        ],
    }  # fmt: skip
    nested = {
        "$or": [{"metricName": ["a", "b", "c"]}, {"namespace": ["a", "b"]}],
        "detail": {"scope": ["a", "b"], "$or": [{"source": ["a"]}, {"type": ["a", "b", "c"]}]},
    }
    for doc, scope in ((flat, "MessageAttributes"), (nested, "MessageBody")):
        with pytest.raises(AwsError, match="too complex"):
            FilterPolicy.parse(json.dumps(doc), scope, subscribing=False)
    fits = dict(flat, source=["a", "b", "c"])
    fits["$or"][1]["$or"][1]["spaceId"] = [1, 2, 3, 4, 5, 6, 7]
    assert FilterPolicy.parse(json.dumps(fits), "MessageAttributes", subscribing=False)


def test_nested_policy_needs_the_body_scope() -> None:
    with pytest.raises(AwsError) as exc:
        FilterPolicy.parse('{"a": {"b": ["c"]}}', "MessageAttributes", subscribing=False)
    assert exc.value.message == (
        "Invalid parameter: Filter policy scope MessageAttributes does not support nested "
        "filter policy"
    )


def test_not_json_is_refused() -> None:
    with pytest.raises(AwsError, match="FilterPolicy: failed to parse JSON"):
        FilterPolicy.parse("{invalid", "MessageAttributes", subscribing=False)
