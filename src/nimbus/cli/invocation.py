"""``nimbus invoke``: run a function once and show its result, as Lambda's Invoke does.

stdout carries the result (the function's payload, or the request id of an async
event); stderr says what happened: duration, billed duration, cold or warm (from the
REPORT line of the log tail Lambda returns with ``LogType=Tail``) and, with ``--tail``,
the log itself. Exit codes: 0 ok, 1 the function failed, 2 the caller's mistake (bad
arguments, bad JSON, a missing function), 3 no nimbus answered."""

from __future__ import annotations

import base64
import json
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from nimbus.cli.client import (
    ENDPOINT,
    FUNCTIONS,
    MEANINGFUL,
    JsonOption,
    call,
    fail,
    no_function,
    print_json,
    say,
    segment,
)

USAGE = MEANINGFUL.refused


@dataclass(frozen=True)
class Report:
    """What an invocation's REPORT line says (Text or JSON log format)."""

    request_id: str | None
    duration_ms: float
    billed_ms: int
    memory_size_mb: int | None
    max_memory_used_mb: int | None
    init_ms: float | None  # Init Duration: present on a cold start
    restore_ms: float | None  # Restore Duration: a SnapStart environment's first invoke

    @property
    def cold(self) -> bool:
        return self.init_ms is not None or self.restore_ms is not None

    def summary(self) -> str:
        if self.init_ms is not None:
            start = f"cold start (init {self.init_ms:.1f} ms)"
        elif self.restore_ms is not None:
            start = f"cold start (SnapStart restore {self.restore_ms:.1f} ms)"
        else:
            start = "warm"
        memory = (
            f", memory {self.max_memory_used_mb}/{self.memory_size_mb} MB"
            if self.memory_size_mb is not None
            else ""
        )
        return f"{start}, duration {self.duration_ms:.2f} ms, billed {self.billed_ms} ms{memory}"


_FIELD = re.compile(r"([A-Za-z ]+): ([^\t]+?)\s*(?:\t|$)")


def parse_report(log: str) -> Report | None:
    """The last REPORT of a log tail: Lambda's Text line (``REPORT RequestId: ...\\t
    Duration: 1.23 ms\\t...``) or JSON's ``platform.report`` record; None if absent."""
    for line in reversed(log.splitlines()):
        if line.startswith("REPORT "):
            fields = {k.strip(): v for k, v in _FIELD.findall(line[len("REPORT "):])}
            return Report(
                request_id=fields.get("RequestId"),
                duration_ms=_number(fields, "Duration") or 0.0,
                billed_ms=int(_number(fields, "Billed Duration") or 0),
                memory_size_mb=_int(_number(fields, "Memory Size")),
                max_memory_used_mb=_int(_number(fields, "Max Memory Used")),
                init_ms=_number(fields, "Init Duration"),
                restore_ms=_number(fields, "Restore Duration"),
            )
        if '"platform.report"' in line:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if not isinstance(event, dict) or event.get("type") != "platform.report":
                continue
            record = event.get("record") or {}
            metrics = record.get("metrics") or {}
            return Report(
                request_id=record.get("requestId"),
                duration_ms=float(metrics.get("durationMs", 0.0)),
                billed_ms=int(metrics.get("billedDurationMs", 0)),
                memory_size_mb=metrics.get("memorySizeMB"),
                max_memory_used_mb=metrics.get("maxMemoryUsedMB"),
                init_ms=metrics.get("initDurationMs"),
                restore_ms=metrics.get("restoreDurationMs"),
            )
    return None


def _number(fields: dict[str, str], key: str) -> float | None:
    """``Duration: 1.23 ms`` -> 1.23."""
    raw = fields.get(key)
    return float(raw.split()[0]) if raw else None


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def event_bytes(data: str | None, payload: str | None) -> bytes:
    """The event to send: ``--data`` (JSON, ``@file`` or ``@-`` for stdin) or ``-p``;
    checked to be JSON here, so a typo is the caller's error, not the function's."""
    if data is not None and payload is not None:
        fail("give the event once: --data or -p/--payload, not both", USAGE)
    raw = data if data is not None else payload
    if raw is None:
        return b"{}"
    source = "--data" if data is not None else "--payload"
    if raw.startswith("@"):
        name = raw[1:]
        try:
            text = sys.stdin.read() if name == "-" else Path(name).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot read the event from {name!r}: {exc}", USAGE)
        source = "stdin" if name == "-" else name
        raw = text
    try:
        json.loads(raw)
    except ValueError as exc:
        fail(
            f"the event ({source}) is not JSON: {exc}. Pass a JSON document, e.g. "
            """--data '{"key": "value"}', or --data @event.json""",
            USAGE,
        )
    return raw.encode()


def invoke(
    name: Annotated[str, typer.Argument(help="Function name or ARN (NAME:QUALIFIER too)")],
    data: Annotated[
        str | None,
        typer.Option("--data", "-d", help="The event: JSON, @FILE, or @- for stdin [{}]"),
    ] = None,
    payload: Annotated[
        str | None, typer.Option("--payload", "-p", help="The event as JSON (as --data)")
    ] = None,
    asynchronous: Annotated[
        bool,
        typer.Option(
            "--async",
            help="Queue the event (InvocationType=Event) and print its request id",
        ),
    ] = False,
    qualifier: Annotated[str | None, typer.Option(help="Version or alias")] = None,
    tail: Annotated[bool, typer.Option("--tail", help="Print the log to stderr")] = False,
    as_json: JsonOption = False,
    endpoint: str = ENDPOINT,
) -> None:
    """Invoke a function and print its result (stdout); duration, billed time and cold or
    warm start on stderr. Exit codes: 0 ok, 1 function error, 2 usage or a request
    nimbus refused (e.g. no such function), 3 nimbus unreachable."""
    if asynchronous and tail:
        fail("--tail needs a synchronous invoke: an --async event runs later "
             "(`nimbus logs NAME` shows its log)", USAGE)
    body = event_bytes(data, payload)
    url = f"{endpoint}{FUNCTIONS}/{segment(name)}/invocations"
    params = {"Qualifier": qualifier} if qualifier else None
    if asynchronous:
        queued = call("POST", url, params=params, content=body, exits=MEANINGFUL,
                      headers={"X-Amz-Invocation-Type": "Event"}, allow=(404,))
        if queued.status_code == 404:
            no_function(queued, USAGE)
        request_id = queued.headers.get("x-amzn-requestid", "")
        if as_json:
            print_json({"StatusCode": queued.status_code, "RequestId": request_id})
        else:
            say(f"queued ({queued.status_code}): it runs in the background; "
                f"`nimbus logs {name}` shows its log")
            typer.echo(request_id)
        return
    answer = call("POST", url, params=params, content=body, exits=MEANINGFUL,
                  headers={"X-Amz-Invocation-Type": "RequestResponse", "X-Amz-Log-Type": "Tail"},
                  allow=(404,))
    if answer.status_code == 404:
        no_function(answer, USAGE)
    log = ""
    if "x-amz-log-result" in answer.headers:
        log = base64.b64decode(answer.headers["x-amz-log-result"]).decode(errors="replace")
    report = parse_report(log)
    function_error = answer.headers.get("x-amz-function-error")
    if as_json:
        print_json(_result_json(answer.status_code, answer.headers, answer.text, log, report,
                                tail))
    else:
        if tail and log:
            typer.echo(log, err=True, nl=not log.endswith("\n"))
        typer.echo(answer.text)
        version = answer.headers.get("x-amz-executed-version", "")
        facts = report.summary() if report else "no REPORT in the log"
        say(f"{facts}, version {version}, request id "
            f"{answer.headers.get('x-amzn-requestid', '')}")
    if function_error:
        say(f"function error ({function_error}): {_error_summary(answer.text)}")
        raise typer.Exit(MEANINGFUL.failed)


def _result_json(status: int, headers: Any, text: str, log: str, report: Report | None,
                 tail: bool) -> dict[str, Any]:
    """``--json``: Invoke's answer (boto3's field names) with the report's numbers."""
    try:
        result: Any = json.loads(text) if text else None
    except ValueError:
        result = text
    out: dict[str, Any] = {
        "StatusCode": status,
        "ExecutedVersion": headers.get("x-amz-executed-version"),
        "RequestId": headers.get("x-amzn-requestid"),
        "FunctionError": headers.get("x-amz-function-error"),
        "Payload": result,
        "Report": {**asdict(report), "cold": report.cold} if report else None,
    }
    if tail:
        out["LogResult"] = log
    return out


def _error_summary(text: str) -> str:
    """``errorType: errorMessage`` of Lambda's error payload, else the payload itself."""
    try:
        error = json.loads(text)
    except ValueError:
        return text
    if isinstance(error, dict) and "errorMessage" in error:
        return f"{error.get('errorType', 'Error')}: {error['errorMessage']}"
    return text
