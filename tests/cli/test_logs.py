"""``nimbus logs`` run as a user runs it: lines with timestamp, version, request id, level
and stream; --filter, --request-id, --json, --since; and -f seeing an invocation made after
it started."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nimbus.cli.logs import since_ms
from tests.cli.conftest import nimbus_cli
from tests.conftest import ROLE, live_server, make_zip
from tests.nimbus_process import NimbusProcess

APP = """
def handler(event, context):
    print('[ERROR 400] BAD REQUEST')
    print('tag', event['tag'])
    return 1
"""
LINE = re.compile(
    r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (\$LATEST|\d+) ([0-9a-f-]{36}) "
    r"(TRACE|DEBUG|INFO |WARN |ERROR|FATAL) (\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}) (.*)"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NimbusProcess]:
    with live_server(tmp_path_factory.mktemp("cli-logs") / "data") as proc:
        yield proc


@pytest.fixture(scope="module")
def fn(server: NimbusProcess) -> dict[str, Any]:
    """A function invoked twice (tags one and two), with the request ids."""
    lam = server.client()
    name = f"logs-{uuid.uuid4().hex[:6]}"
    lam.create_function(FunctionName=name, Runtime="python3.12", Role=ROLE,
                        Handler="app.handler", Code={"ZipFile": make_zip({"app.py": APP})})
    ids = {}
    for tag in ("one", "two"):
        out = lam.invoke(FunctionName=name, Payload=json.dumps({"tag": tag}).encode())
        ids[tag] = out["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    return {"name": name, "ids": ids}


pytestmark = pytest.mark.sandbox


def lines_of(stdout: str) -> list[re.Match[str]]:
    found = [LINE.fullmatch(line) for line in stdout.splitlines()]
    assert all(found), stdout
    return [m for m in found if m is not None]


def test_each_line_has_time_version_request_id_level_and_stream(
        server: NimbusProcess, fn: dict[str, Any]) -> None:
    out = nimbus_cli(server, "logs", fn["name"])
    assert out.returncode == 0, out.stderr
    lines = lines_of(out.stdout)
    messages = [m.group(6) for m in lines]
    assert messages.index("tag one") < messages.index("tag two")
    assert sum(m.startswith("START RequestId") for m in messages) == 2
    by_message = {m.group(6): m for m in lines}
    assert by_message["[ERROR 400] BAD REQUEST"].group(4) == "ERROR"
    assert by_message["tag one"].group(4) == "INFO "
    assert by_message["tag one"].group(3) == fn["ids"]["one"]
    assert by_message["tag two"].group(3) == fn["ids"]["two"]


def test_filter_and_request_id_are_applied(server: NimbusProcess, fn: dict[str, Any]) -> None:
    out = nimbus_cli(server, "logs", fn["name"], "--filter", '"tag one"')
    assert [m.group(6) for m in lines_of(out.stdout)] == ["tag one"]
    out = nimbus_cli(server, "logs", fn["name"], "--filter", "?BAD ?two")
    assert [m.group(6) for m in lines_of(out.stdout)] == [
        "[ERROR 400] BAD REQUEST", "[ERROR 400] BAD REQUEST", "tag two"]

    out = nimbus_cli(server, "logs", fn["name"], "--request-id", fn["ids"]["two"])
    lines = lines_of(out.stdout)
    assert {m.group(3) for m in lines} == {fn["ids"]["two"]}
    assert lines[0].group(6).startswith("START RequestId") and "tag two" in out.stdout
    assert "tag one" not in out.stdout

    bad = nimbus_cli(server, "logs", fn["name"], "--filter", "{ $.level = ")
    assert bad.returncode == 2 and "InvalidParameterValueException" in bad.stderr


def test_json_output(server: NimbusProcess, fn: dict[str, Any]) -> None:
    out = nimbus_cli(server, "logs", fn["name"], "--json", "--request-id", fn["ids"]["one"])
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert {r["requestId"] for r in records} == {fn["ids"]["one"]}
    tagged = next(r for r in records if r["message"] == "tag one")
    assert tagged["function"] == fn["name"] and tagged["version"] == "$LATEST"
    assert tagged["level"] == "INFO" and tagged["stream"].startswith(time.strftime("%Y/"))
    assert abs(tagged["timestampMs"] - time.time() * 1000) < 600_000


def test_raw_prints_each_log_as_written(server: NimbusProcess, fn: dict[str, Any]) -> None:
    out = nimbus_cli(server, "logs", fn["name"], "--raw", "--request-id", fn["ids"]["one"])
    lines = out.stdout.splitlines()
    assert lines[0] == f"START RequestId: {fn['ids']['one']} Version: $LATEST"
    assert lines[1:3] == ["[ERROR 400] BAD REQUEST", "tag one"]
    assert lines[3] == f"END RequestId: {fn['ids']['one']}"
    assert lines[4].startswith(f"REPORT RequestId: {fn['ids']['one']}\tDuration: ")


def test_since_takes_spans_and_times(server: NimbusProcess, fn: dict[str, Any]) -> None:
    assert since_ms("10m", now_s=1000.0) == 400_000
    assert since_ms("2h", now_s=10_000.0) == 2_800_000
    assert since_ms("5", now_s=1000.0) == 700_000  # minutes, as before
    assert since_ms("2024-05-01T12:00:00Z") == 1_714_564_800_000
    assert since_ms("2024-05-01T12:00:00") == 1_714_564_800_000  # UTC unless it says
    # Before 1970 is "from the start" (a traceback or a server error once).
    assert since_ms("100000d", now_s=1000.0) == 0
    assert since_ms("1" + "0" * 310, now_s=1000.0) == 0
    assert since_ms("9" * 5000, now_s=1000.0) == 0
    assert since_ms("1969-12-31") == 0
    future = nimbus_cli(server, "logs", fn["name"], "--since", "2999-01-01T00:00:00Z")
    assert future.returncode == 0 and future.stdout == ""
    bad = nimbus_cli(server, "logs", fn["name"], "--since", "yesterday")
    assert bad.returncode == 2 and "--since 'yesterday'" in bad.stderr


def test_follow_prints_an_invocation_made_after_it_started(
        server: NimbusProcess, fn: dict[str, Any], tmp_path: Path) -> None:
    env = {**os.environ, "NIMBUS_ENDPOINT": server.endpoint}
    proc = subprocess.Popen([sys.executable, "-m", "nimbus", "logs", fn["name"], "-f"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []

    def read_until(text: str) -> None:
        deadline = time.monotonic() + 60
        while not any(line.endswith(text) for line in seen):
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, proc.stderr.read() if proc.stderr else ""
            seen.append(line)

    try:
        read_until("tag two")  # the recent lines first
        lam = server.client()
        for tag in ("three", "four"):  # made while it follows
            lam.invoke(FunctionName=fn["name"], Payload=json.dumps({"tag": tag}).encode())
        read_until("tag four")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    messages = [m.group(6) for m in lines_of("\n".join(seen))]
    for tag in ("one", "two", "three", "four"):  # each once: no duplicates across polls
        assert messages.count(f"tag {tag}") == 1
    assert messages.index("tag three") < messages.index("tag four")
