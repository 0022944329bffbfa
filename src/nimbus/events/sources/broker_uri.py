"""What the broker sources share: their URIs (split with a clear error, shown without
credentials) and the envelope of their records."""

from __future__ import annotations

from typing import Any
from urllib.parse import SplitResult, urlsplit

from nimbus.errors import InvalidParameterValue


def split(uri: str, label: str, expected: str) -> SplitResult:
    """``uri`` split, or InvalidParameterValue naming the form ``expected`` (a port that is
    not a number is found here: ``urlsplit`` checks it only when asked)."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise InvalidParameterValue(f"Invalid {label} URI {uri!r}: {exc}; {expected}") from None
    return parts


def netloc(parts: SplitResult) -> str:
    """Host and port without user and password: what records and messages may show."""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return host + (f":{parts.port}" if parts.port else "")


def envelope(kind: str, event_id: str, arn: str, region: str,
             body: dict[str, Any]) -> dict[str, Any]:
    """A record as the function sees it: Lambda's envelope members (as Kinesis records
    have them) around the broker's own ``body`` under ``kind``."""
    return {
        "eventSource": f"nimbus:{kind}",
        "eventVersion": "1.0",
        "eventName": f"nimbus:{kind}:record",
        "eventID": event_id,
        "eventSourceARN": arn,
        "awsRegion": region,
        kind: body,
    }
