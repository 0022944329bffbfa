"""Which log group each stored invocation log belongs to, and the group's streams and
events: what the CloudWatch Logs API (``api/cloudwatch_logs.py``) reads.

A group's members are the function versions whose effective LoggingConfig names it
(``/aws/lambda/<name>`` unless ``LogGroup`` says otherwise); a record of a version that no
longer exists counts in its function's ``$LATEST`` group. A function's group exists from
the function's creation (on Lambda, from its first log line), and goes with it: the logs
of a deleted function stay in the store until retention removes them, but no group shows
them.

Reads are blocking and scan the group's records in the asked time window (the store keeps
them per function, newest last): cheap for what a developer's nimbus holds, proportional
to the window's records for larger ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from nimbus.models import LATEST
from nimbus.observe.log_config import config_of
from nimbus.observe.log_events import LogEvent, events_of, stream_of
from nimbus.observe.logs import InvocationLog, LogStore
from nimbus.store.functions import FunctionStore

ALL = 10**9  # "every record": LogStore.read's limit when a whole window is wanted


@dataclass
class LogGroup:
    name: str
    creation_ms: int
    # function -> the versions of it that log here ("*" too: its unknown versions)
    members: dict[str, set[str]] = field(default_factory=dict)



@dataclass(frozen=True)
class StreamInfo:
    name: str
    first_ms: int
    last_ms: int
    last_ingestion_ms: int


class LogGroups:
    """Log groups over the function store and the invocation log store (blocking)."""

    def __init__(self, functions: FunctionStore, logs: LogStore) -> None:
        self.functions = functions
        self.logs = logs

    def groups(self) -> list[LogGroup]:
        """Every group, by name."""
        found: dict[str, LogGroup] = {}
        page = self.functions.list_functions(None, ALL, all_versions=True)
        # A group is as old as the oldest function logging to it (not its versions' last
        # change: an update must not make the group look new).
        created_at = self.functions.created_times()
        for version in page.items:
            name = config_of(version.extra, version.function_name).log_group
            created = _ms(created_at.get(version.function_name, version.last_modified))
            group = found.get(name)
            if group is None:
                group = found[name] = LogGroup(name, created)
            group.creation_ms = min(group.creation_ms, created)
            group.members.setdefault(version.function_name, set()).add(version.version)
            if version.version == LATEST:
                group.members[version.function_name].add("*")
        return [found[name] for name in sorted(found)]

    def group(self, name: str) -> LogGroup | None:
        return next((g for g in self.groups() if g.name == name), None)

    def records(self, group: LogGroup, start_ms: int = 0,
                end_ms: int | None = None) -> list[InvocationLog]:
        """The group's records with ``start_ms <= timestamp <= end_ms``, oldest first."""
        known: dict[str, set[str]] = {}
        for version in self.functions.list_functions(None, ALL, all_versions=True).items:
            known.setdefault(version.function_name, set()).add(version.version)
        out: list[InvocationLog] = []
        for function, versions in group.members.items():
            existing = known.get(function, set())
            for record in self.logs.read(function, start_ms, ALL):
                if end_ms is not None and record.timestamp_ms > end_ms:
                    continue
                if record.version in versions or (
                    "*" in versions and record.version not in existing
                ):
                    out.append(record)
        out.sort(key=lambda r: (r.timestamp_ms, r.request_id))
        return out

    def streams(self, group: LogGroup) -> list[StreamInfo]:
        """The group's streams (those with events), in no particular order."""
        spans: dict[str, list[int]] = {}
        for record in self.records(group):
            name = stream_of(record)
            span = spans.get(name)
            if span is None:
                spans[name] = [record.timestamp_ms, record.timestamp_ms]
            else:
                span[0] = min(span[0], record.timestamp_ms)
                span[1] = max(span[1], record.timestamp_ms)
        return [StreamInfo(name, first, last, last) for name, (first, last) in spans.items()]

    def events(
        self,
        group: LogGroup,
        start_ms: int = 0,
        end_ms: int | None = None,
        keep: Callable[[InvocationLog], bool] | None = None,
    ) -> list[LogEvent]:
        """The events of the group's records in the window (of those ``keep`` keeps),
        interleaved: by time, then stream, then their place in their stream."""
        found = [
            event
            for record in self.records(group, start_ms, end_ms)
            if keep is None or keep(record)
            for event in events_of(record)
        ]
        found.sort(key=lambda e: (e.timestamp, e.stream, e.request_id, e.line))
        return found


def _ms(stamp: str) -> int:
    """A FunctionConfiguration ``LastModified`` (``2024-01-31T12:00:00.000+0000``) in ms."""
    try:
        return int(datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() * 1000)
    except (TypeError, ValueError):
        return 0
