"""Queue attributes: their names, defaults, ranges and the checks SQS makes of them, in
SQS's words (InvalidAttributeName / InvalidAttributeValue).

Settable attributes are kept as SQS states them (strings); the counts, timestamps and
the ARN are computed when asked for. What nimbus cannot honour is refused rather than
stored: server-side encryption with a KMS key (nimbus does not encrypt at rest).
``Policy`` is stored and returned but not enforced (nimbus has one account and no IAM),
as for Lambda's resource policies.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from nimbus.errors import InvalidAttributeName, InvalidAttributeValue

# Settable, with SQS's default ("": absent unless set).
DEFAULTS: dict[str, str] = {
    "DelaySeconds": "0",
    "MaximumMessageSize": "1048576",
    "MessageRetentionPeriod": "345600",
    "ReceiveMessageWaitTimeSeconds": "0",
    "VisibilityTimeout": "30",
}
FIFO_DEFAULTS: dict[str, str] = {
    "ContentBasedDeduplication": "false",
    "DeduplicationScope": "queue",
    "FifoThroughputLimit": "perQueue",
}
# (minimum, maximum) in SQS's units (seconds or bytes).
RANGES: dict[str, tuple[int, int]] = {
    "DelaySeconds": (0, 900),
    "MaximumMessageSize": (1024, 1048576),
    "MessageRetentionPeriod": (60, 1209600),
    "ReceiveMessageWaitTimeSeconds": (0, 20),
    "VisibilityTimeout": (0, 43200),
}
COMPUTED = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "QueueArn",
)
OPTIONAL = ("Policy", "RedrivePolicy", "RedriveAllowPolicy", "SqsManagedSseEnabled")
FIFO_ONLY = ("FifoQueue", "ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit")
# Accepted only on FIFO queues, with this message on standard ones (others: "Unknown").
FIFO_ONLY_MESSAGE = ("DeduplicationScope", "FifoThroughputLimit")
KMS = ("KmsMasterKeyId", "KmsDataKeyReusePeriodSeconds")
ENUMS: dict[str, tuple[str, ...]] = {
    "DeduplicationScope": ("messageGroup", "queue"),
    "FifoThroughputLimit": ("perQueue", "perMessageGroupId"),
}
BOOLEANS = ("FifoQueue", "ContentBasedDeduplication", "SqsManagedSseEnabled")
# Every name GetQueueAttributes knows, in the order "All" lists them.
ALL_NAMES = (*COMPUTED, *DEFAULTS, *OPTIONAL, *FIFO_ONLY, *KMS)
MAX_POLICY_BYTES = 20480


@dataclass(frozen=True)
class RedrivePolicy:
    """Where a message goes once it was received ``max_receive_count`` times."""

    dead_letter_target_arn: str
    max_receive_count: int

    def render(self) -> str:
        return json.dumps(
            {
                "deadLetterTargetArn": self.dead_letter_target_arn,
                "maxReceiveCount": self.max_receive_count,
            },
            separators=(",", ":"),
        )


def parse_redrive_policy(value: str) -> RedrivePolicy:
    """RedrivePolicy's JSON, checked as SQS does (the target's existence is checked by
    the caller, which knows the queues)."""
    try:
        doc = json.loads(value)
    except (ValueError, RecursionError):
        doc = None
    if not isinstance(doc, dict):
        raise InvalidAttributeValue(
            f"Invalid value for the parameter RedrivePolicy. Reason: Redrive policy is not a "
            f"valid JSON map: {value}"
        )
    arn = doc.get("deadLetterTargetArn")
    if not arn or not isinstance(arn, str):
        raise InvalidAttributeValue(
            f"Value {value} for parameter RedrivePolicy is invalid. Reason: Redrive policy "
            "does not contain mandatory attribute: deadLetterTargetArn."
        )
    count = doc.get("maxReceiveCount")
    number = _whole_number(count)
    if count is None:
        raise InvalidAttributeValue(
            f"Value {value} for parameter RedrivePolicy is invalid. Reason: Redrive policy "
            "does not contain mandatory attribute: maxReceiveCount."
        )
    if number is None or not 1 <= number <= 1000:
        raise InvalidAttributeValue(
            f"Value {value} for parameter RedrivePolicy is invalid. Reason: Invalid value "
            f"for maxReceiveCount: {count}, valid values are from 1 to 1000 both inclusive."
        )
    return RedrivePolicy(arn, number)


def _whole_number(value: object) -> int | None:
    """maxReceiveCount as SQS takes it: a JSON integer or a string of digits (not a
    boolean, not 1.5, not 1e400, which JSON reads as infinity)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None  # inf and nan are not
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value)
    return None


def _invalid(name: str, reason: str | None = None) -> InvalidAttributeValue:
    suffix = f" Reason: {reason}" if reason else ""
    return InvalidAttributeValue(f"Invalid value for the parameter {name}.{suffix}")


def normalise(attributes: Mapping[str, str], *, fifo: bool, creating: bool) -> dict[str, str]:
    """Check attributes given to CreateQueue (``creating``) or SetQueueAttributes and
    return them in the form they are stored and reported: booleans in lower case,
    RedrivePolicy as compact JSON, "" for an optional attribute being removed."""
    out: dict[str, str] = {}
    for name, raw in attributes.items():
        value = str(raw)
        if name in COMPUTED or name not in ALL_NAMES:
            raise InvalidAttributeName(f"Unknown Attribute {name}.")
        if name in FIFO_ONLY and not fifo:
            if name in FIFO_ONLY_MESSAGE:
                raise InvalidAttributeName(
                    f"You can specify the {name} only when FifoQueue is set to true."
                )
            raise InvalidAttributeName(f"Unknown Attribute {name}.")
        if name in KMS:
            if name == "KmsMasterKeyId" and value == "":
                continue  # removing a key that nimbus never took
            raise InvalidAttributeValue(
                f"Invalid value for the parameter {name}. Reason: nimbus does not encrypt "
                "queues with KMS keys (server-side encryption is not supported)."
            )
        if name in RANGES:
            low, high = RANGES[name]
            try:
                number = int(value)
            except ValueError:
                raise _invalid(name) from None
            if not low <= number <= high:
                raise _invalid(name)
            value = str(number)
        elif name in BOOLEANS:
            if value.lower() not in ("true", "false"):
                raise _invalid(name)
            value = value.lower()
            if name == "FifoQueue" and value != "true":
                raise _invalid(name, "Modifying queue type is not supported.")
            if name == "SqsManagedSseEnabled" and value == "true":
                raise _invalid(
                    name, "nimbus does not encrypt queues at rest (SqsManagedSseEnabled=false)."
                )
        elif name in ENUMS:
            if value not in ENUMS[name]:
                raise _invalid(name)
        elif name == "RedrivePolicy":
            if value:
                value = parse_redrive_policy(value).render()
        elif name in ("Policy", "RedriveAllowPolicy") and value:
            doc = _json_document(name, value)
            if name == "RedriveAllowPolicy":
                _check_redrive_allow(doc)
        out[name] = value
    if creating and fifo:
        out.pop("FifoQueue", None)  # implied by the queue's kind, reported from it
    return out


def _json_document(name: str, value: str) -> dict[str, object]:
    if len(value.encode()) > MAX_POLICY_BYTES:
        raise _invalid(name, f"{name} must be at most {MAX_POLICY_BYTES} bytes.")
    try:
        doc = json.loads(value)
    except (ValueError, RecursionError):
        doc = None
    if not isinstance(doc, dict):
        raise _invalid(name, f"{name} must be a JSON document.")
    return doc


REDRIVE_PERMISSIONS = ("allowAll", "denyAll", "byQueue")
MAX_SOURCE_QUEUES = 10


def _check_redrive_allow(doc: dict[str, object]) -> None:
    """RedriveAllowPolicy as SQS documents it: redrivePermission allowAll (the default),
    denyAll or byQueue, and with byQueue, sourceQueueArns: 1 to 10 queue ARNs."""
    name = "RedriveAllowPolicy"
    permission = doc.get("redrivePermission", "allowAll")
    if permission not in REDRIVE_PERMISSIONS:
        raise _invalid(
            name, f"redrivePermission must be one of {', '.join(REDRIVE_PERMISSIONS)}."
        )
    arns = doc.get("sourceQueueArns")
    if permission != "byQueue":
        if arns is not None:
            raise _invalid(name, "sourceQueueArns is only allowed with redrivePermission byQueue.")
        return
    if (
        not isinstance(arns, list)
        or not 1 <= len(arns) <= MAX_SOURCE_QUEUES
        or not all(isinstance(a, str) for a in arns)
    ):
        raise _invalid(
            name,
            "With redrivePermission byQueue, sourceQueueArns must list 1 to "
            f"{MAX_SOURCE_QUEUES} source queue ARNs.",
        )


def redrive_allow(value: str | None, source_arn: str) -> bool:
    """Whether a dead-letter queue whose RedriveAllowPolicy is ``value`` accepts
    messages from ``source_arn`` (no policy: every queue may use it)."""
    if not value:
        return True
    doc = json.loads(value)
    permission = doc.get("redrivePermission", "allowAll")
    if permission == "denyAll":
        return False
    if permission == "byQueue":
        arns = doc.get("sourceQueueArns")
        return isinstance(arns, list) and source_arn in arns
    return True


def settings_of(stored: Mapping[str, str], fifo: bool) -> dict[str, str]:
    """The settable attributes in effect: defaults overlaid with what was set."""
    current = dict(DEFAULTS)
    if fifo:
        current.update(FIFO_DEFAULTS)
    current.update({k: v for k, v in stored.items() if v != ""})
    return current
