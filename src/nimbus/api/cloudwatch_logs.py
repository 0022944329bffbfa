"""A CloudWatch Logs subset (botocore's ``logs``, json protocol, ``Logs_20140328.*``) over
the stored invocation logs, so ``aws logs`` and boto3's ``logs`` client read nimbus'
function logs as they read Lambda's.

Served: DescribeLogGroups, DescribeLogStreams, GetLogEvents, FilterLogEvents (CloudWatch's
filter pattern syntax, ``observe/log_filter.py``), and the retention calls where they are
true (``PutRetentionPolicy`` with the server's own ``log_retention_days``,
``DeleteRetentionPolicy`` when it is 0). Refused clearly: any other retention (nimbus keeps
one retention for all logs) and ``StartLiveTail`` (an HTTP/2 event stream nimbus does not
serve: poll FilterLogEvents, as ``aws logs tail --follow`` does). Groups, streams and
events are ``observe/log_groups.py``'s view of the invocation logs; every read flushes the
log writer first, so what has run is there.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from nimbus.api.services import Services, services_of_context
from nimbus.errors import LogsInvalidOperation, LogsInvalidParameter, LogsResourceNotFound
from nimbus.observe.log_events import LogEvent, stream_of
from nimbus.observe.log_filter import FilterPatternError, compile_pattern
from nimbus.observe.log_groups import LogGroup, LogGroups, StreamInfo
from nimbus.protocol.service import AwsService, RequestContext
from nimbus.threads import blocking

Params = dict[str, Any]
STREAM_ORDERS = ("LogStreamName", "LastEventTime")
GROUP_CLASSES = ("STANDARD", "INFREQUENT_ACCESS", "DELIVERY", "ESSENTIALS")
MAX_RESPONSE_BYTES = 1024 * 1024  # GetLogEvents and FilterLogEvents answer at most 1 MB
EVENT_OVERHEAD = 26  # bytes CloudWatch counts per event on top of its message


def _services(ctx: RequestContext) -> Services:
    return services_of_context(ctx)


async def _view(ctx: RequestContext) -> LogGroups:
    svc = _services(ctx)
    await svc.engine.flush_logs()  # log writers batch: what has run is readable now
    return LogGroups(svc.engine.functions, svc.engine.logs)


def _arn(ctx: RequestContext, group: str) -> str:
    return f"arn:aws:logs:{ctx.region}:{ctx.account_id}:log-group:{group}"


def _group_name(ctx: RequestContext, p: Params) -> str:
    """The group a request names (logGroupName, or logGroupIdentifier: a name or ARN)."""
    name, identifier = p.get("logGroupName"), p.get("logGroupIdentifier")
    if name is not None and identifier is not None:
        raise LogsInvalidParameter(
            "LogGroup name and LogGroup ARN are mutually exclusive parameters."
        )
    if identifier is not None:
        if identifier.startswith("arn:"):
            parts = identifier.split(":", 6)
            if len(parts) < 7 or parts[2] != "logs" or parts[5] != "log-group":
                raise LogsInvalidParameter(f"{identifier} is not a log group ARN.")
            name = parts[6].removesuffix(":*")
        else:
            name = identifier
    if not name:
        raise LogsInvalidParameter("Either logGroupName or logGroupIdentifier is required.")
    return str(name)


async def _group(ctx: RequestContext, view: LogGroups, p: Params) -> LogGroup:
    name = _group_name(ctx, p)
    found = await blocking(view.group, name)
    if found is None:
        raise LogsResourceNotFound("The specified log group does not exist.")
    return found


def _limit(p: Params, default: int, most: int) -> int:
    limit = p.get("limit")
    if limit is None:
        return default
    if not 1 <= limit <= most:
        raise LogsInvalidParameter(
            f"1 validation error detected: Value '{limit}' at 'limit' failed to satisfy "
            f"constraint: Member must have value between 1 and {most} inclusive"
        )
    return int(limit)


def _token(kind: str, *values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps([kind, *values]).encode()).decode()


def _untoken(token: str, kind: str, *types: type) -> list[Any]:
    """The values of a ``nextToken`` made by ``_token(kind, ...)``: one of another call,
    or of another order, is refused as invalid (as any token CloudWatch did not make)."""
    try:
        value = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, binascii.Error):
        value = None
    if (
        not isinstance(value, list)
        or len(value) != len(types) + 1
        or value[0] != kind
        or not all(isinstance(v, t) and not isinstance(v, bool)
                   for v, t in zip(value[1:], types, strict=True))
    ):
        raise LogsInvalidParameter("The specified nextToken is invalid.")
    return value[1:]


def _one_of(p: Params, member: str, allowed: tuple[str, ...]) -> str | None:
    """An enum member's value, refused as CloudWatch refuses one outside its set."""
    value = p.get(member)
    if value is not None and value not in allowed:
        raise LogsInvalidParameter(
            f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy "
            f"constraint: Member must satisfy enum value set: [{', '.join(allowed)}]"
        )
    return value


def _at_most(p: Params, member: str, most: int, what: str) -> None:
    value = p.get(member)
    if value is not None and len(value) > most:
        raise LogsInvalidParameter(
            f"1 validation error detected: Value at '{member}' failed to satisfy "
            f"constraint: Member must have {what} less than or equal to {most}"
        )


def _window(p: Params) -> tuple[int, int | None]:
    start, end = p.get("startTime"), p.get("endTime")
    if start is not None and end is not None and start > end:
        raise LogsInvalidParameter(
            f"startTime ({start}) must be less than or equal to endTime ({end})."
        )
    return int(start or 0), (int(end) if end is not None else None)


# -- groups and streams ----------------------------------------------------------------------


async def describe_log_groups(ctx: RequestContext, p: Params) -> Params:
    prefix, pattern = p.get("logGroupNamePrefix"), p.get("logGroupNamePattern")
    identifiers = p.get("logGroupIdentifiers")
    if sum(x is not None for x in (prefix, pattern, identifiers)) > 1:
        raise LogsInvalidParameter(
            "logGroupNamePrefix, logGroupNamePattern and logGroupIdentifiers are mutually "
            "exclusive parameters."
        )
    limit = _limit(p, 50, 50)
    group_class = _one_of(p, "logGroupClass", GROUP_CLASSES)
    accounts = p.get("accountIdentifiers")
    view = await _view(ctx)
    groups = await blocking(view.groups)
    if prefix is not None:
        groups = [g for g in groups if g.name.startswith(prefix)]
    if pattern:  # a case-sensitive substring, as CloudWatch matches it
        groups = [g for g in groups if pattern in g.name]
    if identifiers is not None:
        wanted = {_group_name(ctx, {"logGroupIdentifier": i}) for i in identifiers}
        groups = [g for g in groups if g.name in wanted]
    if accounts is not None and ctx.account_id not in accounts:
        groups = []  # nimbus has one account and no linked ones
    if group_class not in (None, "STANDARD"):
        groups = []  # every group of nimbus is of the STANDARD class
    if p.get("nextToken") is not None:
        (after,) = _untoken(p["nextToken"], "groups", str)
        groups = [g for g in groups if g.name > after]
    page = groups[:limit]
    retention = _services(ctx).config.log_retention_days
    shapes = [_group_shape(ctx, g, retention) for g in page]
    if pattern:  # CloudWatch answers a pattern search with these three only
        shapes = [{k: s[k] for k in ("arn", "creationTime", "logGroupName")} for s in shapes]
    out: Params = {"logGroups": shapes}
    if len(groups) > limit:
        out["nextToken"] = _token("groups", page[-1].name)
    return out


def _group_shape(ctx: RequestContext, group: LogGroup, retention: float) -> Params:
    arn = _arn(ctx, group.name)
    shape: Params = {
        "logGroupName": group.name,
        "creationTime": group.creation_ms,
        "metricFilterCount": 0,
        "arn": f"{arn}:*",
        "logGroupClass": "STANDARD",
        "logGroupArn": arn,
    }
    if retention > 0 and retention == int(retention):
        shape["retentionInDays"] = int(retention)
    return shape


async def describe_log_streams(ctx: RequestContext, p: Params) -> Params:
    order = _one_of(p, "orderBy", STREAM_ORDERS) or "LogStreamName"
    prefix = p.get("logStreamNamePrefix")
    if order == "LastEventTime" and prefix is not None:
        raise LogsInvalidParameter("Cannot order by LastEventTime with a logStreamNamePrefix.")
    limit = _limit(p, 50, 50)
    descending = bool(p.get("descending"))
    view = await _view(ctx)
    group = await _group(ctx, view, p)
    streams = await blocking(view.streams, group)
    if prefix is not None:
        streams = [s for s in streams if s.name.startswith(prefix)]

    def key(s: StreamInfo) -> list[Any]:
        return [s.last_ms, s.name] if order == "LastEventTime" else [s.name]

    streams.sort(key=key, reverse=descending)
    if p.get("nextToken") is not None:
        after = _untoken(p["nextToken"], f"streams:{order}",
                         *((int, str) if order == "LastEventTime" else (str,)))
        streams = [s for s in streams if (key(s) < after if descending else key(s) > after)]
    page = streams[:limit]
    arn = _arn(ctx, group.name)
    out: Params = {
        "logStreams": [
            {
                "logStreamName": s.name,
                "creationTime": s.first_ms,
                "firstEventTimestamp": s.first_ms,
                "lastEventTimestamp": s.last_ms,
                "lastIngestionTime": s.last_ingestion_ms,
                "arn": f"{arn}:log-stream:{s.name}",
                "storedBytes": 0,  # as CloudWatch: deprecated, always 0
            }
            for s in page
        ]
    }
    if len(streams) > limit:
        out["nextToken"] = _token(f"streams:{order}", *key(page[-1]))
    return out


# -- events ----------------------------------------------------------------------------------


def _output(event: LogEvent) -> Params:
    return {"timestamp": event.timestamp, "message": event.message,
            "ingestionTime": event.ingestion_time}


def _fits(events: list[LogEvent], limit: int) -> list[LogEvent]:
    """The first events that fit ``limit`` and the 1 MB answer size."""
    size = 0
    for count, event in enumerate(events[:limit]):
        size += len(event.message.encode()) + EVENT_OVERHEAD
        if size > MAX_RESPONSE_BYTES:
            return events[:count]
    return events[:limit]


def _stream_token(direction: str, key: tuple[int, str, int]) -> str:
    return f"{direction}/{key[0]:020d}.{key[2]:06d}.{key[1]}"


# A GetLogEvents token is a place between two events: "f/K" reads forward from after
# event K, "b/K" backward from before it; "F/K" and "B/K" include K (the tokens of the
# other direction that an empty read at either end gives for the same place).
_AFTER = {"f": lambda e, k: e > k, "F": lambda e, k: e >= k,
          "b": lambda e, k: e < k, "B": lambda e, k: e <= k}


def _stream_key(token: str) -> tuple[str, tuple[int, str, int]]:
    """(direction, key) of a nextForwardToken or nextBackwardToken."""
    direction, _, rest = token.partition("/")
    stamp, _, rest = rest.partition(".")
    line, _, request_id = rest.partition(".")
    if direction not in _AFTER or not stamp.isdigit() or not line.isdigit():
        raise LogsInvalidParameter("The specified nextToken is invalid.")
    return direction, (int(stamp), request_id, int(line))


async def get_log_events(ctx: RequestContext, p: Params) -> Params:
    """One stream's events in order. Without a token, the newest ``limit`` in the window
    (``startFromHead``: the oldest); a ``nextForwardToken`` reads on after the last event
    returned, a ``nextBackwardToken`` back before the first; at either end the token
    comes back unchanged, which is how readers know they have it all."""
    limit = _limit(p, 10000, 10000)
    start, end = _window(p)
    token = p.get("nextToken")
    view = await _view(ctx)
    group = await _group(ctx, view, p)
    stream = p["logStreamName"]
    all_events = await blocking(
        view.events, group, start, None if end is None else end - 1,  # endTime: exclusive
        lambda r: stream_of(r) == stream,
    )
    if not all_events and not await blocking(_stream_exists, view, group, stream):
        raise LogsResourceNotFound("The specified log stream does not exist.")
    all_events.sort(key=lambda e: e.key)
    if token is not None:
        direction, key = _stream_key(token)
    else:
        direction = "f" if p.get("startFromHead") else "b"
        key = (-1, "", -1) if direction == "f" else (2**63, "", 0)
    after = _AFTER[direction]
    if direction in "fF":
        chosen = _fits([e for e in all_events if after(e.key, key)], limit)
    else:
        before = [e for e in all_events if after(e.key, key)]
        chosen = list(reversed(_fits(list(reversed(before)), limit)))
    if chosen:
        forward = _stream_token("f", chosen[-1].key)
        backward = _stream_token("b", chosen[0].key)
    elif token is not None:  # at an end: the same place, read either way
        turned = {"f": "B", "F": "b", "b": "F", "B": "f"}[direction]
        forward = token if direction in "fF" else _stream_token(turned, key)
        backward = token if direction in "bB" else _stream_token(turned, key)
    else:  # nothing in the window: read on from its start, or back from its end
        forward = _stream_token("f", (max(start - 1, 0), "", 0))
        backward = _stream_token("b", (2**62, "", 0))
    return {
        "events": [_output(e) for e in chosen],
        "nextForwardToken": forward,
        "nextBackwardToken": backward,
    }


def _stream_exists(view: LogGroups, group: LogGroup, stream: str) -> bool:
    return any(s.name == stream for s in view.streams(group))


async def filter_log_events(ctx: RequestContext, p: Params) -> Params:
    """The group's events (of the streams asked) in the window that match the filter
    pattern, interleaved by time, oldest first (``startFromHead`` false: newest first);
    ``nextToken`` while more remain, carrying the direction of the first request."""
    names, prefix = p.get("logStreamNames"), p.get("logStreamNamePrefix")
    if names is not None and prefix is not None:
        raise LogsInvalidParameter(
            "logStreamNames and logStreamNamePrefix are mutually exclusive parameters."
        )
    _at_most(p, "logStreamNames", 100, "length")
    _at_most(p, "filterPattern", 1024, "length")
    limit = _limit(p, 10000, 10000)
    start, end = _window(p)
    try:
        matches = compile_pattern(p.get("filterPattern"))
    except FilterPatternError as exc:
        raise LogsInvalidParameter(str(exc)) from None
    newest_first = p.get("startFromHead") is False
    mark: tuple[Any, ...] | None = None
    if p.get("nextToken") is not None:
        flag, *rest = _untoken(p["nextToken"], "events", int, int, str, str, int)
        newest_first, mark = bool(flag), tuple(rest)
    view = await _view(ctx)
    group = await _group(ctx, view, p)
    wanted = set(names) if names is not None else None

    def keep(record: Any) -> bool:
        name = stream_of(record)
        if wanted is not None:
            return name in wanted
        return prefix is None or name.startswith(prefix)

    def select() -> list[LogEvent]:
        found = view.events(group, start, end, keep)
        if newest_first:
            found.reverse()
        if mark is not None:
            found = [e for e in found if ((e.timestamp, e.stream, e.request_id, e.line) < mark
                                          if newest_first else
                                          (e.timestamp, e.stream, e.request_id, e.line) > mark)]
        return [e for e in found if matches(e.message)]

    found = await blocking(select)
    page = _fits(found, limit)
    out: Params = {
        "events": [
            {"logStreamName": e.stream, **_output(e), "eventId": e.event_id} for e in page
        ],
        "searchedLogStreams": [],
    }
    if len(page) < len(found) and page:
        last = page[-1]
        out["nextToken"] = _token("events", int(newest_first), last.timestamp, last.stream,
                                  last.request_id, last.line)
    return out


# -- retention, live tail --------------------------------------------------------------------


async def put_retention_policy(ctx: RequestContext, p: Params) -> Params:
    view = await _view(ctx)
    group = await _group(ctx, view, p)
    days = _services(ctx).config.log_retention_days
    if days > 0 and p["retentionInDays"] == days:
        return {}  # what nimbus does already
    now = f"{days:g} days" if days > 0 else "kept forever (0)"
    raise LogsInvalidParameter(
        f"nimbus keeps the logs of every log group for the server's log_retention_days "
        f"(NIMBUS_LOG_RETENTION_DAYS, now {now}); a retention of its own for "
        f"{group.name} ({p['retentionInDays']} days) is not supported."
    )


async def delete_retention_policy(ctx: RequestContext, p: Params) -> Params:
    view = await _view(ctx)
    group = await _group(ctx, view, p)
    days = _services(ctx).config.log_retention_days
    if days == 0:
        return {}  # kept forever already
    raise LogsInvalidParameter(
        f"nimbus keeps the logs of every log group for the server's log_retention_days "
        f"(NIMBUS_LOG_RETENTION_DAYS, now {days:g} days); keeping {group.name} forever "
        "needs log_retention_days = 0."
    )


async def start_live_tail(ctx: RequestContext, p: Params) -> Params:
    raise LogsInvalidOperation(
        "StartLiveTail answers with an HTTP/2 event stream, which nimbus does not serve. "
        "Poll FilterLogEvents instead (as `aws logs tail --follow` does), or use "
        "`nimbus logs NAME --follow`."
    )


LOGS = AwsService(
    "logs",
    {
        "DescribeLogGroups": describe_log_groups,
        "DescribeLogStreams": describe_log_streams,
        "GetLogEvents": get_log_events,
        "FilterLogEvents": filter_log_events,
        "PutRetentionPolicy": put_retention_policy,
        "DeleteRetentionPolicy": delete_retention_policy,
        "StartLiveTail": start_live_tail,
    },
)
