"""Topic and subscription attributes: which SNS attributes nimbus takes, how each is
checked, and what Get*Attributes reports beside the stored ones.

What nimbus cannot honour is refused by name rather than stored and ignored: FIFO
topics, server-side encryption (KMS), delivery status logging (the *Feedback* roles),
data protection, message archives, X-Ray's Active tracing, and Firehose roles.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from nimbus.sns.arns import invalid
from nimbus.sns.filter_policy import SCOPES, FilterPolicy

PROTOCOLS = ("lambda", "sqs", "http", "https")
# Protocols SNS has that nimbus does not deliver to.
OTHER_PROTOCOLS = ("email", "email-json", "sms", "application", "firehose")

TOPIC_SETTABLE = ("DisplayName", "Policy", "DeliveryPolicy", "SignatureVersion", "TracingConfig")
_UNSUPPORTED_TOPIC = {
    "FifoTopic": "FIFO topics are not supported by nimbus yet; create a standard topic",
    "ContentBasedDeduplication": "it applies to FIFO topics, which nimbus does not support yet",
    "FifoThroughputScope": "it applies to FIFO topics, which nimbus does not support yet",
    "ArchivePolicy": "it applies to FIFO topics, which nimbus does not support yet",
    "KmsMasterKeyId": "nimbus has no KMS: topics are not encrypted at rest",
    "DataProtectionPolicy": "message data protection is not supported by nimbus",
}
_FEEDBACK = ("Application", "Firehose", "HTTP", "Lambda", "SQS")
for _kind in _FEEDBACK:
    for _suffix in ("SuccessFeedbackRoleArn", "SuccessFeedbackSampleRate",
                    "FailureFeedbackRoleArn"):  # fmt: skip
        _UNSUPPORTED_TOPIC[f"{_kind}{_suffix}"] = (
            "delivery status logging to CloudWatch Logs is not supported by nimbus"
        )

SUBSCRIPTION_SETTABLE = (
    "DeliveryPolicy", "FilterPolicy", "FilterPolicyScope", "RawMessageDelivery", "RedrivePolicy",
)  # fmt: skip
_UNSUPPORTED_SUBSCRIPTION = {
    "SubscriptionRoleArn": "Firehose subscriptions are not supported by nimbus",
    "ReplayPolicy": "message replay applies to FIFO topics, which nimbus does not support yet",
}

# SNS's http(s) retry policy when neither the topic nor the subscription sets one.
DEFAULT_HTTP_RETRY = {
    "minDelayTarget": 20,
    "maxDelayTarget": 20,
    "numRetries": 3,
    "numMaxDelayRetries": 0,
    "numNoDelayRetries": 0,
    "numMinDelayRetries": 0,
    "backoffFunction": "linear",
}
BACKOFF_FUNCTIONS = ("linear", "arithmetic", "geometric", "exponential")


def unsupported(name: str, why: str) -> Exception:
    return invalid(f"Invalid parameter: {name}: {why}")


def default_policy(topic_arn: str, account: str) -> str:
    """The access policy SNS gives a new topic (stored and reported, not enforced)."""
    return json.dumps({
        "Version": "2008-10-17",
        "Id": "__default_policy_ID",
        "Statement": [{
            "Sid": "__default_statement_ID",
            "Effect": "Allow",
            "Principal": {"AWS": "*"},
            "Action": [
                "SNS:GetTopicAttributes", "SNS:SetTopicAttributes", "SNS:AddPermission",
                "SNS:RemovePermission", "SNS:DeleteTopic", "SNS:Subscribe",
                "SNS:ListSubscriptionsByTopic", "SNS:Publish",
            ],
            "Resource": topic_arn,
            "Condition": {"StringEquals": {"AWS:SourceOwner": account}},
        }],
    }, separators=(",", ":"))  # fmt: skip


def check_topic_attribute(name: str, value: str, *, creating: bool) -> str:
    """One topic attribute as stored, or SNS's InvalidParameter."""
    if name in _UNSUPPORTED_TOPIC:
        if name == "FifoTopic" and value.lower() == "false" and creating:
            return "false"
        raise unsupported(name, _UNSUPPORTED_TOPIC[name])
    if name not in TOPIC_SETTABLE:
        raise invalid("Invalid parameter: AttributeName")
    if name == "SignatureVersion" and value not in ("1", "2"):
        raise invalid(
            f"Invalid parameter: SignatureVersion: Invalid value [{value}]. Must be 1 or 2."
        )
    if name == "TracingConfig":
        if value == "Active":
            raise unsupported(
                name,
                "Active tracing is not supported by nimbus; PassThrough "
                "(the default) passes the publisher's trace header on",
            )
        if value != "PassThrough":
            raise invalid(f"Invalid parameter: TracingConfig: Invalid value [{value}]. Must be "
                          "PassThrough or Active.")  # fmt: skip
    if name == "Policy":
        _json_object(name, value)
    if name == "DeliveryPolicy":
        http_retry_policy(value, "DeliveryPolicy")
    return value


def _json_object(name: str, value: str) -> dict[str, Any]:
    try:
        doc = json.loads(value)
    except (ValueError, RecursionError) as exc:
        raise invalid(f"Invalid parameter: {name}: failed to parse JSON. {exc}") from None
    if not isinstance(doc, dict):
        raise invalid(f"Invalid parameter: {name}: must be a JSON object")
    return doc


def http_retry_policy(text: str | None, name: str = "DeliveryPolicy") -> dict[str, Any]:
    """The http retry policy a DeliveryPolicy sets (topic: under "http", subscription: at
    the top), SNS's default filling what it leaves out; InvalidParameter if malformed."""
    if not text:
        return dict(DEFAULT_HTTP_RETRY)
    doc = _json_object(name, text)
    policy = doc.get("http", doc)
    if not isinstance(policy, dict):
        raise invalid(f"Invalid parameter: {name}: http must be a JSON object")
    retry = policy.get("defaultHealthyRetryPolicy", policy.get("healthyRetryPolicy")) or {}
    if not isinstance(retry, dict):
        raise invalid(f"Invalid parameter: {name}: healthyRetryPolicy must be a JSON object")
    merged = {**DEFAULT_HTTP_RETRY, **retry}
    for key in DEFAULT_HTTP_RETRY:
        if key == "backoffFunction":
            continue
        value = merged[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise invalid(f"Invalid parameter: {name}: {key} must be a non-negative integer")
    if merged["minDelayTarget"] < 1 or merged["maxDelayTarget"] > 3600:
        raise invalid(f"Invalid parameter: {name}: delay targets must be 1 to 3600 seconds")
    if merged["minDelayTarget"] > merged["maxDelayTarget"]:
        raise invalid(
            f"Invalid parameter: {name}: minDelayTarget must not be more than maxDelayTarget"
        )
    if merged["numRetries"] > 100:
        raise invalid(f"Invalid parameter: {name}: numRetries must be 0 to 100")
    if merged["backoffFunction"] not in BACKOFF_FUNCTIONS:
        raise invalid(
            f"Invalid parameter: {name}: backoffFunction must be one of "
            f"{', '.join(BACKOFF_FUNCTIONS)}"
        )
    return merged


def retry_delay(policy: dict[str, Any], attempt: int) -> float | None:
    """Seconds before retry ``attempt`` (1-based) under ``policy``; None: no retries left.
    SNS's phases: immediate retries, retries at the minimum delay, a backoff from the
    minimum to the maximum delay, then retries at the maximum."""
    if attempt > policy["numRetries"]:
        return None
    no_delay, at_min = policy["numNoDelayRetries"], policy["numMinDelayRetries"]
    at_max = policy["numMaxDelayRetries"]
    low, high = float(policy["minDelayTarget"]), float(policy["maxDelayTarget"])
    if attempt <= no_delay:
        return 0.0
    if attempt <= no_delay + at_min:
        return low
    backoff = max(1, policy["numRetries"] - no_delay - at_min - at_max)
    step = attempt - no_delay - at_min
    if step > backoff:
        return high
    share = step / backoff
    function = policy["backoffFunction"]
    if function in ("exponential", "geometric"):
        return min(high, low * ((high / low) ** share))
    return low + (high - low) * share


@dataclass(frozen=True)
class RedrivePolicy:
    dead_letter_target_arn: str


def redrive_policy(value: str, prefix: str) -> RedrivePolicy | None:
    if not value:
        return None
    try:
        doc = json.loads(value)
    except (ValueError, RecursionError) as exc:
        raise invalid(f"{prefix}RedrivePolicy: failed to parse JSON. {exc}") from None
    target = doc.get("deadLetterTargetArn") if isinstance(doc, dict) else None
    if not isinstance(target, str):
        raise invalid(f"{prefix}RedrivePolicy: deadLetterTargetArn is missing")
    parts = target.split(":")
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sqs":
        raise invalid(f"{prefix}RedrivePolicy: deadLetterTargetArn is an invalid arn")
    return RedrivePolicy(target)


def check_subscription_attribute(name: str, value: str, protocol: str, *, subscribing: bool) -> str:
    """One subscription attribute as stored, or SNS's InvalidParameter (on Subscribe,
    its message says "Attributes Reason:")."""
    prefix = "Invalid parameter: Attributes Reason: " if subscribing else "Invalid parameter: "
    if name in _UNSUPPORTED_SUBSCRIPTION:
        raise unsupported(name, _UNSUPPORTED_SUBSCRIPTION[name])
    if name not in SUBSCRIPTION_SETTABLE:
        raise invalid("Invalid parameter: AttributeName")
    if name == "RawMessageDelivery":
        lowered = value.lower()
        if lowered not in ("true", "false"):
            raise invalid(
                f"{prefix}RawMessageDelivery: Invalid value [{value}]. Must be true or false."
            )
        if lowered == "true" and protocol == "lambda":
            raise invalid(f"{prefix}Delivery protocol [lambda] does not support raw message "
                          "delivery.")  # fmt: skip
        return lowered
    if name == "FilterPolicyScope":
        if value not in SCOPES:
            raise invalid(
                f"{prefix}FilterPolicyScope: Invalid value [{value}]. Please use either "
                f"MessageBody or MessageAttributes"
            )
        return value
    if name == "RedrivePolicy":
        redrive_policy(value, prefix)
        return value
    if name == "DeliveryPolicy":
        if protocol not in ("http", "https"):
            raise invalid(
                f"{prefix}DeliveryPolicy: Delivery policy can only be set for HTTP/HTTPS "
                "subscriptions"
            )
        http_retry_policy(value, "DeliveryPolicy")
        return value
    return value  # FilterPolicy: checked with its scope by check_filter


def check_filter(attributes: dict[str, str], *, subscribing: bool) -> FilterPolicy | None:
    """The subscription's filter policy as its attributes set it (checked)."""
    text = attributes.get("FilterPolicy")
    if not text:
        return None
    scope = attributes.get("FilterPolicyScope") or SCOPES[0]
    return FilterPolicy.parse(text, scope, subscribing=subscribing)
