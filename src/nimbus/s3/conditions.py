"""Conditional requests: ``If-Match``, ``If-None-Match``, ``If-Modified-Since`` and
``If-Unmodified-Since`` on reads (412 or 304), their ``x-amz-copy-source-*`` forms on a
copy's source, and ``If-Match`` / ``If-None-Match: *`` on writes (412, checked in the
write's transaction).

Reads check in S3's order: If-Match, If-Unmodified-Since (skipped when If-Match held),
If-None-Match, If-Modified-Since (skipped when If-None-Match was given); a date in the
future is ignored, and dates compare at the second (Last-Modified's precision).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from nimbus.protocol.errors import AwsError
from nimbus.s3.errors import no_such_key, precondition_failed
from nimbus.s3.records import ObjectInfo


class NotModified(Exception):
    """A read whose condition says the client's copy is current: 304, no body."""

    def __init__(self, info: ObjectInfo) -> None:
        super().__init__("Not Modified")
        self.info = info


@dataclass(frozen=True)
class ReadConditions:
    if_match: str | None = None
    if_none_match: str | None = None
    if_modified_since: datetime | None = None
    if_unmodified_since: datetime | None = None
    prefix: str = ""  # "x-amz-copy-source-" for a copy's source: how the header is named

    def check(self, info: ObjectInfo, now_ms: int) -> None:
        """Raise ``PreconditionFailed`` (412) or ``NotModified`` (304); else return."""
        seconds = info.last_modified_ms // 1000
        now_s = now_ms // 1000
        if self.if_match is not None:
            if not etag_matches(self.if_match, info.etag):
                raise precondition_failed(self._name("If-Match"))
        elif self.if_unmodified_since is not None:
            since = int(self.if_unmodified_since.timestamp())
            if since <= now_s and seconds > since:
                raise precondition_failed(self._name("If-Unmodified-Since"))
        if self.if_none_match is not None:
            if etag_matches(self.if_none_match, info.etag):
                self._not_modified(info, "If-None-Match")
        elif self.if_modified_since is not None:
            since = int(self.if_modified_since.timestamp())
            if since <= now_s and seconds <= since:
                self._not_modified(info, "If-Modified-Since")

    def _not_modified(self, info: ObjectInfo, header: str) -> None:
        if self.prefix:  # a copy's source: S3 answers 412 where a read answers 304
            raise precondition_failed(self._name(header))
        raise NotModified(info)

    def _name(self, header: str) -> str:
        return f"{self.prefix}{header}"


@dataclass(frozen=True)
class WriteConditions:
    if_match: str | None = None
    if_none_match: str | None = None

    def check(self, key: str, current: str | None) -> None:
        """``current``: the ETag of the object the write would replace (None: none)."""
        if self.if_none_match is not None and current is not None:
            raise precondition_failed("If-None-Match")
        if self.if_match is not None:
            if current is None:
                raise no_such_key(key)
            if not etag_matches(self.if_match, current):
                raise precondition_failed("If-Match")

    @classmethod
    def of(cls, if_match: str | None, if_none_match: str | None) -> WriteConditions:
        if if_none_match is not None and if_none_match.strip() != "*":
            raise AwsError(
                "NotImplemented",
                "A header you provided implies functionality that is not implemented: "
                "If-None-Match on a write takes only '*' (create only if absent).",
                status=501,
                Header="If-None-Match",
            )
        return cls(if_match, if_none_match)

    def __bool__(self) -> bool:
        return self.if_match is not None or self.if_none_match is not None


def etag_matches(condition: str, etag: str) -> bool:
    """Whether an If-Match / If-None-Match list names ``etag`` (quotes optional, ``*``
    matches any, ``W/`` weak tags compare by value)."""
    for item in condition.split(","):
        tag = item.strip()
        if tag == "*":
            return True
        tag = tag.removeprefix("W/").strip('"')
        if tag == etag:
            return True
    return False
