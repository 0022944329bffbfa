"""Messages and the records that cross the SQS domain's boundary: what a send carries
and how SQS checks it (body characters, message attributes, size), receipt handles, and
the ``Message`` / ``QueueInfo`` / ``QueueCounts`` records the API and event sources use.
"""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from nimbus.errors import (
    InvalidMessageContents,
    ReceiptHandleIsInvalid,
    SqsInvalidParameterValue,
    SqsMissingParameter,
)

# SQS's allowed body characters: #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD |
# #x10000 to #x10FFFF.
_BAD_CHARS = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ATTR_NAME = re.compile(r"[\w.\-\u00c0-\u017f]+", re.ASCII)
_ATTR_TYPE = re.compile(r"(String|Number|Binary)(\..+)?")
_NUMBER = re.compile(
    r"[+-]?(?=\.?[0-9])(?P<int>[0-9]*)(?:\.(?P<frac>[0-9]*))?(?:[eE][+-]?[0-9]{1,4})?"
)
MAX_MESSAGE_ATTRIBUTES = 10
# The system attributes ReceiveMessage reports (AttributeNames / MessageSystemAttributeNames).
SYSTEM_ATTRIBUTES = (
    "SenderId",
    "SentTimestamp",
    "ApproximateReceiveCount",
    "ApproximateFirstReceiveTimestamp",
    "SequenceNumber",
    "MessageDeduplicationId",
    "MessageGroupId",
    "AWSTraceHeader",
    "DeadLetterQueueSourceArn",
)
SENDER_ID = "AIDAIENQZJOLO23YVJ4VO"  # one identity: nimbus has no IAM users


@dataclass(frozen=True)
class QueueInfo:
    """A queue as the domain's users see it."""

    name: str
    arn: str
    url: str
    fifo: bool
    visibility_timeout: int
    attributes: dict[str, str]  # the settable ones in effect (defaults included)


@dataclass(frozen=True)
class QueueCounts:
    visible: int
    in_flight: int
    delayed: int
    oldest_sent_ms: int | None


@dataclass
class Message:
    """A received message, in the SQS API's terms."""

    message_id: str
    receipt_handle: str
    body: str
    md5_of_body: str
    attributes: dict[str, str]
    message_attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    md5_of_message_attributes: str | None = None
    sent_ms: int = 0


@dataclass(frozen=True)
class SendResult:
    message_id: str
    md5_of_body: str
    md5_of_message_attributes: str | None = None
    md5_of_system_attributes: str | None = None
    sequence_number: str | None = None


@dataclass
class Outgoing:
    """One message to send, as SendMessage or a SendMessageBatch entry gives it."""

    body: str
    message_attributes: dict[str, dict[str, Any]] | None = None
    delay_seconds: int | None = None
    group_id: str | None = None
    dedup_id: str | None = None
    trace_header: str | None = None


def check_body(body: str | None) -> str:
    if not body:
        raise SqsMissingParameter("The request must contain the parameter MessageBody.")
    if _BAD_CHARS.search(body):
        raise invalid_contents()
    return body


def invalid_contents() -> InvalidMessageContents:
    return InvalidMessageContents(
        "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 to "
        "#xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF"
    )


def check_message_attributes(
    attributes: dict[str, dict[str, Any]] | None,
) -> dict[str, dict[str, Any]] | None:
    """Validate message attributes and return them with only the members that count
    (DataType and its value), as SQS stores them."""
    if not attributes:
        return None
    if len(attributes) > MAX_MESSAGE_ATTRIBUTES:
        raise SqsInvalidParameterValue(
            f"Number of message attributes [{len(attributes)}] exceeds the allowed maximum "
            f"[{MAX_MESSAGE_ATTRIBUTES}]."
        )
    out: dict[str, dict[str, Any]] = {}
    for name, attr in attributes.items():
        if len(name.encode()) >= 256:
            raise SqsInvalidParameterValue(
                "Message (user) attribute names must be shorter than 256 Bytes"
            )
        if not _ATTR_NAME.fullmatch(name):
            raise SqsInvalidParameterValue(
                "Message (user) attributes name can only contain upper and lower score "
                "characters, digits, periods, hyphens and underscores. "
            )
        lowered = name.lower()
        if lowered.startswith(("aws.", "amazon.")) or name.startswith(".") or name.endswith("."):
            raise SqsInvalidParameterValue(
                "You can't use message attribute names beginning with 'AWS.' or 'Amazon.'. "
                "These strings are reserved for internal use. Additionally, they cannot start "
                "or end with '.'."
            )
        data_type = attr.get("DataType")
        if not data_type:
            raise SqsInvalidParameterValue(
                f"The message attribute '{name}' must contain non-empty message attribute type."
            )
        if not _ATTR_TYPE.fullmatch(data_type):
            raise SqsInvalidParameterValue(
                f"The type of message (user) attribute '{name}' is invalid. You must use only "
                "the following supported type prefixes: Binary, Number, String."
            )
        if data_type.startswith("Binary"):
            value = attr.get("BinaryValue")
            if not value:
                raise SqsInvalidParameterValue(
                    f"Message (user) attribute '{name}' must contain a non-empty value of type "
                    "'Binary'."
                )
            out[name] = {"DataType": data_type, "BinaryValue": bytes(value)}
        else:
            text = attr.get("StringValue")
            if not text:
                kind = "Number" if data_type.startswith("Number") else "String"
                raise SqsInvalidParameterValue(
                    f"Message (user) attribute '{name}' must contain a non-empty value of type "
                    f"'{kind}'."
                )
            if data_type.startswith("Number"):
                _check_number(name, text)
            if _BAD_CHARS.search(text):
                raise invalid_contents()
            out[name] = {"DataType": data_type, "StringValue": text}
    return out


def _check_number(name: str, text: str) -> None:
    """SQS's Number: a decimal of up to 38 significant digits between 10^-128 and
    10^+126 (not float()'s "nan", "inf", "1_000" or other scripts' digits)."""
    match = _NUMBER.fullmatch(text.strip())
    fits = False
    if match is not None:
        digits = (match["int"] + (match["frac"] or "")).strip("0")
        value = Decimal(text.strip())
        fits = len(digits) <= 38 and (
            value == 0 or Decimal("1e-128") <= abs(value) <= Decimal("1e126")
        )
    if not fits:
        raise SqsInvalidParameterValue(
            f"Can't cast the value of message (user) attribute '{name}' to a number."
        )


def size_of(body: str, attributes: dict[str, dict[str, Any]] | None) -> int:
    """What counts toward MaximumMessageSize: the body and each attribute's name, type
    and value, in bytes."""
    size = len(body.encode("utf-8"))
    for name, attr in (attributes or {}).items():
        size += len(name.encode()) + len(attr["DataType"].encode())
        value = attr.get("BinaryValue", attr.get("StringValue", ""))
        size += len(value) if isinstance(value, bytes) else len(str(value).encode())
    return size


def stored_attributes(attributes: dict[str, dict[str, Any]] | None) -> dict | None:
    """Message attributes as JSON can hold them (binary values in base64)."""
    if not attributes:
        return None
    out = {}
    for name, attr in attributes.items():
        if "BinaryValue" in attr:
            encoded = base64.b64encode(attr["BinaryValue"]).decode()
            out[name] = {"DataType": attr["DataType"], "BinaryValue": encoded}
        else:
            out[name] = dict(attr)
    return out


def loaded_attributes(stored: dict | None) -> dict[str, dict[str, Any]]:
    if not stored:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for name, attr in stored.items():
        if "BinaryValue" in attr:
            out[name] = {
                "DataType": attr["DataType"],
                "BinaryValue": base64.b64decode(attr["BinaryValue"]),
            }
        else:
            out[name] = dict(attr)
    return out


# -- receipt handles --------------------------------------------------------------------


@dataclass(frozen=True)
class Receipt:
    """What a receipt handle names: one receive of one message of one queue."""

    queue: str
    row: int
    token: str


def new_token() -> str:
    return secrets.token_hex(16)


def encode_receipt(queue: str, row: int, token: str) -> str:
    raw = f"{queue}:{row}:{token}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_receipt(handle: str, queue: str) -> Receipt:
    """The receive a handle names, or SQS's ReceiptHandleIsInvalid (also for a handle
    of another queue)."""
    try:
        raw = base64.urlsafe_b64decode(handle + "=" * (-len(handle) % 4)).decode()
        name, row, token = raw.split(":")
        receipt = Receipt(name, int(row), token)
    except (ValueError, UnicodeDecodeError):
        receipt = None
    if receipt is None or receipt.queue != queue or len(receipt.token) != 32:
        raise ReceiptHandleIsInvalid(
            f'The input receipt handle "{handle}" is not a valid receipt handle.'
        )
    return receipt
