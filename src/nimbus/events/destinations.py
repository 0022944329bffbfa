"""Destinations for async invocation results: another function, an SQS queue or SNS topic
of this nimbus, or an HTTP(S) webhook.

Lambda sends an *invocation record* to the OnSuccess / OnFailure destination::

    {"version": "1.0", "timestamp": "...", "requestContext": {"requestId", "functionArn",
     "condition", "approximateInvokeCount"}, "requestPayload": ..., "responseContext":
     {"statusCode", "executedVersion", "functionError"}, "responsePayload": ...}

A function destination is invoked asynchronously (its event is queued durably); a queue
gets the record as a message body (``nimbus.sqs``), a topic as a published message
(``nimbus.sns``); a webhook receives it as a JSON POST. EventBridge targets need a
service nimbus does not have, so they are refused when configured.

A webhook's host is resolved at delivery (it may be a DNS name, so it cannot be judged at
PutFunctionEventInvokeConfig): a loopback, link-local, private or otherwise non-public
address is refused unless ``webhook_allow`` allows it (``nimbus.net_policy``), and the
record takes the failure path of a destination that cannot be reached.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urlparse

import httpx

from nimbus import net_policy
from nimbus.config import FUNCTION_ARN, Config
from nimbus.errors import InvalidParameterValue
from nimbus.sqs.redrive import parse_queue_arn


@dataclass(frozen=True)
class Destination:
    """A parsed destination: exactly one of ``function``, ``queue``, ``topic`` or ``url``."""

    raw: str
    function: str | None = None
    qualifier: str | None = None
    url: str | None = None
    queue: str | None = None  # an SQS queue's name
    topic: str | None = None  # an SNS topic's ARN


def parse_destination(value: str, config: Config) -> Destination:
    match = FUNCTION_ARN.fullmatch(value)
    if match is not None:
        if match["region"] != config.region or match["account"] != config.account_id:
            raise InvalidParameterValue(
                f"Destination {value} is in another region or account; this nimbus serves "
                f"{config.region} / {config.account_id}."
            )
        return Destination(value, function=match["name"], qualifier=match["qualifier"])
    parsed = urlparse(value)
    if parsed.scheme in ("http", "https") and parsed.netloc:
        return Destination(value, url=value)
    service = value.split(":")[2] if value.startswith("arn:") and value.count(":") > 2 else ""
    if service == "sqs":
        queue = parse_queue_arn(value)
        if queue is None:
            raise InvalidParameterValue(
                f"The destination {value} is not a valid SQS queue ARN: expected "
                "arn:aws:sqs:REGION:ACCOUNT:NAME."
            )
        if queue.region != config.region or queue.account != config.account_id:
            raise InvalidParameterValue(
                f"Destination {value} is in another region or account; this nimbus serves "
                f"{config.region} / {config.account_id}."
            )
        return Destination(value, queue=queue.name)
    if service == "sns":
        parts = value.split(":")
        if len(parts) != 6 or not parts[5] or parts[5].endswith(".fifo"):
            raise InvalidParameterValue(
                f"The destination {value} is not a valid SNS topic ARN: expected "
                "arn:aws:sns:REGION:ACCOUNT:NAME of a standard topic."
            )
        if parts[3] != config.region or parts[4] != config.account_id:
            raise InvalidParameterValue(
                f"Destination {value} is in another region or account; this nimbus serves "
                f"{config.region} / {config.account_id}."
            )
        return Destination(value, topic=value)
    if service == "lambda":
        raise InvalidParameterValue(
            f"The destination {value} is not a valid Lambda function ARN: expected "
            "arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER], with a name of letters, "
            "digits, '-' and '_'."
        )
    if service:
        raise InvalidParameterValue(
            f"The destination {value} is a {service} ARN; nimbus can deliver to a Lambda "
            "function ARN, an SQS queue ARN, an SNS topic ARN or an http(s) webhook URL."
        )
    raise InvalidParameterValue(
        f"The destination {value} is neither a Lambda function ARN nor an http(s) URL "
        "(nor an SQS queue or SNS topic ARN)."
    )


def validate_destination(value: str, config: Config, where: str) -> None:
    try:
        parse_destination(value, config)
    except InvalidParameterValue as exc:
        raise InvalidParameterValue(f"{where}: {exc.message}") from exc


@lru_cache(maxsize=8)
def _policy(allow: tuple[str, ...]) -> net_policy.EgressPolicy:
    return net_policy.EgressPolicy.of(allow)


def egress_policy(config: Config) -> net_policy.EgressPolicy:
    """Where this nimbus's webhooks may go (``webhook_allow``), parsed once."""
    return _policy(tuple(config.webhook_allow))


async def post_webhook(client: httpx.AsyncClient, url: str, body: bytes,
                       headers: dict[str, str], config: Config) -> httpx.Response:
    """POST an invocation record to a webhook, only to an address the egress policy
    allows (and to that very address). Raises net_policy.EgressRefused (final: do not
    retry) or httpx errors."""
    return await net_policy.post(client, url, egress_policy(config), content=body,
                                 headers=headers)


def invocation_record(
    *,
    request_id: str,
    function_arn: str,
    condition: str,
    attempts: int,
    request_payload: bytes,
    status_code: int,
    executed_version: str | None,
    function_error: str | None,
    response_payload: bytes | None,
) -> dict[str, Any]:
    """Lambda's invocation record for destinations, field for field."""
    response: dict[str, Any] = {"statusCode": status_code}
    if executed_version is not None:
        response["executedVersion"] = executed_version
    if function_error is not None:
        response["functionError"] = function_error
    record: dict[str, Any] = {
        "version": "1.0",
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "requestContext": {
            "requestId": request_id,
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": attempts,
        },
        "requestPayload": _json_or_text(request_payload),
        "responseContext": response,
    }
    if response_payload is not None:
        record["responsePayload"] = _json_or_text(response_payload)
    return record


def _json_or_text(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return raw.decode("utf-8", "replace")
