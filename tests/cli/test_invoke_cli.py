"""`nimbus invoke` and `nimbus rm`, run as a user runs them, against a live server: the
result on stdout, what happened on stderr, and exit codes that say who must act (0 ok,
1 the function failed, 2 the caller's mistake, 3 no nimbus answered)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import botocore.exceptions
import httpx
import pytest

from nimbus.cli.invocation import parse_report
from tests.cli.conftest import nimbus_cli
from tests.conftest import ROLE, make_zip
from tests.nimbus_process import NimbusProcess

CODE = (
    "def handler(event, context):\n"
    "    print('event', event)\n"
    "    if event.get('fail'):\n"
    "        raise KeyError('missing')\n"
    "    return {'got': event}\n"
)


def make_function(nimbus: NimbusProcess, name: str = "fn") -> None:
    nimbus.client().create_function(
        FunctionName=name, Runtime="python3.12", Role=ROLE, Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": CODE})},
    )


@pytest.mark.sandbox
def test_invoke_result_report_and_exit_codes(nimbus: NimbusProcess, tmp_path: Path) -> None:
    make_function(nimbus)
    first = nimbus_cli(nimbus, "invoke", "fn", "--data", '{"a": 1}')
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {"got": {"a": 1}}
    assert "cold start (init " in first.stderr and "billed " in first.stderr
    assert "event {'a': 1}" not in first.stderr  # the log only with --tail

    (tmp_path / "event.json").write_text('{"from": "file"}')
    second = nimbus_cli(nimbus, "invoke", "fn", "--data", f"@{tmp_path / 'event.json'}",
                        "--tail")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout) == {"got": {"from": "file"}}
    assert "warm, duration " in second.stderr
    assert "event {'from': 'file'}" in second.stderr and "REPORT RequestId" in second.stderr

    kept = nimbus_cli(nimbus, "invoke", "fn", "-p", '{"p": true}')  # the old spelling
    assert kept.returncode == 0 and json.loads(kept.stdout) == {"got": {"p": True}}

    failed = nimbus_cli(nimbus, "invoke", "fn", "--data", '{"fail": 1}')
    assert failed.returncode == 1, failed.stderr
    assert json.loads(failed.stdout)["errorType"] == "KeyError"
    assert "function error (Unhandled): KeyError: 'missing'" in failed.stderr

    for args, says in [
        (("--data", "{nope"), "is not JSON"),
        (("--data", "{}", "-p", "{}"), "not both"),
        (("--data", f"@{tmp_path / 'absent.json'}"), "cannot read the event"),
        (("--async", "--tail"), "--tail needs a synchronous invoke"),
    ]:
        mistake = nimbus_cli(nimbus, "invoke", "fn", *args)
        assert mistake.returncode == 2, (args, mistake.stderr)
        assert says in mistake.stderr and "Traceback" not in mistake.stderr

    missing = nimbus_cli(nimbus, "invoke", "nope")
    assert missing.returncode == 2
    assert "ResourceNotFoundException" in missing.stderr and "nimbus ls" in missing.stderr


@pytest.mark.sandbox
def test_invoke_async_prints_the_request_id(nimbus: NimbusProcess) -> None:
    make_function(nimbus)
    queued = nimbus_cli(nimbus, "invoke", "fn", "--async", "--data", '{"later": 1}')
    assert queued.returncode == 0, queued.stderr
    request_id = queued.stdout.strip()
    assert len(request_id) == 36 and "queued (202)" in queued.stderr
    as_json = nimbus_cli(nimbus, "invoke", "fn", "--async", "--json")
    assert json.loads(as_json.stdout)["StatusCode"] == 202
    # The event ran in the background, under the request id the command printed.
    deadline = time.monotonic() + 60
    while True:
        logs = httpx.get(f"{nimbus.endpoint}/_nimbus/functions/fn/logs").json()["Logs"]
        if any(r["request_id"] == request_id for r in logs):
            break
        assert time.monotonic() < deadline, logs
        time.sleep(0.1)


@pytest.mark.sandbox
def test_invoke_qualifier(nimbus: NimbusProcess) -> None:
    make_function(nimbus)
    lam = nimbus.client()
    lam.publish_version(FunctionName="fn")
    lam.create_alias(FunctionName="fn", Name="live", FunctionVersion="1")
    result = nimbus_cli(nimbus, "invoke", "fn", "--qualifier", "live", "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["ExecutedVersion"] == "1" and answer["Payload"] == {"got": {}}
    assert answer["Report"]["cold"] is True and answer["Report"]["billed_ms"] >= 1


def test_rm_function_version_and_alias(nimbus: NimbusProcess) -> None:
    make_function(nimbus)
    lam = nimbus.client()
    lam.publish_version(FunctionName="fn")
    lam.create_alias(FunctionName="fn", Name="live", FunctionVersion="1")

    alias = nimbus_cli(nimbus, "rm", "fn", "--qualifier", "live")
    assert alias.returncode == 0 and "deleted alias live of fn" in alias.stderr
    assert lam.list_aliases(FunctionName="fn")["Aliases"] == []
    typo = nimbus_cli(nimbus, "rm", "fn", "--qualifier", "livee")
    assert typo.returncode == 2 and "ResourceNotFoundException" in typo.stderr

    version = nimbus_cli(nimbus, "rm", "fn", "--qualifier", "1")
    assert version.returncode == 0, version.stderr
    versions = lam.list_versions_by_function(FunctionName="fn")["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST"]

    latest = nimbus_cli(nimbus, "rm", "fn", "--qualifier", "$LATEST")
    assert latest.returncode == 2 and "nimbus rm fn" in latest.stderr

    gone = nimbus_cli(nimbus, "rm", "fn")
    assert gone.returncode == 0 and "deleted function fn" in gone.stderr
    with pytest.raises(botocore.exceptions.ClientError):
        lam.get_function(FunctionName="fn")
    again = nimbus_cli(nimbus, "rm", "fn")
    assert again.returncode == 2 and "ResourceNotFoundException" in again.stderr


def test_unreachable_nimbus_exits_3(tmp_path: Path) -> None:
    server = NimbusProcess(tmp_path)  # not started: nothing listens on its port
    for args in (("invoke", "fn"), ("ls",), ("rm", "fn")):
        result = nimbus_cli(server, *args)
        assert result.returncode == 3, (args, result.stderr)
        assert "cannot reach" in result.stderr and "Traceback" not in result.stderr


def test_parse_report_text_and_json() -> None:
    text = ("START RequestId: r1 Version: $LATEST\nEND RequestId: r1\n"
            "REPORT RequestId: r1\tDuration: 1.50 ms\tBilled Duration: 2 ms\t"
            "Memory Size: 128 MB\tMax Memory Used: 3 MB\tInit Duration: 12.25 ms\t\n")
    cold = parse_report(text)
    assert cold is not None and cold.cold and cold.init_ms == 12.25
    assert (cold.duration_ms, cold.billed_ms, cold.max_memory_used_mb) == (1.5, 2, 3)
    warm = parse_report(text.replace("Init Duration: 12.25 ms\t", ""))
    assert warm is not None and not warm.cold
    record = {"time": "t", "type": "platform.report", "record": {
        "requestId": "r2", "metrics": {"durationMs": 4.0, "billedDurationMs": 4,
                                       "memorySizeMB": 128, "maxMemoryUsedMB": 2,
                                       "restoreDurationMs": 7.5}}}
    restored = parse_report(json.dumps(record) + "\n")
    assert restored is not None and restored.cold and restored.restore_ms == 7.5
    assert parse_report("no report here\n") is None
