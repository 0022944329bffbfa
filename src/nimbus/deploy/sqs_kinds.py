"""SQS queues (``AWS::SQS::Queue``), deployed with boto3's ``sqs`` client."""

from __future__ import annotations

import json
from typing import Any

from nimbus.deploy.kinds import Context, Kind, Made, ignore_missing, register, tags_dict

_ATTRIBUTES = (
    "ContentBasedDeduplication", "DelaySeconds", "FifoQueue", "MaximumMessageSize",
    "MessageRetentionPeriod", "ReceiveMessageWaitTimeSeconds", "RedrivePolicy",
    "RedriveAllowPolicy", "VisibilityTimeout", "DeduplicationScope", "FifoThroughputLimit",
)  # fmt: skip
# SQS's defaults, set again when the template stops setting an attribute.
_DEFAULTS = {
    "DelaySeconds": "0", "MaximumMessageSize": "262144", "MessageRetentionPeriod": "345600",
    "ReceiveMessageWaitTimeSeconds": "0", "VisibilityTimeout": "30", "RedrivePolicy": "",
    "RedriveAllowPolicy": "",
}  # fmt: skip


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _attributes(props: dict[str, Any]) -> dict[str, str]:
    return {k: _text(props[k]) for k in _ATTRIBUTES if k in props}


@register
class Queue(Kind):
    type_name = "AWS::SQS::Queue"
    properties = frozenset({*_ATTRIBUTES, "QueueName", "Tags"})
    replace_on = frozenset({"QueueName", "FifoQueue"})

    def _name(self, ctx: Context, logical_id: str, props: dict[str, Any]) -> str:
        fifo = str(props.get("FifoQueue", "")).lower() == "true"
        return str(props.get("QueueName") or ctx.name(logical_id, 80, ".fifo" if fifo else ""))

    def create(self, ctx: Context, logical_id: str, props: dict[str, Any]) -> Made:
        sqs = ctx.client("sqs")
        name = self._name(ctx, logical_id, props)
        args: dict[str, Any] = {"QueueName": name, "Attributes": _attributes(props)}
        if props.get("Tags"):
            args["tags"] = tags_dict(props["Tags"])
        url = sqs.create_queue(**args)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return Made(url, {"Arn": arn["Attributes"]["QueueArn"], "QueueName": name,
                          "QueueUrl": url})  # fmt: skip

    def update(
        self, ctx: Context, logical_id: str, made: Made, props: dict[str, Any],
        old: dict[str, Any],
    ) -> Made:  # fmt: skip
        sqs = ctx.client("sqs")
        new, before = _attributes(props), _attributes(old)
        changed = {k: v for k, v in new.items() if before.get(k) != v}
        changed |= {k: _DEFAULTS[k] for k in before if k not in new and k in _DEFAULTS}
        if changed:
            sqs.set_queue_attributes(QueueUrl=made.physical_id, Attributes=changed)
        tags, old_tags = tags_dict(props.get("Tags")), tags_dict(old.get("Tags"))
        gone = [k for k in old_tags if k not in tags]
        if gone:
            sqs.untag_queue(QueueUrl=made.physical_id, TagKeys=gone)
        if tags and tags != old_tags:
            sqs.tag_queue(QueueUrl=made.physical_id, Tags=tags)
        return made

    def delete(self, ctx: Context, made: Made) -> None:
        ignore_missing(ctx.client("sqs").delete_queue, QueueUrl=made.physical_id)
