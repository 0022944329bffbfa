"""Destinations for async results: parsing and validation, the invocation record, and
delivery by the dispatcher.

Covers: function ARNs (with and without qualifier) and http(s) URLs accepted; other
regions and accounts, SQS/SNS/EventBridge ARNs and anything else refused with a message
saying why (and ``validate_destination`` naming the setting); the invocation record
field for field against the one AWS documents for destinations (version "1.0",
timestamp, requestContext, requestPayload, responseContext, responsePayload); and the
dispatcher delivering it: OnSuccess to a function (queued as that function's event),
OnFailure to a webhook (httpx's MockTransport, no sockets), and an unusable destination
falling back to the dead-letter store.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from nimbus.config import Config
from nimbus.errors import InvalidParameterValue
from nimbus.events.destinations import (
    Destination,
    invocation_record,
    parse_destination,
    validate_destination,
)
from nimbus.models import EventInvokeConfig
from tests.fakes import WAIT_S, Dispatching, create_function, fail, open_dispatching, succeed

CONFIG = Config.model_validate({"data_dir": "/nonexistent"})
FN = "arn:aws:lambda:us-east-1:000000000000:function"
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")

ROOT = "Root=1-5759e988-bd862e3fe1be46a994272793"  # a caller's trace header


# -- parsing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, function, qualifier",
    [
        (f"{FN}:sink", "sink", None),
        (f"{FN}:sink:live", "sink", "live"),
        (f"{FN}:sink:$LATEST", "sink", "$LATEST"),
        (f"{FN}:sink:3", "sink", "3"),
        (f"{FN}:my-fn_2", "my-fn_2", None),
    ],
)
def test_function_arns_name_a_function_and_qualifier(
    value: str, function: str, qualifier: str | None
) -> None:
    assert parse_destination(value, CONFIG) == Destination(value, function, qualifier)


@pytest.mark.parametrize(
    "value", ["https://hooks.example.com/a?b=1", "http://127.0.0.1:8080/", "HTTPS://EXAMPLE.COM"]
)
def test_http_urls_are_webhooks(value: str) -> None:
    assert parse_destination(value, CONFIG) == Destination(value, url=value)


@pytest.mark.parametrize(
    "value",
    [
        "arn:aws:lambda:eu-west-1:000000000000:function:sink",
        "arn:aws:lambda:us-east-1:111111111111:function:sink",
    ],
    ids=["region", "account"],
)
def test_functions_of_another_region_or_account_are_refused(value: str) -> None:
    with pytest.raises(InvalidParameterValue) as info:
        parse_destination(value, CONFIG)
    assert "another region or account" in info.value.message
    assert "us-east-1 / 000000000000" in info.value.message


def test_the_configured_region_and_account_are_the_ones_accepted() -> None:
    config = Config.model_validate(
        {"data_dir": "/nonexistent", "region": "eu-west-1", "account_id": "1" * 12}
    )
    value = "arn:aws:lambda:eu-west-1:111111111111:function:sink"
    assert parse_destination(value, config).function == "sink"
    with pytest.raises(InvalidParameterValue):
        parse_destination(f"{FN}:sink", config)


@pytest.mark.parametrize(
    "value, service",
    [
        ("arn:aws:events:us-east-1:000000000000:event-bus/default", "events"),
        ("arn:aws:s3:::bucket", "s3"),
    ],
)
def test_other_services_are_refused_by_name(value: str, service: str) -> None:
    with pytest.raises(InvalidParameterValue) as info:
        parse_destination(value, CONFIG)
    assert f"is a {service} ARN" in info.value.message


def test_an_sqs_queue_of_this_nimbus_is_a_destination() -> None:
    assert parse_destination("arn:aws:sqs:us-east-1:000000000000:failures", CONFIG).queue == (
        "failures"
    )
    with pytest.raises(InvalidParameterValue, match="another region or account"):
        parse_destination("arn:aws:sqs:eu-west-1:000000000000:failures", CONFIG)
    with pytest.raises(InvalidParameterValue, match="not a valid SQS queue ARN"):
        parse_destination("arn:aws:sqs:us-east-1:000000000000:bad/name", CONFIG)


@pytest.mark.parametrize(
    "value",
    [
        "arn:aws:lambda:us-east-1:000000000000:function:bad.name",
        "arn:aws:lambda:us-east-1:000000000000:function:sink:bad.q",
        "arn:aws:lambda:us-east-1:000000000000:layer:sink",
    ],
)
def test_a_malformed_function_arn_is_named_as_such(value: str) -> None:
    with pytest.raises(InvalidParameterValue) as info:
        parse_destination(value, CONFIG)
    assert "is not a valid Lambda function ARN" in info.value.message


@pytest.mark.parametrize(
    "value", ["", "sink", "ftp://example.com/x", "http://", "https:///path", "arn:aws"]
)
def test_anything_else_is_refused(value: str) -> None:
    with pytest.raises(InvalidParameterValue) as info:
        parse_destination(value, CONFIG)
    assert "neither a Lambda function ARN nor an http(s) URL" in info.value.message


def test_validation_names_the_setting() -> None:
    validate_destination(f"{FN}:sink", CONFIG, "OnSuccess")  # fine: no error
    where = "DestinationConfig.OnFailure.Destination"
    with pytest.raises(InvalidParameterValue) as info:
        validate_destination("arn:aws:events:us-east-1:000000000000:event-bus/q", CONFIG, where)
    assert info.value.message.startswith(f"{where}: The destination arn:aws:events:")
    assert info.value.status == 400
    assert info.value.type_name == "InvalidParameterValueException"


# -- the record -------------------------------------------------------------------------


def record_of(**overrides: object) -> dict:
    values: dict = {
        "request_id": "e4b46cbf-b738-xmpl-8880-a18cdf61200e",
        "function_arn": f"{FN}:my-function:$LATEST",
        "condition": "RetriesExhausted",
        "attempts": 3,
        "request_payload": b'{"ORDER_IDS": ["9e07af03-ce31-4ff3-xmpl-36dce652cb4f"]}',
        "status_code": 200,
        "executed_version": "$LATEST",
        "function_error": "Unhandled",
        "response_payload": b'{"errorMessage": "RequestId: e4b46cbf Process exited"}',
    }
    values.update(overrides)
    return invocation_record(**values)


def test_a_failure_record_is_the_one_aws_documents() -> None:
    before = datetime.now(UTC)
    record = record_of()
    after = datetime.now(UTC)
    timestamp = record.pop("timestamp")
    # https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html
    assert record == {
        "version": "1.0",
        "requestContext": {
            "requestId": "e4b46cbf-b738-xmpl-8880-a18cdf61200e",
            "functionArn": f"{FN}:my-function:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": {"ORDER_IDS": ["9e07af03-ce31-4ff3-xmpl-36dce652cb4f"]},
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "responsePayload": {"errorMessage": "RequestId: e4b46cbf Process exited"},
    }
    assert TIMESTAMP.fullmatch(timestamp), timestamp
    when = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    assert before - timedelta(milliseconds=1) <= when <= after
    assert list(record) == ["version", "requestContext", "requestPayload",
                            "responseContext", "responsePayload"]  # fmt: skip


def test_a_success_record_has_no_function_error() -> None:
    record = record_of(condition="Success", attempts=1, function_error=None,
                       response_payload=b'{"ok": true}')  # fmt: skip
    assert record["requestContext"]["condition"] == "Success"
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert record["responsePayload"] == {"ok": True}


def test_a_record_of_an_event_that_never_ran_has_no_response() -> None:
    record = record_of(condition="EventAgeExceeded", attempts=0, status_code=500,
                       executed_version=None, function_error=None,
                       response_payload=None)  # fmt: skip
    assert record["responseContext"] == {"statusCode": 500}
    assert "responsePayload" not in record
    assert record["requestContext"]["approximateInvokeCount"] == 0


@pytest.mark.parametrize(
    "raw, decoded",
    [
        (b"null", None),
        (b'"text"', "text"),
        (b"[1, 2]", [1, 2]),
        (b"not json", "not json"),
        (b"", ""),
        (b"\xff\xfe", "\ufffd\ufffd"),
    ],
)
def test_payloads_are_embedded_as_json_or_else_as_text(raw: bytes, decoded: object) -> None:
    record = record_of(request_payload=raw, response_payload=raw)
    assert record["requestPayload"] == decoded and record["responsePayload"] == decoded
    assert json.loads(json.dumps(record))["requestPayload"] == decoded


# -- delivery ---------------------------------------------------------------------------


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[Dispatching]:
    # The webhook test's made-up host: trusted by name, so never looked up (net_policy).
    parts = await open_dispatching(tmp_path / "data", webhook_allow=["hooks.example.com"])
    for name in ("fn", "sink"):
        create_function(parts.stores.functions, name)
    yield parts
    await parts.close()


def configure(parts: Dispatching, **settings: Any) -> None:
    parts.stores.event_configs.put(EventInvokeConfig("fn", "$LATEST", **settings), merge=False)


async def test_on_success_queues_the_record_for_the_destination_function(
    parts: Dispatching,
) -> None:
    configure(parts, on_success=f"{FN}:sink:live")
    parts.invoker.script("fn", succeed(b'{"total": 3}'))
    request_id = await parts.dispatcher.enqueue("fn", None, b'{"a": 1}', trace_id=ROOT)
    await parts.dispatcher.start()
    first = await parts.invoker.next_call()
    assert (first.name, first.request_id) == ("fn", request_id)
    delivered = await parts.invoker.next_call()
    assert (delivered.name, delivered.qualifier) == ("sink", "live")
    assert delivered.request_id != request_id
    assert delivered.trace_id.startswith(ROOT + ";Parent=")
    record = json.loads(delivered.payload)
    assert record["requestContext"] == {
        "requestId": request_id,
        "functionArn": f"{FN}:fn:$LATEST",
        "condition": "Success",
        "approximateInvokeCount": 1,
    }
    assert record["requestPayload"] == {"a": 1}
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert record["responsePayload"] == {"total": 3}
    await parts.settle()
    assert (await parts.queue.stats()).depth == 0
    assert parts.dead_letters.added.empty()


async def test_on_failure_posts_the_record_to_a_webhook(parts: Dispatching) -> None:
    posted: asyncio.Queue[httpx.Request] = asyncio.Queue()

    async def webhook(request: httpx.Request) -> httpx.Response:
        await request.aread()
        posted.put_nowait(request)
        return httpx.Response(202)

    configure(parts, maximum_retry_attempts=1, on_failure="https://hooks.example.com/failed")
    parts.invoker.script("fn", fail("KeyError", "'id'"))
    await parts.dispatcher.start()
    real, parts.dispatcher._http = (
        parts.dispatcher._http,
        httpx.AsyncClient(transport=httpx.MockTransport(webhook)),
    )
    assert real is not None
    await real.aclose()
    request_id = await parts.dispatcher.enqueue("fn", None, b'{"id": null}')
    request = await asyncio.wait_for(posted.get(), WAIT_S)
    assert str(request.url) == "https://hooks.example.com/failed"
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-amz-request-id"] == request_id
    record = json.loads(request.content)
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 2  # the run and one retry
    assert record["responseContext"] == {
        "statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"
    }  # fmt: skip
    assert record["responsePayload"] == {"errorMessage": "'id'", "errorType": "KeyError"}
    assert len(parts.invoker.made) == 2
    await parts.settle()
    assert parts.dead_letters.added.empty()  # delivered: no dead letter as well


async def test_an_unusable_destination_falls_back_to_dead_letters(parts: Dispatching) -> None:
    # Stored without validation (as by an older nimbus): delivery cannot even start.
    configure(parts, maximum_retry_attempts=0, on_failure="arn:aws:sqs:us-east-1:0:q")
    parts.invoker.script("fn", fail())
    request_id = await parts.dispatcher.enqueue("fn", None, b"{}")
    await parts.dispatcher.start()
    letter = await parts.dead_letters.next()
    assert (letter.request_id, letter.queue) == (request_id, "nimbus")
    assert (letter.condition, letter.attempts) == ("RetriesExhausted", 1)
    assert letter.error is not None and "ValueError" in letter.error
