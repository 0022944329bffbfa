"""What S3 accepts as a bucket name and an object key, checked before anything is stored."""

from __future__ import annotations

import ipaddress
import re

from nimbus.protocol.errors import AwsError
from nimbus.s3.errors import invalid_argument, invalid_bucket_name

MAX_KEY_BYTES = 1024
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def check_bucket_name(name: str) -> None:
    """S3's general purpose bucket naming rules; raise ``InvalidBucketName``."""
    if not 3 <= len(name) <= 63:
        raise invalid_bucket_name(name, "a bucket name must be 3 to 63 characters long.")
    if not _BUCKET.fullmatch(name):
        raise invalid_bucket_name(
            name,
            "use only lower-case letters, digits, dots and hyphens, beginning and ending "
            "with a letter or digit.",
        )
    if ".." in name or ".-" in name or "-." in name:
        raise invalid_bucket_name(name, "a dot must not be next to another dot or to a hyphen.")
    if name.startswith(_RESERVED_PREFIXES) or name.endswith(_RESERVED_SUFFIXES):
        raise invalid_bucket_name(name, "that prefix or suffix is reserved by S3.")
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return
    raise invalid_bucket_name(name, "a bucket name must not look like an IP address.")


def check_key(key: str) -> None:
    """An object key: 1 to 1024 bytes of UTF-8."""
    if not key:
        raise invalid_argument("An object key must not be empty.", "key", key)
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise invalid_argument(
            "An object key must be valid UTF-8.", "key", key.encode("utf-8", "replace").decode()
        ) from None
    if size > MAX_KEY_BYTES:
        raise AwsError(
            "KeyTooLongError",
            "Your key is too long",
            status=400,
            Size=str(size),
            MaxSizeAllowed=str(MAX_KEY_BYTES),
        )
