"""Event source mappings against junk in every member: Create/UpdateEventSourceMapping
with malformed FilterCriteria, BatchSize of every wrong type, EventSourceArn garbage,
broker URIs with odd schemes, ports, unicode and percent-escapes, StartingPositionTimestamp
as strings. The property: a 4xx in Lambda's error shape (``X-Amzn-ErrorType``, a message),
never a 5xx, and nothing half-stored: after each refused create ListEventSourceMappings
shows nothing new, after each refused update the mapping is as it was."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.conftest import HELLO, ROLE
from tests.nimbus_process import NimbusProcess

FEW = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
PATH = "/2015-03-31/event-source-mappings"
# What Lambda answers for bad input to these operations (botocore's model).
CODES = {
    "ValidationException",
    "InvalidParameterValueException",
    "InvalidRequestContentException",
    "ResourceConflictException",
    "ResourceNotFoundException",
    "RequestTooLargeException",
    "UnknownOperationException",  # a path no Lambda route has (404)
}
# The members an update may change and a refused one must leave alone.
SETTINGS = (
    "BatchSize", "MaximumBatchingWindowInSeconds", "FunctionArn", "FilterCriteria",
    "FunctionResponseTypes", "ScalingConfig", "LastModified", "EventSourceArn",
)  # fmt: skip


@pytest.fixture(scope="module")
def http(server: NimbusProcess) -> Iterator[httpx.Client]:
    limits = httpx.Limits(max_keepalive_connections=0)  # a dropped connection fails nothing
    with httpx.Client(base_url=server.endpoint, timeout=30, limits=limits) as client:
        yield client


@pytest.fixture(scope="module")
def function(server: NimbusProcess) -> str:
    name = f"esm-fuzz-{uuid.uuid4().hex[:6]}"
    server.client().create_function(
        FunctionName=name, Runtime="python3.12", Role=ROLE, Handler="app.handler",
        Code={"ZipFile": HELLO},
    )  # fmt: skip
    return name


def new_queue(server: NimbusProcess) -> str:
    sqs = server.client("sqs")
    url = sqs.create_queue(QueueName=f"esm-fuzz-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    arn: str = attributes["Attributes"]["QueueArn"]
    return arn


@pytest.fixture(scope="module")
def queue_arn(server: NimbusProcess) -> str:
    return new_queue(server)


@pytest.fixture(scope="module")
def mapping(http: httpx.Client, server: NimbusProcess, function: str) -> str:
    """A mapping of a queue of its own (the create tests' queue may hold one being
    deleted, which a new mapping of the same queue and function conflicts with)."""
    body = {"FunctionName": function, "EventSourceArn": new_queue(server), "BatchSize": 5}
    created = http.post(PATH, json=body)
    assert created.status_code == 202, created.text
    uuid_: str = created.json()["UUID"]
    return uuid_


def mappings(http: httpx.Client) -> list[str]:
    listed = http.get(PATH, params={"MaxItems": 10000})
    assert listed.status_code == 200, listed.text
    return sorted(m["UUID"] for m in listed.json()["EventSourceMappings"])


def lambda_error(answer: httpx.Response) -> str:
    """The code of a refusal in Lambda's shape (checked)."""
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text)
    code = answer.headers.get("x-amzn-errortype", "")
    assert code in CODES, (code, answer.text)
    body = answer.json()
    message = body.get("message", body.get("Message"))
    assert isinstance(message, str) and message, answer.text
    return code


# -- strategies -------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(["", "10", "1e3", "\u0000", "x" * 20000]),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def deep(depth: int, kind: str = "array") -> str:
    return "[" * depth + "]" * depth if kind == "array" else '{"a":' * depth + '["x"]' + "}" * depth


patterns = st.one_of(
    st.sampled_from(
        [
            deep(2000),  # under 4096 characters but past json's nesting depth
            deep(3000),
            deep(400, "object"),
            deep(900, "object"),
            "{",
            "[]",
            "{}",
            "null",
            '{"a": 5}',
            '{"a": []}',
            '{"a": [{"numeric": [">", 1e400]}]}',
            '{"a": [{"numeric": ["<", 5, ">", 1]}]}',
            '{"a": [{"anything-but": {"prefix": 5}}]}',
            '{"$or": [{"a": ["x"]}]}',
            '{"a": [{"exists": "yes"}]}',
            "x" * 5000,
        ]
    ),
    st.text(max_size=50),
    json_values.map(json.dumps),
)
filter_criteria = st.one_of(
    json_values,
    st.lists(st.fixed_dictionaries({"Pattern": patterns}), min_size=1, max_size=3).map(
        lambda f: {"Filters": f}
    ),
    st.lists(json_values, max_size=7).map(lambda f: {"Filters": f}),
)
broker_uris = st.one_of(
    st.sampled_from(
        [
            "redis://",
            "redis://:99999/s",
            "redis://h:-1/s",
            "redis://h:abc/s",
            "redis://[::1/s",
            "redis://h/s?x=%FF",
            "amqp://h/",
            "amqp://[zz]/q",
            "amqp://u:%ZZ@h/q",
            "nats:///",
            "nats://h:99999/s",
            "mqtt://h/#/x",
            "mqtt://h:0x10/t",
            "mqtts://h:abc/t",
            "ftp://h/x",
            "redis:/h",
            "arn:",
            "arn:aws:kinesis:us-east-1:000000000000:stream/x",
            "arn:aws:sqs:us-east-1:000000000000:" + "a" * 200,
            "arn:aws:sqs:eu-west-1:111111111111:q",
            "arn:aws:sqs:us-east-1:000000000000:does-not-exist",
            "\u00e9://h/x",
            "x" * 20000,
        ]
    ),
    st.builds(
        "{}://{}{}/{}".format,
        st.sampled_from(
            ["redis", "amqp", "nats", "mqtt", "rediss", "amqps", "tls", "mqtts", "http"]
        ),
        st.text(alphabet=st.characters(codec="utf-8", exclude_characters="/"), max_size=10),
        st.sampled_from(["", ":0", ":65536", ":-5", ":x", ":99999999999999999999"]),
        st.text(max_size=10),
    ).filter(lambda uri: "redis://" not in uri or ":" in uri[8:]),  # leave valid ones rare
    json_values,
)
MEMBERS = [
    "BatchSize", "MaximumBatchingWindowInSeconds", "Enabled", "ScalingConfig",
    "FunctionResponseTypes", "DestinationConfig", "StartingPosition",
    "StartingPositionTimestamp", "MaximumRetryAttempts", "MaximumRecordAgeInSeconds",
    "BisectBatchOnFunctionError", "ParallelizationFactor", "TumblingWindowInSeconds",
    "FunctionName", "Topics", "Queues", "SourceAccessConfigurations", "Tags", "KMSKeyArn",
]  # fmt: skip
# Values a member takes on an SQS mapping: the few a generated value may hit by chance.
VALID = {
    "BatchSize": lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 10,
    "MaximumBatchingWindowInSeconds": lambda v: (
        isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 300
    ),
    "Enabled": lambda v: isinstance(v, bool),
    # Lambda ignores members a structure does not have, as it ignores unknown top-level ones.
    "ScalingConfig": lambda v: (
        isinstance(v, dict)
        and (
            v.get("MaximumConcurrency") is None
            or (type(v["MaximumConcurrency"]) is int and 2 <= v["MaximumConcurrency"] <= 1000)
        )
    ),
    "ParallelizationFactor": lambda v: v is None,
    "TumblingWindowInSeconds": lambda v: v is None,
}


def allowed(member: str, value: Any) -> bool:
    """Whether ``value`` is one an SQS mapping may take for ``member`` (absent included)."""
    if value is None or value in ({}, [], ""):
        return member not in ("FunctionName",)
    check = VALID.get(member)
    return bool(check and check(value))


# -- CreateEventSourceMapping ---------------------------------------------------------------


@FEW
@given(criteria=filter_criteria)
@example(criteria={"Filters": [{"Pattern": deep(2000)}]})
@example(criteria={"Filters": [{"Pattern": '{"a": [{"numeric": [">", 1e400]}]}'}]})
@example(criteria={"Filters": [{"Pattern": "x"}] * 6})
def test_junk_filter_criteria_are_refused_and_nothing_is_stored(
    http: httpx.Client, function: str, queue_arn: str, criteria: Any
) -> None:
    before = mappings(http)
    answer = http.post(
        PATH,
        json={"FunctionName": function, "EventSourceArn": queue_arn, "FilterCriteria": criteria},
    )
    if answer.status_code == 202:  # a valid pattern (or null/empty criteria) by chance
        http.delete(f"{PATH}/{answer.json()['UUID']}")
        return
    if answer.status_code == 409:
        return  # the mapping of this queue and function exists: nothing new either
    lambda_error(answer)
    assert set(mappings(http)) <= set(before)  # nothing new (deleted ones may go)


@FEW
@given(
    arn=broker_uris,
    position=st.sampled_from([None, "LATEST", "TRIM_HORIZON", "AT_TIMESTAMP"]),
    stamp=st.none() | st.text(max_size=10) | st.sampled_from(["2020-01-01", "1e400"]) | json_values,
)
@example(arn="redis://h:99999/s", position="LATEST", stamp=None)
@example(arn="redis://h/s", position="AT_TIMESTAMP", stamp="2020-01-01")
@example(arn="x" * 20000, position=None, stamp=None)
def test_junk_event_sources_are_refused_and_nothing_is_stored(
    http: httpx.Client, function: str, arn: Any, position: str | None, stamp: Any
) -> None:
    before = mappings(http)
    body: dict[str, Any] = {"FunctionName": function, "EventSourceArn": arn}
    if position is not None:
        body["StartingPosition"] = position
    if stamp is not None:
        body["StartingPositionTimestamp"] = stamp
    answer = http.post(PATH, json=body)
    if answer.status_code == 202:
        # Only a well-formed broker URI is taken (the broker need not be up yet).
        created = answer.json()
        http.delete(f"{PATH}/{created['UUID']}")
        assert isinstance(arn, str) and "://" in arn, created
        return
    if answer.status_code == 409:
        return
    lambda_error(answer)
    assert set(mappings(http)) <= set(before)  # nothing new (deleted ones may go)


@FEW
@given(member=st.sampled_from(MEMBERS), value=json_values)
@example(member="BatchSize", value="10")
@example(member="BatchSize", value=10**30)
@example(member="StartingPositionTimestamp", value="2020-01-01T00:00:00Z")
@example(member="FunctionName", value=["x"])
def test_junk_in_every_member_is_refused_and_nothing_is_stored(
    http: httpx.Client, function: str, queue_arn: str, member: str, value: Any
) -> None:
    before = mappings(http)
    body = {"FunctionName": function, "EventSourceArn": queue_arn, member: value}
    answer = http.post(PATH, json=body)
    if answer.status_code in (202, 409):
        if answer.status_code == 202:
            http.delete(f"{PATH}/{answer.json()['UUID']}")
        assert allowed(member, value), (member, value, answer.text)
        return
    lambda_error(answer)
    assert set(mappings(http)) <= set(before)  # nothing new (deleted ones may go)


@FEW
@given(
    body=st.binary(max_size=100)
    | st.sampled_from([deep(5000).encode(), deep(5000, "object").encode(), b"[]", b"null"])
    | st.sampled_from([b'"x"', b"\xff\xfe"])
)
@example(body=deep(5000).encode())
@example(body=b'{"FunctionName": "f\\ud800", "EventSourceArn": "redis://h/\\ud800"}')
@example(body=deep(5000, "object").encode())
def test_bodies_that_are_not_json_objects_are_refused(http: httpx.Client, body: bytes) -> None:
    before = mappings(http)
    answer = http.post(PATH, content=body, headers={"Content-Type": "application/json"})
    lambda_error(answer)
    assert set(mappings(http)) <= set(before)  # nothing new (deleted ones may go)


# -- UpdateEventSourceMapping -----------------------------------------------------------------


def settings_of(http: httpx.Client, uuid_: str) -> dict[str, Any]:
    got = http.get(f"{PATH}/{uuid_}")
    assert got.status_code == 200, got.text
    return {k: v for k, v in got.json().items() if k in SETTINGS}


@FEW
@given(member=st.sampled_from([*MEMBERS, "FilterCriteria"]), value=json_values | filter_criteria)
@example(member="FilterCriteria", value={"Filters": [{"Pattern": deep(2000)}]})
@example(member="BatchSize", value=10**30)
@example(member="FunctionName", value="does-not-exist")
@example(member="StartingPositionTimestamp", value="2020-01-01")
def test_refused_updates_leave_the_mapping_as_it_was(
    http: httpx.Client, mapping: str, member: str, value: Any
) -> None:
    before = settings_of(http, mapping)
    answer = http.put(f"{PATH}/{mapping}", json={member: value})
    if answer.status_code == 202:
        return  # a value the mapping takes (see allowed()): the update is the point
    lambda_error(answer)
    assert settings_of(http, mapping) == before


@FEW
@given(target=st.sampled_from(["x", "../..", "..%2F..", "é" * 36, "0" * 36, "%00" * 12, "a" * 99]))
def test_odd_mapping_ids_are_refused(http: httpx.Client, target: str) -> None:
    for method in ("GET", "PUT", "DELETE"):
        answer = http.request(method, f"{PATH}/{target}", json={} if method == "PUT" else None)
        if answer.status_code == 404 and answer.headers.get("x-amzn-errortype") is None:
            continue  # a path no route has
        lambda_error(answer)
