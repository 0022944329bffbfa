"""What failed in a batch, and what becomes of it: Lambda's ReportBatchItemFailures
rules, the retry and bisect plan of stream sources, and the on-failure record.

With ``FunctionResponseTypes: ["ReportBatchItemFailures"]`` the function answers
``{"batchItemFailures": [{"itemIdentifier": id}, ...]}``. As Lambda documents it, the
batch is a complete success for an empty or null list or an empty or null response, and
a complete failure for a response that is not JSON, an item without ``itemIdentifier``,
an empty or null identifier, or one naming no record of the batch. Without the setting,
the response is ignored and only a function error fails the batch.

Stream sources read in order: records before the first failed one are done, that one
and the rest are retried (Lambda's checkpoint at the lowest failed sequence number).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nimbus.events.sources.source import SourceRecord

REPORT_BATCH_ITEM_FAILURES = "ReportBatchItemFailures"


@dataclass(frozen=True)
class BatchOutcome:
    """Which records of an invoked batch failed (``failed`` keeps the batch's order)."""

    failed: list[SourceRecord]
    # Why, for LastProcessingResult and the on-failure record: None on success.
    function_error: str | None = None
    invalid_response: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed


def judge(
    records: list[SourceRecord],
    payload: bytes,
    function_error: str | None,
    report_item_failures: bool,
) -> BatchOutcome:
    """The outcome of one invocation of ``records`` that returned ``payload``."""
    if function_error is not None:
        return BatchOutcome(list(records), function_error)
    if not report_item_failures:
        return BatchOutcome([])
    failed_ids = parse_item_failures(payload, {r.item_id for r in records})
    if failed_ids is None:
        return BatchOutcome(list(records), invalid_response=True)
    return BatchOutcome([r for r in records if r.item_id in failed_ids])


def parse_item_failures(payload: bytes, batch_ids: set[str]) -> set[str] | None:
    """The item ids the response reports as failed; None when the response makes the
    whole batch a failure."""
    text = payload.strip()
    if not text:
        return set()
    try:
        response = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return None
    if response is None:
        return set()
    if not isinstance(response, dict):
        return None
    failures = response.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return None
    failed: set[str] = set()
    for item in failures:
        if not isinstance(item, dict):
            return None
        ident = item.get("itemIdentifier")
        if not isinstance(ident, str) or not ident or ident not in batch_ids:
            return None
        failed.add(ident)
    return failed


def stream_split(
    records: list[SourceRecord], outcome: BatchOutcome
) -> tuple[list[SourceRecord], list[SourceRecord]]:
    """(done, to retry) for a stream source: everything from the first failed record
    on is retried, in order."""
    if outcome.ok:
        return list(records), []
    failed = {id(r) for r in outcome.failed}
    first = next(i for i, r in enumerate(records) if id(r) in failed)
    return records[:first], records[first:]


def bisect(records: list[SourceRecord]) -> list[list[SourceRecord]]:
    """BisectBatchOnFunctionError: a failed batch is retried as two halves, in order."""
    if len(records) < 2:
        return [records]
    middle = len(records) // 2
    return [records[:middle], records[middle:]]


def retries_exhausted(attempts: int, maximum_retry_attempts: int | None) -> bool:
    """Whether a batch invoked ``attempts`` times is out of retries (-1 / None:
    retried until the records expire, Lambda's default for streams)."""
    if maximum_retry_attempts is None or maximum_retry_attempts < 0:
        return False
    return attempts > maximum_retry_attempts


def too_old(record: SourceRecord, now_ms: int, maximum_record_age_s: int | None) -> bool:
    """MaximumRecordAgeInSeconds (-1 / None: no limit)."""
    if maximum_record_age_s is None or maximum_record_age_s < 0:
        return False
    return now_ms - record.timestamp_ms > maximum_record_age_s * 1000


def _iso(ms: int) -> str:
    stamp = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def on_failure_record(
    *,
    request_id: str,
    function_arn: str,
    condition: str,
    attempts: int,
    records: list[SourceRecord],
    event_source_arn: str,
    now_ms: int,
    status_code: int = 200,
    executed_version: str | None = None,
    function_error: str | None = None,
) -> dict[str, Any]:
    """The record sent to DestinationConfig.OnFailure for records of a stream source,
    in the shape of Lambda's for Kinesis (``condition``: RetryAttemptsExhausted or
    RecordAgeExceeded). The batch is described, not copied, as Lambda does: its first
    and last ids (``startSequenceNumber`` / ``endSequenceNumber``) locate it in the
    stream; nimbus' streams carry no shard, so ``StreamBatchInfo`` replaces
    ``KinesisBatchInfo``."""
    response: dict[str, Any] = {"statusCode": status_code}
    if executed_version is not None:
        response["executedVersion"] = executed_version
    if function_error is not None:
        response["functionError"] = function_error
    return {
        "requestContext": {
            "requestId": request_id,
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": attempts,
        },
        "responseContext": response,
        "version": "1.0",
        "timestamp": _iso(now_ms),
        "StreamBatchInfo": {
            "startSequenceNumber": records[0].item_id,
            "endSequenceNumber": records[-1].item_id,
            "approximateArrivalOfFirstRecord": _iso(records[0].timestamp_ms),
            "approximateArrivalOfLastRecord": _iso(records[-1].timestamp_ms),
            "batchSize": len(records),
            "streamArn": event_source_arn,
        },
    }
