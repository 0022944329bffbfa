"""Dead-letter queues: a queue's RedrivePolicy moves a message to its
``deadLetterTargetArn`` instead of delivering it the (maxReceiveCount + 1)th time.

The move happens inside the receive's transaction, so a message is in exactly one of
the two queues at any time. It keeps its id, body, attributes, sent time (retention
counts from the original send, as on SQS) and receive count, and gains the
``DeadLetterQueueSourceArn`` system attribute. A FIFO source needs a FIFO target and
the message keeps its group.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nimbus.sqs.attributes import RedrivePolicy, parse_redrive_policy

QUEUE_ARN = re.compile(
    r"arn:aws[a-zA-Z-]*:sqs:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):(?P<name>[A-Za-z0-9_.-]{1,80})"
)


@dataclass(frozen=True)
class ArnParts:
    region: str
    account: str
    name: str


def parse_queue_arn(arn: str) -> ArnParts | None:
    match = QUEUE_ARN.fullmatch(arn)
    if match is None:
        return None
    return ArnParts(match["region"], match["account"], match["name"])


def policy_of(attributes: dict[str, str]) -> RedrivePolicy | None:
    value = attributes.get("RedrivePolicy")
    return parse_redrive_policy(value) if value else None


def exhausted(receive_count: int, policy: RedrivePolicy | None) -> bool:
    """Whether receiving a message again would exceed the policy's maxReceiveCount."""
    return policy is not None and receive_count >= policy.max_receive_count
