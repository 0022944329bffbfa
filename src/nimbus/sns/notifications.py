"""What Publish takes and what each kind of endpoint gets.

``check_publication`` applies SNS's checks to one message (its text, subject, structure
and message attributes, in SNS's words). ``render`` turns an accepted message into what one
subscription is owed:

- sqs and http(s): SNS's JSON envelope (``Type``, ``MessageId``, ``TopicArn``,
  ``Subject`` when there is one, ``Message``, ``Timestamp``, ``SignatureVersion``,
  ``Signature``, ``SigningCertURL``, ``UnsubscribeURL``, ``MessageAttributes`` when there
  are any), or with RawMessageDelivery the message itself (an SQS message keeps the
  message attributes as its own);
- lambda: Lambda's SNS event, ``{"Records": [{"EventVersion": "1.0",
  "EventSubscriptionArn", "EventSource": "aws:sns", "Sns": {...}}]}``, whose ``Sns`` is
  the envelope with ``SigningCertUrl`` / ``UnsubscribeUrl`` spelled as Lambda spells
  them, ``Subject`` null when there is none and ``MessageAttributes`` always present.

With ``MessageStructure=json`` each protocol gets its own key's text, else ``default``.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

from nimbus.protocol.errors import AwsError
from nimbus.sns.arns import invalid
from nimbus.sns.signing import Signer

MAX_MESSAGE_BYTES = 262_144
MAX_SUBJECT = 100
_ATTR_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_ATTR_TYPE = re.compile(r"(String|Number|Binary)(\..+)?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def value_invalid(message: str) -> AwsError:
    """SNS's ParameterValueInvalid (bad message attributes)."""
    return AwsError("ParameterValueInvalid", message)


@dataclass(frozen=True)
class Publication:
    """One accepted message, before fan-out."""

    message: str
    subject: str | None = None
    # MessageStructure=json: the text for each protocol ("default" for the others).
    structure: dict[str, str] | None = None
    # MessageAttributes as SNS keeps them: {"DataType", "StringValue" | "BinaryValue"
    # (base64 text)}.
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)
    group_id: str | None = None  # standard topics pass it on to SQS subscriptions only
    trace_header: str | None = None

    def text_for(self, protocol: str) -> str:
        if self.structure is None:
            return self.message
        return self.structure.get(protocol, self.structure["default"])


def check_publication(
    message: str | None,
    subject: str | None,
    structure: str | None,
    attributes: dict[str, dict[str, Any]] | None,
    group_id: str | None = None,
    trace_header: str | None = None,
) -> Publication:
    """A Publish (or PublishBatch entry) as SNS checks it."""
    if not message:
        raise invalid("Invalid parameter: Empty message")
    if subject is not None and (
        not subject.strip() or len(subject) >= MAX_SUBJECT or _CONTROL.search(subject)
    ):
        raise invalid("Invalid parameter: Subject")
    parsed: dict[str, str] | None = None
    if structure is not None:
        if structure != "json":
            raise invalid("Invalid parameter: MessageStructure")
        parsed = _structure(message)
    checked = check_attributes(attributes or {})
    if size_of(message, checked) > MAX_MESSAGE_BYTES:
        raise invalid("Invalid parameter: Message too long")
    if group_id is not None and not 1 <= len(group_id) <= 128:
        raise invalid("Invalid parameter: MessageGroupId must be 1 to 128 characters long")
    return Publication(message, subject, parsed, checked, group_id, trace_header)


def _structure(message: str) -> dict[str, str]:
    try:
        doc = json.loads(message)
    except (ValueError, RecursionError):
        raise invalid("Invalid parameter: Message Structure - JSON message body failed to "
                      "parse") from None  # fmt: skip
    if not isinstance(doc, dict) or not isinstance(doc.get("default"), str):
        raise invalid("Invalid parameter: Message Structure - No default entry in JSON message "
                      "body")  # fmt: skip
    # Keys with other than text values are ignored, as SNS does.
    return {k: v for k, v in doc.items() if isinstance(v, str)}


def check_attributes(attributes: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    """MessageAttributes as SNS checks them (its words), binary values as base64."""
    out: dict[str, dict[str, str]] = {}
    for name, attr in attributes.items():
        if len(name.encode()) >= 256:
            raise value_invalid("Length of message attribute name must be less than 256 bytes.")
        bad = re.search(r"[^A-Za-z0-9_.-]", name)
        if bad is not None:
            raise value_invalid(
                f"Invalid non-alphanumeric character '#x{ord(bad[0]):X}' was found in the "
                "message attribute name. Can only include alphanumeric characters, hyphens, "
                "underscores, or dots."
            )
        if name.lower().startswith(("aws.", "amazon.")):
            raise value_invalid(
                f"The message attribute name '{name}' is reserved: names may not start with "
                "'AWS.' or 'Amazon.'."
            )
        if name.startswith(".") or name.endswith(".") or ".." in name:
            raise value_invalid(
                f"The message attribute name '{name}' may not start or end with a dot, nor "
                "contain two dots in a row."
            )
        data_type = attr.get("DataType") or ""
        if not _ATTR_TYPE.fullmatch(data_type):
            raise value_invalid(
                f"The message attribute '{name}' has an invalid message attribute type, the set "
                "of supported type prefixes is Binary, Number, and String."
            )
        kind = data_type.split(".", 1)[0]
        string, binary = attr.get("StringValue"), attr.get("BinaryValue")
        if kind == "Binary":
            if string is not None and binary is None:
                raise value_invalid(
                    f"The message attribute '{name}' with type 'Binary' must use field 'Binary'."
                )
            if not binary:
                raise value_invalid(
                    f"The message attribute '{name}' must contain non-empty message attribute "
                    "value for message attribute type 'Binary'."
                )
            out[name] = {"DataType": data_type,
                         "BinaryValue": base64.b64encode(bytes(binary)).decode()}  # fmt: skip
            continue
        if binary is not None and string is None:
            raise value_invalid(
                f"The message attribute '{name}' with type '{kind}' must use field 'String'."
            )
        if not string:
            raise value_invalid(
                f"The message attribute '{name}' must contain non-empty message attribute value "
                f"for message attribute type '{kind}'."
            )
        if kind == "Number":
            _check_number(name, string)
        if data_type == "String.Array":
            _check_array(name, string)
        out[name] = {"DataType": data_type, "StringValue": string}
    return out


def _check_number(name: str, text: str) -> None:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite() or "_" in text:
        raise value_invalid(f"Could not cast message attribute '{name}' value to number.")


def _check_array(name: str, text: str) -> None:
    try:
        items = json.loads(text)
    except (ValueError, RecursionError):
        items = None
    if not isinstance(items, list) or any(isinstance(i, dict | list) for i in items):
        raise value_invalid(
            f"The message attribute '{name}' with type 'String.Array' must be a JSON array of "
            "strings, numbers, true, false or null."
        )


def size_of(message: str, attributes: dict[str, dict[str, str]]) -> int:
    size = len(message.encode())
    for name, attr in attributes.items():
        value = attr.get("StringValue")
        raw = base64.b64decode(attr["BinaryValue"]) if value is None else value.encode()
        size += len(name.encode()) + len(attr["DataType"].encode()) + len(raw)
    return size


def timestamp(ms: int) -> str:
    """SNS's Timestamp: ISO 8601 with milliseconds, UTC."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def envelope_attributes(attributes: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """Message attributes as the envelope carries them: {"Type", "Value"}."""
    return {
        name: {"Type": attr["DataType"],
               "Value": attr.get("StringValue", attr.get("BinaryValue", ""))}
        for name, attr in attributes.items()
    }  # fmt: skip


def unsubscribe_url(base_url: str, subscription_arn: str) -> str:
    return f"{base_url}/?Action=Unsubscribe&SubscriptionArn={quote(subscription_arn, safe=':')}"


@dataclass(frozen=True)
class Rendering:
    """How a topic's messages are signed and linked: its SignatureVersion, the signer,
    and the URL of this nimbus (for SigningCertURL, UnsubscribeURL, SubscribeURL)."""

    signer: Signer
    base_url: str
    signature_version: str = "1"


def notification(
    how: Rendering,
    publication: Publication,
    protocol: str,
    *,
    message_id: str,
    topic_arn: str,
    subscription_arn: str,
    sent_ms: int,
) -> dict[str, Any]:
    """The signed envelope of ``publication`` for one subscription."""
    doc: dict[str, Any] = {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": topic_arn,
    }
    if publication.subject is not None:
        doc["Subject"] = publication.subject
    doc["Message"] = publication.text_for(protocol)
    doc["Timestamp"] = timestamp(sent_ms)
    doc["SignatureVersion"] = how.signature_version
    doc["Signature"] = how.signer.sign(doc, how.signature_version)
    doc["SigningCertURL"] = how.signer.cert_url(how.base_url)
    doc["UnsubscribeURL"] = unsubscribe_url(how.base_url, subscription_arn)
    if publication.attributes:
        doc["MessageAttributes"] = envelope_attributes(publication.attributes)
    return doc


def lambda_event(envelope: dict[str, Any], subscription_arn: str) -> dict[str, Any]:
    """Lambda's SNS event around one envelope."""
    sns = {
        "Type": envelope["Type"],
        "MessageId": envelope["MessageId"],
        "TopicArn": envelope["TopicArn"],
        "Subject": envelope.get("Subject"),
        "Message": envelope["Message"],
        "Timestamp": envelope["Timestamp"],
        "SignatureVersion": envelope["SignatureVersion"],
        "Signature": envelope["Signature"],
        "SigningCertUrl": envelope["SigningCertURL"],
        "UnsubscribeUrl": envelope["UnsubscribeURL"],
        "MessageAttributes": envelope.get("MessageAttributes", {}),
    }
    return {
        "Records": [{
            "EventVersion": "1.0",
            "EventSubscriptionArn": subscription_arn,
            "EventSource": "aws:sns",
            "Sns": sns,
        }]
    }  # fmt: skip


def confirmation(
    how: Rendering,
    kind: str,
    *,
    message_id: str,
    topic_arn: str,
    subscription_arn: str,
    token: str,
    sent_ms: int,
) -> dict[str, Any]:
    """A SubscriptionConfirmation or UnsubscribeConfirmation message, signed."""
    if kind == "SubscriptionConfirmation":
        text = (
            f"You have chosen to subscribe to the topic {topic_arn}.\nTo confirm the "
            "subscription, visit the SubscribeURL included in this message."
        )
    else:
        text = (
            f"You have chosen to deactivate subscription {subscription_arn}.\nTo cancel this "
            "operation and restore the subscription, visit the SubscribeURL included in this "
            "message."
        )
    doc: dict[str, Any] = {
        "Type": kind,
        "MessageId": message_id,
        "Token": token,
        "TopicArn": topic_arn,
        "Message": text,
        "SubscribeURL": (
            f"{how.base_url}/?Action=ConfirmSubscription&TopicArn={quote(topic_arn, safe=':')}"
            f"&Token={token}"
        ),
        "Timestamp": timestamp(sent_ms),
        "SignatureVersion": how.signature_version,
    }
    doc["Signature"] = how.signer.sign(doc, how.signature_version)
    doc["SigningCertURL"] = how.signer.cert_url(how.base_url)
    return doc


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False)
