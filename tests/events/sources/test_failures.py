"""ReportBatchItemFailures as Lambda documents it, and the stream helpers."""

from __future__ import annotations

import pytest

from nimbus.events.sources.failures import (
    bisect,
    judge,
    on_failure_record,
    parse_item_failures,
    retries_exhausted,
    stream_split,
    too_old,
)
from tests.events.sources.fakes import record

IDS = {"a", "b", "c"}


@pytest.mark.parametrize(
    "payload",
    [b"", b"null", b"{}", b'{"batchItemFailures": []}', b'{"batchItemFailures": null}'],
)
def test_complete_success(payload: bytes) -> None:
    assert parse_item_failures(payload, IDS) == set()


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b'{"batchItemFailures": [{"itemIdentifier": ""}]}',
        b'{"batchItemFailures": [{"itemIdentifier": null}]}',
        b'{"batchItemFailures": [{"foo": "notvalid"}]}',  # LocalStack's recorded case
        b'{"batchItemFailures": [{"itemIdentifier": "zzz"}]}',  # not in the batch
        b'{"batchItemFailures": "a"}',
        b'"a string"',
    ],
)
def test_complete_failure(payload: bytes) -> None:
    assert parse_item_failures(payload, IDS) is None


def test_partial_failure() -> None:
    assert parse_item_failures(
        b'{"batchItemFailures": [{"itemIdentifier": "b"}, {"itemIdentifier": "c"}]}', IDS
    ) == {"b", "c"}


def test_judge_ignores_the_response_without_the_setting() -> None:
    records = [record(1), record(2)]
    payload = b'{"batchItemFailures": [{"itemIdentifier": "m1"}]}'
    assert judge(records, payload, None, report_item_failures=False).ok
    partial = judge(records, payload, None, report_item_failures=True)
    assert [r.item_id for r in partial.failed] == ["m1"]
    errored = judge(records, b"{}", "Unhandled", report_item_failures=True)
    assert len(errored.failed) == 2 and errored.function_error == "Unhandled"


def test_stream_checkpoint_is_the_first_failed_record() -> None:
    records = [record(i) for i in range(5)]
    outcome = judge(
        records,
        b'{"batchItemFailures": [{"itemIdentifier": "m3"}, {"itemIdentifier": "m2"}]}',
        None,
        True,
    )
    done, retry = stream_split(records, outcome)
    assert [r.item_id for r in done] == ["m0", "m1"]
    assert [r.item_id for r in retry] == ["m2", "m3", "m4"]


def test_bisect_retries_limits_and_age() -> None:
    halves = bisect([record(i) for i in range(5)])
    assert [len(h) for h in halves] == [2, 3]
    assert bisect([record(1)]) == [[record(1)]]
    assert not retries_exhausted(100, -1)
    assert retries_exhausted(3, 2) and not retries_exhausted(2, 2)
    assert too_old(record(1, ts=0), 61_000, 60) and not too_old(record(1, ts=0), 59_000, 60)
    assert not too_old(record(1, ts=0), 10**12, -1)


def test_on_failure_record_has_lambdas_stream_shape() -> None:
    body = on_failure_record(
        request_id="r",
        function_arn="arn:aws:lambda:us-east-1:000000000000:function:f",
        condition="RetryAttemptsExhausted",
        attempts=3,
        records=[record(1, ts=1000), record(2, ts=2000)],
        event_source_arn="redis://localhost/s",
        now_ms=3000,
        executed_version="$LATEST",
        function_error="Unhandled",
    )
    assert body["requestContext"] == {
        "requestId": "r",
        "functionArn": "arn:aws:lambda:us-east-1:000000000000:function:f",
        "condition": "RetryAttemptsExhausted",
        "approximateInvokeCount": 3,
    }
    assert body["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    info = body["StreamBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (
        "m1",
        "m2",
        2,
    )
    assert info["approximateArrivalOfFirstRecord"] == "1970-01-01T00:00:01.000Z"
    assert body["version"] == "1.0" and body["timestamp"] == "1970-01-01T00:00:03.000Z"
