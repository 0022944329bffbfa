"""``nimbus logs``: a function's log lines, searched and followed.

Each line is printed with its timestamp, version, request id, level and stream (or, with
``--json``, as one JSON object per line). ``--filter`` takes a CloudWatch filter pattern
(``ERROR``, ``"exact phrase"``, ``?A ?B``, ``-NOISE``, ``{ $.level = "ERROR" }``) and
``--request-id`` one invocation; both are applied by the server. ``--raw`` prints each
invocation's log exactly as it was written instead (what ``nimbus logs`` printed before).

``-f`` follows: after the recent lines it asks the server every ``POLL_S`` for the
invocations logged since a cursor, oldest first and page by page, so a burst is never cut
short. The cursor trails the newest record seen by ``OVERLAP_MS``: records of other
processes (the async workers) are written in batches and may land a little behind ones
already read; those already printed are recognised by request id and not printed again.
"""

from __future__ import annotations

import json
import re
import sys
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from nimbus.cli.client import ENDPOINT, call, fail, no_function, segment

POLL_S = 0.5
OVERLAP_MS = 5000
PAGE = 1000
_SPAN = re.compile(r"(\d+)\s*([smhdw]?)")
_UNIT_S = {"s": 1, "m": 60, "": 60, "h": 3600, "d": 86400, "w": 604800}


def since_ms(value: str, now_s: float | None = None) -> int:
    """``10m``, ``2h``, ``30s``, ``1d``, a bare number (minutes) or an ISO 8601 time (UTC
    unless it names its offset) as epoch milliseconds."""
    now = time.time() if now_s is None else now_s
    span = _SPAN.fullmatch(value.strip())
    if span:
        # Reaching before 1970 means "from the start": logs have no earlier time (and
        # more than 12 digits, 30,000 years of seconds, always does).
        if len(span.group(1)) > 12:
            return 0
        return max(0, int((now - int(span.group(1)) * _UNIT_S[span.group(2)]) * 1000))
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        fail(f"--since {value[:40]!r}: give a span (10m, 2h, 30s, 1d) or an ISO 8601 time "
             "(2024-05-01T12:00:00Z)")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0, int(moment.timestamp() * 1000))


def render(event: dict[str, Any], as_json: bool) -> str:
    if as_json:
        return json.dumps(event, separators=(",", ":"))
    return (f"{event['timestamp']} {event['version']} {event['requestId']} "
            f"{event['level']:<5} {event['stream']} {event['message']}")


def logs(
    name: Annotated[str, typer.Argument(help="Function name")],
    follow: Annotated[bool, typer.Option("--follow", "-f",
                                         help="Keep printing new invocations' lines")] = False,
    since: Annotated[str, typer.Option(
        help="From this long ago (10m, 2h, 30s, 1d; a bare number is minutes) or this "
             "ISO 8601 time (UTC unless it says)")] = "60m",
    filter_pattern: Annotated[str | None, typer.Option(
        "--filter", help='A CloudWatch filter pattern: ERROR, "a phrase", ?A ?B, -NOISE, '
                         '{ $.level = "ERROR" }')] = None,
    request_id: Annotated[str | None, typer.Option(
        "--request-id", help="Only this invocation's lines")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
    raw: Annotated[bool, typer.Option(
        "--raw", help="Each invocation's log exactly as written (START ... REPORT, or its "
                      "JSON records), without the columns")] = False,
    limit: Annotated[int, typer.Option(help="At most this many recent invocations")] = 20,
    endpoint: str = ENDPOINT,
) -> None:
    """Print a function's log lines (sync and async invocations), each with its timestamp,
    version, request id, level and stream; -f keeps printing new ones until Ctrl-C."""
    url = f"{endpoint}/_nimbus/functions/{segment(name)}/logs"
    common: dict[str, Any] = {"Events": "true"}
    if filter_pattern is not None:
        common["Filter"] = filter_pattern
    if request_id is not None:
        common["RequestId"] = request_id
    start = since_ms(since)
    seen: dict[str, int] = {}  # request id -> its record's timestamp
    newest = start

    def show(answer: dict[str, Any]) -> None:
        nonlocal newest
        fresh = {r["request_id"] for r in answer["Logs"] if r["request_id"] not in seen}
        if raw:
            for record in answer["Logs"]:
                if record["request_id"] in fresh:
                    typer.echo(record["text"], nl=False)
        for event in [] if raw else answer["Events"]:
            if event["requestId"] in fresh:
                typer.echo(render(event, as_json))
        for record in answer["Logs"]:
            seen[record["request_id"]] = record["timestamp_ms"]
            newest = max(newest, record["timestamp_ms"])
        sys.stdout.flush()

    first = call("GET", url, params={**common, "SinceMs": start, "Limit": limit}, allow=(404,))
    if first.status_code == 404:
        no_function(first)
    show(first.json())
    if not follow:
        return
    try:
        while True:
            cursor = max(start, newest - OVERLAP_MS)
            while True:  # page on while the server says more follow
                answer = call("GET", url, params={
                    **common, "SinceMs": cursor, "Limit": PAGE, "Oldest": "true",
                }).json()
                show(answer)
                if not answer.get("More") or not answer["Logs"]:
                    break
                cursor = answer["Logs"][-1]["timestamp_ms"]
            horizon = newest - 2 * OVERLAP_MS
            for rid in [rid for rid, stamp in seen.items() if stamp < horizon]:
                del seen[rid]
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
