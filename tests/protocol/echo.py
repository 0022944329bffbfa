"""A test-only SQS: GetQueueUrl computed from the request, nothing stored. It proves the
live path (routing, auth, parsing, serialising) without the SQS engineer's domain."""

from __future__ import annotations

from typing import Any

from nimbus.protocol.errors import AwsError
from nimbus.protocol.service import AwsService, RequestContext


async def get_queue_url(context: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name = params["QueueName"]
    if name == "missing":
        raise AwsError("QueueDoesNotExist", "The specified queue does not exist.")
    if name == "crash":
        raise RuntimeError("a handler bug")
    owner = params.get("QueueOwnerAWSAccountId", context.account_id)
    return {"QueueUrl": f"{context.base_url}/{owner}/{name}"}


async def send_message(context: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    # Echoes what the handler was given, so the test sees the parsed input.
    attributes = params.get("MessageAttributes", {})
    return {
        "MessageId": f"{params['QueueUrl']}|{params['MessageBody']}|{params.get('DelaySeconds')}",
        "MD5OfMessageBody": ",".join(
            f"{k}={v.get('StringValue') or v.get('BinaryValue')!r}"
            for k, v in sorted(attributes.items())
        ),
        "SequenceNumber": f"{context.protocol}:{context.region}",
    }


ECHO_SQS = AwsService("sqs", {"GetQueueUrl": get_queue_url, "SendMessage": send_message})
