"""Stored invocation logs seen as CloudWatch Logs sees Lambda's: log groups, streams, events.

nimbus keeps one record per invocation (``logs.InvocationLog``: its whole log text); this
module is the read side's other view of them:

- a **log group** per function, ``/aws/lambda/<name>`` or the ``LoggingConfig.LogGroup``
  of the version that ran (several functions may share a custom group);
- a **log stream** per execution environment, named as Lambda names it
  (``YYYY/MM/DD/[<version>]<32 hex>``, what the function saw as
  ``AWS_LAMBDA_LOG_STREAM_NAME``); an invocation whose environment never started (its
  init failed before one existed) gets a stream of its own named the same way;
- a **log event** per line of an invocation's text, each with the level it says (a JSON
  line's ``"level"``; a text line's leading ``[ERROR]`` / ``WARNING:``...; else INFO).

nimbus captures a function's output per invocation, so every event of an invocation has
the time the invocation's log was taken (its end) as both ``timestamp`` and
``ingestionTime``: events then never arrive behind ones already read, which is what
polling readers (``aws logs tail --follow``, ``nimbus logs -f``) count on.
"""

from __future__ import annotations

import hashlib
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from nimbus import codec
from nimbus.observe.logs import InvocationLog

LEVELS = {
    "TRACE": "TRACE", "DEBUG": "DEBUG", "INFO": "INFO", "WARN": "WARN", "WARNING": "WARN",
    "ERROR": "ERROR", "FATAL": "FATAL", "CRITICAL": "FATAL",
}


@dataclass(frozen=True)
class LogEvent:
    """One line of one invocation's log."""

    function_name: str
    version: str
    request_id: str
    stream: str
    timestamp: int  # ms since the epoch
    ingestion_time: int
    message: str
    level: str
    line: int  # its index in the invocation's text

    @property
    def key(self) -> tuple[int, str, int]:
        """Its place in its stream: streams are read in this order."""
        return (self.timestamp, self.request_id, self.line)

    @property
    def event_id(self) -> str:
        """CloudWatch's eventId: digits, unique in the group, stable across reads."""
        return f"{self.timestamp:020d}{zlib.crc32(self.request_id.encode()):010d}{self.line:06d}"

    def as_dict(self) -> dict[str, object]:
        """What ``nimbus logs --json`` prints and ``/_nimbus/functions/{name}/logs`` sends."""
        return {
            "timestamp": iso(self.timestamp),
            "timestampMs": self.timestamp,
            "function": self.function_name,
            "version": self.version,
            "requestId": self.request_id,
            "level": self.level,
            "stream": self.stream,
            "message": self.message,
        }


def iso(ms: int) -> str:
    """``2024-01-31T12:00:00.123Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def stream_of(record: InvocationLog) -> str:
    """The record's log stream (see the module docstring for records without one)."""
    if record.log_stream:
        return record.log_stream
    day = time.strftime("%Y/%m/%d", time.gmtime(record.timestamp_ms / 1000))
    digest = hashlib.sha256(record.request_id.encode()).hexdigest()[:32]
    return f"{day}/[{record.version}]{digest}"


REPORT = "REPORT RequestId: "
XRAY = "XRAY TraceId: "


def events_of(record: InvocationLog) -> list[LogEvent]:
    """The invocation's lines as events, in order."""
    stream = stream_of(record)
    lines = record.text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    # Lambda's REPORT of a traced invocation is one event over two lines.
    if len(lines) >= 2 and lines[-1].startswith(XRAY) and lines[-2].startswith(REPORT):
        lines[-2:] = [f"{lines[-2]}\n{lines[-1]}"]
    return [
        LogEvent(
            function_name=record.function_name,
            version=record.version,
            request_id=record.request_id,
            stream=stream,
            timestamp=record.timestamp_ms,
            ingestion_time=record.timestamp_ms,
            message=line,
            level=level_of(line),
            line=index,
        )
        for index, line in enumerate(lines)
    ]


def events(records: Iterable[InvocationLog]) -> list[LogEvent]:
    return [event for record in records for event in events_of(record)]


def level_of(line: str) -> str:
    """A line's level: a JSON object's ``"level"`` (platform events: INFO, WARN when their
    status is not success), else a level word leading a text line, else INFO."""
    stripped = line.lstrip()
    if stripped.startswith("{"):
        try:
            record = codec.loads(stripped)
        except (ValueError, RecursionError):
            record = None
        if isinstance(record, dict):
            level = record.get("level")
            if isinstance(level, str):
                return LEVELS.get(level.upper(), "INFO")
            kind, body = record.get("type"), record.get("record")
            if isinstance(kind, str) and kind.startswith("platform.") and isinstance(body, dict):
                status = body.get("status")
                return "WARN" if status not in (None, "success") else "INFO"
            return "INFO"
    # Lambda's Python text format "[ERROR]\t<time>\t<id>\t...", logging's "ERROR:root:...",
    # "WARNING ..." and the like: the first word decides.
    first = stripped.split(None, 1)[0] if stripped else ""
    word = first.strip("[]").split(":", 1)[0].upper()
    return LEVELS.get(word, "INFO")
