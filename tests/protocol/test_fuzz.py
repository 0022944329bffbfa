"""Hostile and clumsy clients against the AWS protocol layer on a live server: garbage
bodies and content types, wrong member types, query-protocol numbering abuse, odd
Scheduler paths, timestamps in every wrong format. The property is the house rule:
every such request gets a 4xx in the protocol's own error shape (never a 5xx), and where
boto3 can send it, boto3 raises a ClientError with a code botocore knows.

One server for the module; each property keeps its examples few so the suite stays
fast (``deadline=None``: a live server's latency is not the property).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, unquote, urlencode
from xml.etree.ElementTree import fromstring

import botocore.session
import httpx
import pytest
from botocore.exceptions import ClientError, ParamValidationError
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.conftest import live_server
from tests.nimbus_process import NimbusProcess

FEW = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
SQS_JSON = "application/x-amz-json-1.0"
FORM = "application/x-www-form-urlencoded"
QUERY_NS = "{http://queue.amazonaws.com/doc/2012-11-05/}"
# Codes SQS answers (the model's, its query-era names, and the protocol's own).
SQS_CODES = {
    "InvalidParameterValue",
    "InvalidParameterValueException",
    "MissingParameter",
    "MissingRequiredParameterException",
    "SerializationException",
    "MalformedQueryString",
    "InvalidAttributeName",
    "InvalidAttributeValue",
    "InvalidMessageContents",
    "ReceiptHandleIsInvalid",
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "AWS.SimpleQueueService.EmptyBatchRequest",
    "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
    "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
    "AWS.SimpleQueueService.InvalidBatchEntryId",
    "AWS.SimpleQueueService.BatchRequestTooLong",
    "UnknownOperationException",
    "InvalidAction",
    "MissingAction",
    "QueueAlreadyExists",
    "InvalidAddress",
}
# ... and every error shape of the model, by its name (the JSON ``__type``) and its code.
for _shape in botocore.session.get_session().get_service_model("sqs").error_shapes:
    SQS_CODES |= {_shape.name, _shape.error_code}
SCHEDULER_CODES = {
    "ValidationException",
    "SerializationException",
    "ResourceNotFoundException",
    "ConflictException",
    "UnknownOperationException",
}

# -- the server and its clients ------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NimbusProcess]:
    with live_server(tmp_path_factory.mktemp("protocol-fuzz") / "data") as proc:
        yield proc


@pytest.fixture(scope="module")
def http(server: NimbusProcess) -> Iterator[httpx.Client]:
    # No keep-alive: a connection the server dropped must not fail the next example.
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=server.endpoint, timeout=30, limits=limits) as client:
        yield client


@pytest.fixture(scope="module")
def sqs(server: NimbusProcess) -> Any:
    return server.client("sqs", validate=False)


@pytest.fixture(scope="module")
def queue_url(sqs: Any) -> str:
    url: str = sqs.create_queue(QueueName="fuzz")["QueueUrl"]
    return url


@pytest.fixture(scope="module")
def fifo_url(sqs: Any) -> str:
    url: str = sqs.create_queue(QueueName="fuzz.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    return url


def json_error(answer: httpx.Response, codes: set[str]) -> str:
    """The code of a JSON-protocol error answer, checked for its shape."""
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text)
    body = answer.json()
    assert isinstance(body, dict), answer.text
    code = str(body.get("__type") or answer.headers.get("x-amzn-errortype", ""))
    message = body.get("message", body.get("Message"))
    assert isinstance(message, str) and message, answer.text
    query_code = answer.headers.get("x-amzn-query-error")
    if query_code is not None:
        code_part, _, fault = query_code.partition(";")
        assert fault == "Sender" and code_part in codes, query_code
    assert code.split(":")[0] in codes, answer.text
    return code


def query_error(answer: httpx.Response) -> str:
    """The code of a query-protocol (XML) error answer, checked for its shape."""
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text)
    root = fromstring(answer.content)
    assert root.tag == f"{QUERY_NS}ErrorResponse", answer.text
    error = root.find(f"{QUERY_NS}Error")
    assert error is not None
    assert error.findtext(f"{QUERY_NS}Type") == "Sender", answer.text
    code = error.findtext(f"{QUERY_NS}Code") or ""
    assert code in SQS_CODES, answer.text
    assert error.findtext(f"{QUERY_NS}Message"), answer.text
    return code


def refused_by_boto(call: Any, **params: Any) -> str:
    """The code boto3's ClientError carries for a refused call (never a 5xx)."""
    try:
        call(**params)
    except ClientError as exc:
        status = exc.response["ResponseMetadata"]["HTTPStatusCode"]
        assert 400 <= status < 500, exc.response
        code = str(exc.response["Error"]["Code"])
        assert code in SQS_CODES | SCHEDULER_CODES, exc.response
        return code
    except ParamValidationError:
        return "client-side"  # botocore's own serialiser refused it: nothing was sent
    raise AssertionError(f"accepted: {params}")


# -- strategies -------------------------------------------------------------------------------

# Every JSON type, including the ones no member takes, plus values at the edges.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(["", " ", "\u0000", "\ud7ff\ue000", "\u0661\u0662", "1_0", "NaN", "x" * 5000]),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


def deep(depth: int, kind: str) -> str:
    return "[" * depth + "]" * depth if kind == "array" else '{"a":' * depth + "1" + "}" * depth


garbage_bodies = st.one_of(
    st.binary(max_size=200),
    st.sampled_from(
        [
            deep(5000, "array").encode(),
            deep(5000, "object").encode(),
            deep(999, "array").encode(),
            b"null",
            b"[]",
            b'"text"',
            b"1e999999",
            b"NaN",
            b'{"QueueUrl": NaN}',
            b"\xff\xfe{\x00}\x00",
            b"<xml/>",
            b"Action=SendMessage",
        ]
    ),
)
content_types = st.sampled_from(
    [SQS_JSON, "application/json", "text/plain", "", "application/x-amz-json-1.1", "\u00e9/\u00e9"]
)

# -- JSON protocol: garbage bodies ------------------------------------------------------------


@FEW
@given(
    operation=st.sampled_from(["SendMessage", "CreateQueue", "ReceiveMessage", "ListQueues"]),
    body=garbage_bodies,
    content_type=content_types,
)
@example(operation="SendMessage", body=deep(5000, "array").encode(), content_type=SQS_JSON)
@example(operation="CreateQueue", body=deep(5000, "object").encode(), content_type=SQS_JSON)
def test_garbage_json_bodies_are_refused_in_the_json_shape(
    http: httpx.Client, operation: str, body: bytes, content_type: str
) -> None:
    headers = {"X-Amz-Target": f"AmazonSQS.{operation}"}
    if content_type:
        headers["Content-Type"] = content_type.encode("utf-8")  # type: ignore[assignment]
    answer = http.post("/", content=body, headers=headers)
    if answer.status_code == 200:  # "{}"-like bodies are valid input for ListQueues
        assert operation == "ListQueues"
        return
    json_error(answer, SQS_CODES)


# -- JSON protocol: wrong types in every member -------------------------------------------------

SEND_MEMBERS = ["QueueUrl", "MessageBody", "DelaySeconds", "MessageAttributes",
                "MessageSystemAttributes", "MessageDeduplicationId", "MessageGroupId"]  # fmt: skip


@FEW
@given(member=st.sampled_from(SEND_MEMBERS), value=json_values)
@example(member="DelaySeconds", value=10**30)
@example(member="MessageBody", value=["x"])
@example(member="MessageAttributes", value={"a": {"DataType": "Number", "StringValue": "nan"}})
@example(member="MessageSystemAttributes", value={"AWSTraceHeader": {"DataType": "String"}})
def test_send_message_with_a_wrong_member_is_refused(
    http: httpx.Client, queue_url: str, member: str, value: Any
) -> None:
    body = {"QueueUrl": queue_url, "MessageBody": "x", member: value}
    answer = http.post(
        "/",
        content=json.dumps(body),
        headers={"X-Amz-Target": "AmazonSQS.SendMessage", "Content-Type": SQS_JSON},
    )
    if answer.status_code == 200:
        # Accepted only when the value is one SendMessage takes: a valid string id, an
        # in-range delay, null (absent), or a well-formed map.
        assert value is None or member in (
            "MessageBody", "MessageGroupId", "MessageDeduplicationId", "DelaySeconds",
            "MessageAttributes", "MessageSystemAttributes",
        ), (member, value, answer.text)  # fmt: skip
        return
    json_error(answer, SQS_CODES)


@FEW
@given(
    operation=st.sampled_from(
        [
            "ReceiveMessage",
            "ChangeMessageVisibility",
            "ListQueues",
            "CreateQueue",
            "DeleteMessageBatch",
            "SendMessageBatch",
            "GetQueueAttributes",
        ]
    ),
    member=st.sampled_from(
        [
            "MaxNumberOfMessages",
            "WaitTimeSeconds",
            "VisibilityTimeout",
            "MaxResults",
            "NextToken",
            "Attributes",
            "Entries",
            "AttributeNames",
            "ReceiptHandle",
            "QueueName",
        ]
    ),
    value=json_values,
)
@example(operation="ListQueues", member="NextToken", value="\u00e9")
@example(operation="ChangeMessageVisibility", member="VisibilityTimeout", value="abc")
@example(operation="SendMessageBatch", member="Entries", value="x")
@example(
    operation="CreateQueue",
    member="Attributes",
    value={"RedrivePolicy": '{"deadLetterTargetArn":"x","maxReceiveCount":1e400}'},
)
@example(
    operation="CreateQueue",
    member="Attributes",
    value={"RedriveAllowPolicy": '{"redrivePermission":"byQueue","sourceQueueArns":5}'},
)
def test_wrong_types_for_other_operations_are_refused(
    http: httpx.Client, queue_url: str, operation: str, member: str, value: Any
) -> None:
    body: dict[str, Any] = {"QueueUrl": queue_url, "QueueName": f"f-{uuid.uuid4().hex[:8]}"}
    if operation == "ChangeMessageVisibility":
        body.update(ReceiptHandle="garbage", VisibilityTimeout=5)
    body[member] = value
    answer = http.post(
        "/",
        content=json.dumps(body),
        headers={"X-Amz-Target": f"AmazonSQS.{operation}", "Content-Type": SQS_JSON},
    )
    if answer.status_code == 200:
        return  # a value the operation takes, or a member it does not have (ignored)
    json_error(answer, SQS_CODES)


# -- query protocol -------------------------------------------------------------------------

query_keys = st.sampled_from(
    [
        "Attribute.0.Name", "Attribute.999999.Name", "Attribute.x.Value", "Attribute.1.Value.x",
        "Attribute.1.Name", "MessageAttribute.1.Name", "MessageAttribute.1.Value",
        "MessageAttribute.1.Value.DataType", "MessageAttribute.1.Value.StringValue",
        "MessageAttribute.01.Name", "DelaySeconds", "AttributeName", "AttributeName.0",
        "SendMessageBatchRequestEntry.2.Id", "Tag.1.Key", "MessageBody", "QueueName",
    ]
)  # fmt: skip
query_values = st.one_of(
    st.sampled_from(
        ["", "1", "-1", "\u0661", "1_0", "DelaySeconds", "String", "Number", "nan", "9" * 5000]
    ),
    st.text(max_size=20),
)


# The numbered (list and map) parameters of each action.
LISTS = {
    "SendMessage": ("MessageAttribute",),
    "CreateQueue": ("Attribute", "Tag"),
    "GetQueueAttributes": ("AttributeName",),
    "SendMessageBatch": ("SendMessageBatchRequestEntry",),
}


@FEW
@given(
    action=st.sampled_from(
        ["SendMessage", "CreateQueue", "GetQueueAttributes", "SendMessageBatch"]
    ),
    pairs=st.lists(st.tuples(query_keys, query_values), min_size=1, max_size=5),
)
@example(
    action="CreateQueue", pairs=[("Attribute.0.Name", "DelaySeconds"), ("Attribute.0.Value", "1")]
)
@example(action="CreateQueue", pairs=[("Attribute.999999.Name", "DelaySeconds")])
@example(action="SendMessage", pairs=[("MessageAttribute.1.Name", "a")])
@example(
    action="SendMessage",
    pairs=[("MessageAttribute.1.Name", "a"), ("MessageAttribute.1.Value", "v")],
)
@example(action="SendMessage", pairs=[("DelaySeconds", "\u0661")])
@example(action="GetQueueAttributes", pairs=[("AttributeName", "All")])
@example(action="GetQueueAttributes", pairs=[("AttributeName", "\x1f")])  # echoed in XML
def test_query_flattening_abuse_is_refused_in_the_query_shape(
    http: httpx.Client, queue_url: str, action: str, pairs: list[tuple[str, str]]
) -> None:
    params: list[tuple[str, str]] = [("Action", action), ("QueueUrl", queue_url)]
    if action == "SendMessage" and all(k != "MessageBody" for k, _ in pairs):
        params.append(("MessageBody", "x"))
    if action == "CreateQueue" and all(k != "QueueName" for k, _ in pairs):
        params.append(("QueueName", f"q-{uuid.uuid4().hex[:8]}"))
    params += pairs  # duplicate keys included: the last one counts, as parse_qsl reads
    answer = http.post("/", content=urlencode(params), headers={"Content-Type": FORM})
    if answer.status_code == 200:
        root = fromstring(answer.content)
        assert root.tag == f"{QUERY_NS}{action}Response", answer.text
        # Nothing of this operation numbered out of order was accepted (it would have
        # been dropped unseen); other operations' parameters are ignored, as on SQS.
        mine = [k for k, _ in params if k.split(".", 1)[0] in LISTS[action]]
        assert all(k.split(".")[1:2] in ([], ["1"]) and not k.endswith(".Value.x") for k in mine)
        return
    query_error(answer)


@FEW
@given(
    body=st.binary(max_size=100)
    | st.sampled_from([b"Action=SendMessage&MessageBody=\xff", b"%ZZ%", b"="])
)
@example(body=b"Action=SendMessage&MessageBody=\xff\xfe")
def test_unreadable_form_bodies_are_refused_in_the_query_shape(
    http: httpx.Client, body: bytes
) -> None:
    answer = http.post("/", content=body, headers={"Content-Type": FORM})
    if answer.status_code == 404:
        # No Action any service has: not an SQS request (Lambda's 404, as before).
        assert answer.headers["x-amzn-errortype"] == "UnknownOperationException"
        return
    if answer.status_code == 200:
        return  # e.g. "Action=ListQueues" by chance
    query_error(answer)


# -- boto3 where it can send it --------------------------------------------------------------


@FEW
@given(
    delay=st.integers(min_value=-(10**12), max_value=10**12) | st.just(901),
    number=st.sampled_from(["nan", "inf", "1e127", "1" * 39, "1_0", "", "abc"]),
)
def test_boto3_gets_modeled_codes(sqs: Any, queue_url: str, delay: int, number: str) -> None:
    if 0 <= delay <= 900:
        delay = 901
    assert refused_by_boto(
        sqs.send_message, QueueUrl=queue_url, MessageBody="x", DelaySeconds=delay
    ) in (
        "InvalidParameterValue",
        "client-side",
    )
    attrs = {"n": {"DataType": "Number", "StringValue": number}}
    assert refused_by_boto(
        sqs.send_message, QueueUrl=queue_url, MessageBody="x", MessageAttributes=attrs
    ) in ("InvalidParameterValue", "client-side")


def test_a_garbage_next_token_is_refused(sqs: Any) -> None:
    for token in ("é", "!!", "/w=="):
        with pytest.raises(ClientError) as info:
            sqs.list_queues(NextToken=token, MaxResults=5)
        assert info.value.response["Error"]["Code"] == "InvalidParameterValue"
        assert info.value.response["Error"]["Message"] == "Invalid NextToken value."


def test_list_dead_letter_source_queues_pages(sqs: Any) -> None:
    dlq = sqs.create_queue(QueueName=f"dlq-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 3})
    sources = sorted(
        sqs.create_queue(
            QueueName=f"src{i}-{uuid.uuid4().hex[:6]}", Attributes={"RedrivePolicy": policy}
        )["QueueUrl"]
        for i in range(3)
    )
    first = sqs.list_dead_letter_source_queues(QueueUrl=dlq, MaxResults=2)
    assert first["queueUrls"] == sources[:2] and first["NextToken"]
    rest = sqs.list_dead_letter_source_queues(
        QueueUrl=dlq, MaxResults=2, NextToken=first["NextToken"]
    )
    assert rest["queueUrls"] == sources[2:] and "NextToken" not in rest
    with pytest.raises(ClientError) as info:
        sqs.list_dead_letter_source_queues(QueueUrl=dlq, MaxResults=0)
    assert info.value.response["Error"]["Code"] == "InvalidParameterValue"


# -- rest-json: Scheduler ----------------------------------------------------------------------

TARGET = {
    "Arn": "arn:aws:lambda:us-east-1:000000000000:function:f",
    "RoleArn": "arn:aws:iam::000000000000:role/r",
}
odd_names = st.one_of(
    st.sampled_from(
        ["..%2F..", "%2e%2e", "a%2Fb", "%FF", "%C3%A9", "a%00b", "a" * 5000, "%25", "a%20b", "%ZZ"]
    ),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=80).map(
        lambda t: quote(t, safe="")
    ),
)


@FEW
@given(name=odd_names, method=st.sampled_from(["GET", "DELETE", "POST", "PUT"]))
@example(name="..%2F..", method="POST")
@example(name="a" * 5000, method="GET")
def test_odd_schedule_names_are_refused(http: httpx.Client, name: str, method: str) -> None:
    body = json.dumps(
        {
            "ScheduleExpression": "rate(5 minutes)",
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "Target": TARGET,
        }
    )
    for path in (f"/schedules/{name}", f"/schedule-groups/{name}"):
        answer = http.request(method, path, content=body if method in ("POST", "PUT") else None)
        if (
            answer.status_code == 404
            and answer.headers.get("x-amzn-errortype") == "UnknownOperationException"
        ):
            continue  # no operation at that method and path (Lambda's 404)
        if 200 <= answer.status_code < 300:
            # Only a name of the model's pattern is served.
            assert all(c.isascii() and (c.isalnum() or c in "-_.") for c in unquote(name)), name
            continue
        json_error(answer, SCHEDULER_CODES)


bad_timestamps = st.one_of(
    st.sampled_from(
        [
            "yesterday",
            "2024-13-45T00:00:00Z",
            "1e999",
            "Infinity",
            "NaN",
            "9999-12-31T23:59:59-01:00",
            "0001-01-01T00:00:00+01:00",
            "Mon, 99 Foo 2020",
            "Fri, 31 Dec 9999 23:59:59 -0100",
            "",
            "\u0661\u0662\u0663",
            "253402300800",
            "-62135596801",
            "2024-01-01T00:00:00+99:00",
        ]
    ),
    st.floats(allow_nan=False),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.text(max_size=30),
)


@FEW
@given(member=st.sampled_from(["StartDate", "EndDate"]), value=bad_timestamps)
@example(member="EndDate", value="9999-12-31T23:59:59-01:00")
@example(member="StartDate", value="0001-01-01T00:00:00+01:00")
def test_timestamps_in_wrong_formats_are_refused(
    http: httpx.Client, member: str, value: Any
) -> None:
    name = f"t-{uuid.uuid4().hex[:10]}"
    body = {
        "ScheduleExpression": "rate(5 minutes)",
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "Target": TARGET,
        member: value,
    }
    answer = http.post(f"/schedules/{name}", content=json.dumps(body))
    if answer.status_code == 200:
        http.delete(f"/schedules/{name}")
        return  # a timestamp that reads (a plain number of seconds, an ISO date)
    json_error(answer, SCHEDULER_CODES)


@FEW
@given(
    body=garbage_bodies,
    member=st.sampled_from(["Target", "FlexibleTimeWindow", "Description"]),
    value=json_values,
)
@example(body=deep(5000, "array").encode(), member="Target", value=None)
@example(body=b"", member="Target", value={**TARGET, "Input": deep(3000, "array")})
def test_scheduler_bodies_that_are_not_json_objects_are_refused(
    http: httpx.Client, body: bytes, member: str, value: Any
) -> None:
    answer = http.post(f"/schedules/b-{uuid.uuid4().hex[:8]}", content=body)
    json_error(answer, SCHEDULER_CODES)
    wrong = {
        "ScheduleExpression": "rate(5 minutes)",
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "Target": TARGET,
    }
    wrong[member] = value
    name = f"m-{uuid.uuid4().hex[:8]}"
    answer = http.post(f"/schedules/{name}", content=json.dumps(wrong))
    if answer.status_code == 200:
        http.delete(f"/schedules/{name}")
        assert member == "Description"  # any short string is a description
        return
    json_error(answer, SCHEDULER_CODES)


def test_boto3_scheduler_gets_validation_exceptions(server: NimbusProcess) -> None:
    scheduler = server.client("scheduler", validate=False)
    with pytest.raises(ClientError) as info:
        scheduler.create_schedule(
            Name="deep-input",
            ScheduleExpression="rate(5 minutes)",
            FlexibleTimeWindow={"Mode": "OFF"},
            Target={**TARGET, "Input": deep(3000, "array")},
        )
    assert info.value.response["Error"]["Code"] == "ValidationException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


STRING_V = {"DataType": "String", "StringValue": "v"}
LONE = {"DataType": "String", "StringValue": "\udc00"}


@pytest.mark.parametrize(
    ("target", "body"),
    [
        ("SendMessage", {"MessageBody": "x", "MessageGroupId": "\ud800"}),
        ("SendMessage", {"MessageBody": "x", "MessageAttributes": {"\ud800": STRING_V}}),
        ("SendMessage", {"MessageBody": "x", "MessageSystemAttributes": {"AWSTraceHeader": LONE}}),
        ("CreateQueue", {"QueueName": "s", "Attributes": {"Policy": '{"a": "\ud800"}'}}),
        ("CreateQueue", {"QueueName": "s", "tags": {"\ud800": "x"}}),
        ("GetQueueUrl", {"QueueName": "\ud800"}),
    ],
)  # fmt: skip
def test_lone_surrogates_are_refused_not_failed_on(
    http: httpx.Client, queue_url: str, target: str, body: dict[str, Any]
) -> None:
    """JSON's \\ud800 escape decodes to a lone surrogate, which UTF-8 cannot hold: it must
    be refused as input, not fail where it is stored, hashed or quoted back (a 500)."""
    answer = http.post(
        "/",
        content=json.dumps({"QueueUrl": queue_url, **body}),  # ASCII: the escape is sent
        headers={"X-Amz-Target": f"AmazonSQS.{target}", "Content-Type": SQS_JSON},
    )
    assert json_error(answer, SQS_CODES) == "InvalidParameterValueException"
    assert "lone surrogate" in answer.json()["message"]
    for member in ("Description", "Target"):
        wrong: dict[str, Any] = {
            "ScheduleExpression": "rate(5 minutes)",
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "Target": TARGET,
        }
        wrong[member] = {**TARGET, "Input": '"\ud800"'} if member == "Target" else "a\ud800"
        refused = http.post(f"/schedules/s-{uuid.uuid4().hex[:8]}", content=json.dumps(wrong))
        assert json_error(refused, SCHEDULER_CODES) == "SerializationException"
