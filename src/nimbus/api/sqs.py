"""The SQS API: one thin handler per operation over ``nimbus.sqs.Queues``.

The protocol layer parses requests (JSON, or the query protocol of older SDKs) into the
model's members and writes the answers; handlers only map members to the domain and
back. Queue URLs are ``<the URL the request came to>/<account>/<name>``; a QueueUrl
member may also be just the queue's name, as SQS allows.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from nimbus.api.services import services_of_context
from nimbus.errors import (
    BatchEntryIdsNotDistinct,
    BatchRequestTooLong,
    EmptyBatchRequest,
    InvalidAttributeName,
    InvalidBatchEntryId,
    QueueDoesNotExist,
    SqsError,
    SqsInvalidParameterValue,
    TooManyEntriesInBatchRequest,
)
from nimbus.observe.tracing import TraceHeader
from nimbus.protocol.compat import SQS as SQS_COMPAT
from nimbus.protocol.service import AwsService, RequestContext
from nimbus.sqs.attributes import ALL_NAMES
from nimbus.sqs.md5 import md5_of_attributes
from nimbus.sqs.messages import (
    SYSTEM_ATTRIBUTES,
    Message,
    Outgoing,
    SendResult,
    check_message_attributes,
)
from nimbus.sqs.queue_names import named_queue
from nimbus.sqs.queues import Queues, QueueView

Params = dict[str, Any]
MAX_BATCH = 10
MAX_BATCH_BYTES = 1048576
MAX_LIST = 1000
_ENTRY_ID = re.compile(r"[A-Za-z0-9_-]{1,80}")


def _queues(ctx: RequestContext) -> Queues:
    return services_of_context(ctx).engine.sqs


def queue_name(ctx: RequestContext, url: str) -> str:
    """The queue a QueueUrl names, read as access control reads it
    (nimbus.sqs.queue_names)."""
    name = named_queue(url, ctx.account_id)
    if name is None:
        raise QueueDoesNotExist()
    return name


def _url(ctx: RequestContext, name: str) -> str:
    return _queues(ctx).url(name, ctx.base_url)


# -- queues ---------------------------------------------------------------------------------


async def create_queue(ctx: RequestContext, p: Params) -> Params:
    row = await _queues(ctx).create(p["QueueName"], p.get("Attributes"), p.get("tags"))
    return {"QueueUrl": _url(ctx, row.name)}


async def delete_queue(ctx: RequestContext, p: Params) -> Params:
    await _queues(ctx).delete_queue(queue_name(ctx, p["QueueUrl"]))
    return {}


async def get_queue_url(ctx: RequestContext, p: Params) -> Params:
    owner = p.get("QueueOwnerAWSAccountId")
    if owner is not None and owner != ctx.account_id:
        raise QueueDoesNotExist()
    row = await _queues(ctx).get(p["QueueName"])
    return {"QueueUrl": _url(ctx, row.name)}


def _token(value: str | None) -> str:
    if not value:
        return ""
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, ValueError):  # ValueError: not ASCII ("é"), or not UTF-8
        raise SqsInvalidParameterValue("Invalid NextToken value.") from None


async def list_queues(ctx: RequestContext, p: Params) -> Params:
    limit = _max_results(p.get("MaxResults"))
    after = _token(p.get("NextToken"))
    names = [n for n in await _queues(ctx).names(p.get("QueueNamePrefix") or "") if n > after]
    page = names[: limit or MAX_LIST]
    out: Params = {}
    if page:
        out["QueueUrls"] = [_url(ctx, n) for n in page]
    if limit is not None and len(names) > len(page):
        out["NextToken"] = base64.b64encode(page[-1].encode()).decode()
    return out


def _computed(view: QueueView, queues: Queues) -> dict[str, str]:
    row, counts = view.row, view.counts
    values = {
        "ApproximateNumberOfMessages": str(counts.visible),
        "ApproximateNumberOfMessagesNotVisible": str(counts.in_flight),
        "ApproximateNumberOfMessagesDelayed": str(counts.delayed),
        "CreatedTimestamp": str(row.created_ms // 1000),
        "LastModifiedTimestamp": str(row.modified_ms // 1000),
        "QueueArn": queues.arn(row.name),
        **row.settings,
    }
    if row.fifo:
        values["FifoQueue"] = "true"
    return values


async def get_queue_attributes(ctx: RequestContext, p: Params) -> Params:
    queues = _queues(ctx)
    wanted = list(p.get("AttributeNames") or [])
    for name in wanted:
        if name != "All" and name not in ALL_NAMES:
            raise InvalidAttributeName(f"Unknown Attribute {name}.")
    view = await queues.view(queue_name(ctx, p["QueueUrl"]))
    values = _computed(view, queues)
    if "All" not in wanted:
        values = {k: v for k, v in values.items() if k in wanted}
    return {"Attributes": values} if values else {}


async def set_queue_attributes(ctx: RequestContext, p: Params) -> Params:
    await _queues(ctx).set_attributes(queue_name(ctx, p["QueueUrl"]), p.get("Attributes") or {})
    return {}


async def purge_queue(ctx: RequestContext, p: Params) -> Params:
    await _queues(ctx).purge(queue_name(ctx, p["QueueUrl"]))
    return {}


async def tag_queue(ctx: RequestContext, p: Params) -> Params:
    await _queues(ctx).tag(queue_name(ctx, p["QueueUrl"]), p.get("Tags") or {})
    return {}


async def untag_queue(ctx: RequestContext, p: Params) -> Params:
    await _queues(ctx).untag(queue_name(ctx, p["QueueUrl"]), p.get("TagKeys") or [])
    return {}


async def list_queue_tags(ctx: RequestContext, p: Params) -> Params:
    row = await _queues(ctx).get(queue_name(ctx, p["QueueUrl"]))
    return {"Tags": row.tags} if row.tags else {}


async def list_dead_letter_source_queues(ctx: RequestContext, p: Params) -> Params:
    queues = _queues(ctx)
    limit = _max_results(p.get("MaxResults"))
    after = _token(p.get("NextToken"))
    target = queues.arn((await queues.get(queue_name(ctx, p["QueueUrl"]))).name)
    sources = []
    for name in await queues.names():
        if name <= after:
            continue
        row = await queues.get(name)
        if target in row.attributes.get("RedrivePolicy", ""):
            sources.append(name)
    page = sources[: limit or MAX_LIST]
    out: Params = {"queueUrls": [_url(ctx, n) for n in page]}
    if limit is not None and len(sources) > len(page):
        out["NextToken"] = base64.b64encode(page[-1].encode()).decode()
    return out


def _max_results(limit: int | None) -> int | None:
    if limit is not None and not 1 <= limit <= MAX_LIST:
        raise SqsInvalidParameterValue(
            f"Value {limit} for parameter MaxResults is invalid. Reason: MaxResults must be an "
            f"integer between 1 and {MAX_LIST}."
        )
    return limit


# -- messages -----------------------------------------------------------------------------


def _http_trace(ctx: RequestContext) -> str | None:
    """The request's ``X-Amzn-Trace-Id`` when it is an X-Ray header (boto3 sends one from
    inside a traced function): as on AWS, the ``AWSTraceHeader`` of every message the
    request sends that has none of its own, so the trace goes on past the queue."""
    value = ctx.headers.get("x-amzn-trace-id")
    return value.strip() if value and TraceHeader.parse(value) is not None else None


def _outgoing(p: Params, http_trace: str | None = None) -> Outgoing:
    system = p.get("MessageSystemAttributes") or {}
    unknown = [k for k in system if k != "AWSTraceHeader"]
    if unknown:
        raise SqsInvalidParameterValue(f"Message system attribute name '{unknown[0]}' is invalid.")
    trace = system.get("AWSTraceHeader")
    if trace is not None and trace.get("DataType") != "String":
        raise SqsInvalidParameterValue(
            "Message system attribute 'AWSTraceHeader' must be of type 'String'."
        )
    if trace is not None and not trace.get("StringValue"):
        raise SqsInvalidParameterValue(
            "Message system attribute 'AWSTraceHeader' must contain a non-empty value of "
            "type 'String'."
        )
    return Outgoing(
        body=p.get("MessageBody", ""),
        message_attributes=check_message_attributes(p.get("MessageAttributes")),
        delay_seconds=p.get("DelaySeconds"),
        group_id=p.get("MessageGroupId"),
        dedup_id=p.get("MessageDeduplicationId"),
        trace_header=trace.get("StringValue") if trace else http_trace,
    )


def _sent(result: SendResult, system_given: bool = True) -> Params:
    """The answer for one message; ``system_given``: the request gave it system
    attributes (a trace header taken from the HTTP request has no MD5 to answer)."""
    out: Params = {"MD5OfMessageBody": result.md5_of_body, "MessageId": result.message_id}
    if result.md5_of_message_attributes:
        out["MD5OfMessageAttributes"] = result.md5_of_message_attributes
    if result.md5_of_system_attributes and system_given:
        out["MD5OfMessageSystemAttributes"] = result.md5_of_system_attributes
    if result.sequence_number:
        out["SequenceNumber"] = result.sequence_number
    return out


async def send_message(ctx: RequestContext, p: Params) -> Params:
    name = queue_name(ctx, p["QueueUrl"])
    sent = await _queues(ctx).send_one(name, _outgoing(p, _http_trace(ctx)))
    return _sent(sent, bool(p.get("MessageSystemAttributes")))


def _check_batch(entries: Sequence[Params], entry_shape: str) -> None:
    if not entries:
        raise EmptyBatchRequest(f"There should be at least one {entry_shape} in the request.")
    if len(entries) > MAX_BATCH:
        raise TooManyEntriesInBatchRequest(
            f"Maximum number of entries per request are {MAX_BATCH}. You have sent {len(entries)}."
        )
    seen: set[str] = set()
    for entry in entries:
        entry_id = entry.get("Id", "")
        if not _ENTRY_ID.fullmatch(entry_id):
            raise InvalidBatchEntryId(
                "A batch entry id can only contain alphanumeric characters, hyphens and "
                "underscores. It can be at most 80 letters long."
            )
        if entry_id in seen:
            raise BatchEntryIdsNotDistinct(f"Id {entry_id} repeated.")
        seen.add(entry_id)


def _failed(entry_id: str, exc: SqsError) -> Params:
    legacy = SQS_COMPAT.errors.get(exc.type_name)
    code = legacy.code if legacy else SQS_COMPAT.renamed.get(exc.type_name, exc.type_name)
    return {"Id": entry_id, "SenderFault": True, "Code": code, "Message": exc.message}


async def send_message_batch(ctx: RequestContext, p: Params) -> Params:
    name = queue_name(ctx, p["QueueUrl"])
    entries = p.get("Entries") or []
    _check_batch(entries, "SendMessageBatchRequestEntry")
    size = sum(len(e.get("MessageBody", "").encode()) for e in entries)
    size += sum(
        len(k.encode()) + len(str(v).encode())
        for e in entries
        for attr_name, attr in (e.get("MessageAttributes") or {}).items()
        for k, v in [(attr_name, attr.get("StringValue") or attr.get("BinaryValue") or "")]
    )
    if size > MAX_BATCH_BYTES:
        raise BatchRequestTooLong(
            f"Batch requests cannot be longer than {MAX_BATCH_BYTES} bytes. You have sent "
            f"{size} bytes."
        )
    failed: list[Params] = []
    ready: list[tuple[Params, Outgoing]] = []
    http_trace = _http_trace(ctx)
    for entry in entries:
        try:
            ready.append((entry, _outgoing(entry, http_trace)))
        except SqsError as exc:
            failed.append(_failed(entry["Id"], exc))
    results = await _queues(ctx).send_batch(name, [o for _, o in ready]) if ready else []
    successful = []
    for (entry, _), result in zip(ready, results, strict=True):
        if isinstance(result, SqsError):
            failed.append(_failed(entry["Id"], result))
        else:
            given = bool(entry.get("MessageSystemAttributes"))
            successful.append({"Id": entry["Id"], **_sent(result, given)})
    return {"Successful": successful, "Failed": failed}


def _wanted_system(p: Params) -> set[str]:
    names = set(p.get("AttributeNames") or []) | set(p.get("MessageSystemAttributeNames") or [])
    return set(SYSTEM_ATTRIBUTES) if "All" in names else names


def _wanted_attributes(names: Sequence[str], attributes: dict[str, Any]) -> dict[str, Any]:
    if not names:
        return {}
    if "All" in names or ".*" in names:
        return dict(attributes)
    prefixes = tuple(n[:-2] for n in names if n.endswith(".*"))
    return {
        k: v for k, v in attributes.items() if k in names or (prefixes and k.startswith(prefixes))
    }


def _received(m: Message, system: set[str], attribute_names: Sequence[str]) -> Params:
    out: Params = {
        "MessageId": m.message_id,
        "ReceiptHandle": m.receipt_handle,
        "MD5OfBody": m.md5_of_body,
        "Body": m.body,
    }
    attributes = {k: v for k, v in m.attributes.items() if k in system}
    if attributes:
        out["Attributes"] = attributes
    chosen = _wanted_attributes(attribute_names, m.message_attributes)
    if chosen:
        out["MessageAttributes"] = chosen
        out["MD5OfMessageAttributes"] = md5_of_attributes(chosen)
    return out


async def receive_message(ctx: RequestContext, p: Params) -> Params:
    queues = _queues(ctx)
    name = queue_name(ctx, p["QueueUrl"])
    wait = p.get("WaitTimeSeconds")
    if wait is None:
        wait = int((await queues.get(name)).settings["ReceiveMessageWaitTimeSeconds"])
    messages = await queues.receive(
        name,
        max_messages=1 if p.get("MaxNumberOfMessages") is None else p["MaxNumberOfMessages"],
        visibility_timeout=p.get("VisibilityTimeout"),
        wait_seconds=wait,
    )
    system = _wanted_system(p)
    names = p.get("MessageAttributeNames") or []
    return {"Messages": [_received(m, system, names) for m in messages]} if messages else {}


async def delete_message(ctx: RequestContext, p: Params) -> Params:
    await _queues(ctx).delete(queue_name(ctx, p["QueueUrl"]), [p["ReceiptHandle"]])
    return {}


async def _batch(
    ctx: RequestContext,
    p: Params,
    entry_shape: str,
    run: Callable[[str, list[Params]], Awaitable[list[SqsError | None]]],
) -> Params:
    name = queue_name(ctx, p["QueueUrl"])
    entries = p.get("Entries") or []
    _check_batch(entries, entry_shape)
    results = await run(name, entries)
    successful, failed = [], []
    for entry, result in zip(entries, results, strict=True):
        if result is None:
            successful.append({"Id": entry["Id"]})
        else:
            failed.append(_failed(entry["Id"], result))
    return {"Successful": successful, "Failed": failed}


async def delete_message_batch(ctx: RequestContext, p: Params) -> Params:
    async def run(name: str, entries: list[Params]) -> list[SqsError | None]:
        return await _queues(ctx).delete_batch(name, [e["ReceiptHandle"] for e in entries])

    return await _batch(ctx, p, "DeleteMessageBatchRequestEntry", run)


async def change_message_visibility(ctx: RequestContext, p: Params) -> Params:
    name = queue_name(ctx, p["QueueUrl"])
    await _queues(ctx).change_visibility(name, p["ReceiptHandle"], p["VisibilityTimeout"])
    return {}


async def change_message_visibility_batch(ctx: RequestContext, p: Params) -> Params:
    async def run(name: str, entries: list[Params]) -> list[SqsError | None]:
        changes = [(e["ReceiptHandle"], e.get("VisibilityTimeout") or 0) for e in entries]
        return await _queues(ctx).change_visibility_batch(name, changes)

    return await _batch(ctx, p, "ChangeMessageVisibilityBatchRequestEntry", run)


SQS = AwsService(
    "sqs",
    {
        "CreateQueue": create_queue,
        "DeleteQueue": delete_queue,
        "GetQueueUrl": get_queue_url,
        "ListQueues": list_queues,
        "GetQueueAttributes": get_queue_attributes,
        "SetQueueAttributes": set_queue_attributes,
        "PurgeQueue": purge_queue,
        "TagQueue": tag_queue,
        "UntagQueue": untag_queue,
        "ListQueueTags": list_queue_tags,
        "ListDeadLetterSourceQueues": list_dead_letter_source_queues,
        "SendMessage": send_message,
        "SendMessageBatch": send_message_batch,
        "ReceiveMessage": receive_message,
        "DeleteMessage": delete_message,
        "DeleteMessageBatch": delete_message_batch,
        "ChangeMessageVisibility": change_message_visibility,
        "ChangeMessageVisibilityBatch": change_message_visibility_batch,
    },
)
