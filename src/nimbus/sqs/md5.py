"""The digests SQS returns with messages, computed exactly as SQS does: botocore checks
MD5OfBody / MD5OfMessageBody and MD5OfMessageAttributes against what it sent or
received, and raises if they differ.

MD5OfMessageAttributes covers the attributes sorted by name; each contributes its name,
its DataType, a transport byte (1: String and Number, 2: Binary) and its value, every
string and value prefixed with its length as a 4-byte big-endian integer.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from typing import Any

STRING_TRANSPORT = 1
BINARY_TRANSPORT = 2


def md5_of_body(body: str) -> str:
    return hashlib.md5(body.encode("utf-8")).hexdigest()


def _sized(data: bytes) -> bytes:
    return struct.pack("!I", len(data)) + data


def md5_of_attributes(attributes: Mapping[str, Mapping[str, Any]] | None) -> str | None:
    """The digest of message (or message system) attributes in the API's shape, with
    BinaryValue as bytes; None when there are none (SQS then omits the member)."""
    if not attributes:
        return None
    digest = hashlib.md5()
    for name in sorted(attributes):
        attr = attributes[name]
        data_type = str(attr["DataType"])
        digest.update(_sized(name.encode("utf-8")))
        digest.update(_sized(data_type.encode("utf-8")))
        if data_type.startswith("Binary"):
            digest.update(bytes([BINARY_TRANSPORT]))
            digest.update(_sized(bytes(attr["BinaryValue"])))
        else:
            digest.update(bytes([STRING_TRANSPORT]))
            digest.update(_sized(str(attr["StringValue"]).encode("utf-8")))
    return digest.hexdigest()
