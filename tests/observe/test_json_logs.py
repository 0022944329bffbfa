"""Lambda's JSON log format: platform events as {"time", "type", "record"} objects kept
by SystemLogLevel, the function's lines kept (unchanged) by ApplicationLogLevel, and the
effective LoggingConfig read back from what the control plane stores."""

from __future__ import annotations

import json

from nimbus.observe.log_config import INFO, KEYS, SEVERITY, LogConfig, config_of, is_json
from nimbus.observe.logs import line_level, render, render_json

ARN = "arn:aws:lambda:us-east-1:000000000000:function:fn"
END_MS = 1_700_000_000_500  # 2023-11-14T22:13:20.500Z


def config(app: str = "INFO", system: str = "INFO") -> LogConfig:
    return LogConfig("JSON", "/aws/lambda/fn", app, system)


def events(text: str) -> list[dict]:
    """The platform events among ``text``'s lines."""
    return [json.loads(line) for line in text.splitlines() if line.startswith('{"time":')]


def platform(text: str) -> list[str]:
    return [e["type"] for e in events(text)]


def test_a_warm_invocation_is_start_lines_report() -> None:
    out = b'{"timestamp": "t", "level": "INFO", "message": "hi", "requestId": "r1"}\n'
    text = render_json(config(), "r1", "$LATEST", ARN, out, 12.3456, 128, 20, None,
                       function_name="fn", produced_bytes=2, end_ms=END_MS)
    lines = text.splitlines()
    assert json.loads(lines[0]) == {
        "time": "2023-11-14T22:13:20.488Z",
        "type": "platform.start",
        "record": {"requestId": "r1", "functionArn": ARN, "version": "$LATEST"},
    }
    assert lines[1] == out.decode().rstrip("\n")  # the function's line, unchanged
    assert json.loads(lines[2]) == {
        "time": "2023-11-14T22:13:20.500Z",
        "type": "platform.report",
        "record": {
            "requestId": "r1",
            "metrics": {"durationMs": 12.346, "billedDurationMs": 13, "memorySizeMB": 128,
                        "maxMemoryUsedMB": 20},
            "status": "success",
        },
    }
    assert len(lines) == 3
    assert lines[0].startswith('{"time":"')  # compact, as Lambda writes them


def test_application_level_drops_lower_records_and_text_counts_as_info() -> None:
    out = "\n".join([
        '{"timestamp": "t", "level": "DEBUG", "message": "d"}',
        '{"timestamp": "t", "level": "INFO", "message": "i"}',
        "printed text",
        '{"level": "WARNING", "message": "python says WARNING", "service": "svc"}',
        '{"level":"warn","msg":"lower case"}',
        '{"timestamp": "t", "level": "ERROR", "errorType": "ValueError"}',
        '{"no": "level"}',
        "{not json",
        '{"level": "CRITICAL", "message": "c"}',
    ]).encode()
    kept = render_json(config(app="WARN"), "r", "1", ARN, out, 1.0, 128, 1, None,
                       end_ms=END_MS).splitlines()[1:-1]
    assert kept == [
        '{"level": "WARNING", "message": "python says WARNING", "service": "svc"}',
        '{"level":"warn","msg":"lower case"}',
        '{"timestamp": "t", "level": "ERROR", "errorType": "ValueError"}',
        '{"level": "CRITICAL", "message": "c"}',
    ]
    everything = render_json(config(app="TRACE"), "r", "1", ARN, out, 1.0, 128, 1, None,
                             end_ms=END_MS).splitlines()[1:-1]
    assert everything == out.decode().splitlines()
    debug = render_json(config(app="DEBUG"), "r", "1", ARN, out, 1.0, 128, 1, None,
                        end_ms=END_MS).splitlines()[1:-1]
    assert debug == out.decode().splitlines()
    fatal = render_json(config(app="FATAL"), "r", "1", ARN, out, 1.0, 128, 1, None,
                        end_ms=END_MS).splitlines()[1:-1]
    assert fatal == ['{"level": "CRITICAL", "message": "c"}']


def test_line_levels() -> None:
    assert line_level("hello") == INFO
    assert line_level('  {"level": "debug"}') == SEVERITY["DEBUG"]
    assert line_level('{"level": 5}') == INFO
    assert line_level('{"level": "NOTICE"}') == INFO
    assert line_level("[1, 2]") == INFO
    assert line_level('{"a":' * 100_000) == INFO  # deeper than json.loads goes


def test_system_level_debug_adds_init_and_runtime_done_events() -> None:
    text = render_json(config(system="DEBUG"), "r", "$LATEST", ARN, b"x\n", 2.0, 256, 30,
                       40.5, b"loading\n", function_name="fn", produced_bytes=7,
                       end_ms=END_MS)
    assert platform(text) == [
        "platform.initStart", "platform.initRuntimeDone", "platform.initReport",
        "platform.start", "platform.runtimeDone", "platform.report",
    ]
    lines = text.splitlines()
    assert lines[1] == "loading" and lines[5] == "x"  # init output before START
    by_type = {e["type"]: e for e in events(text)}
    assert by_type["platform.initStart"]["record"] == {
        "initializationType": "on-demand", "phase": "init",
        "functionName": "fn", "functionVersion": "$LATEST",
    }
    assert by_type["platform.initReport"]["record"]["metrics"] == {"durationMs": 40.5}
    assert by_type["platform.runtimeDone"]["record"] == {
        "requestId": "r", "status": "success",
        "metrics": {"durationMs": 2.0, "producedBytes": 7},
    }
    assert by_type["platform.report"]["record"]["metrics"]["initDurationMs"] == 40.5
    # Init is billed with the invocation (since 1 August 2025): 2.0 + 40.5 ms.
    assert by_type["platform.report"]["record"]["metrics"]["billedDurationMs"] == 43


def test_default_levels_show_start_and_report_only() -> None:
    text = render_json(config(), "r", "$LATEST", ARN, b"", 2.0, 256, 30, 40.5, b"",
                       end_ms=END_MS)
    assert platform(text) == ["platform.start", "platform.report"]


def test_system_level_warn_keeps_only_failures() -> None:
    ok = render_json(config(system="WARN"), "r", "1", ARN, b"hi\n", 1.0, 128, 1, None,
                     end_ms=END_MS)
    assert ok == "hi\n"
    failed = render_json(config(system="WARN"), "r", "1", ARN, b"", 1.0, 128, 1, None,
                         error_type="ValueError", end_ms=END_MS)
    assert platform(failed) == ["platform.runtimeDone", "platform.report"]
    report = events(failed)[-1]["record"]
    assert report["status"] == "error" and report["errorType"] == "ValueError"
    timed_out = render_json(config(system="WARN"), "r", "1", ARN, b"", 3000.0, 128, 1, None,
                            error_type="Sandbox.Timedout", end_ms=END_MS)
    assert events(timed_out)[-1]["record"]["status"] == "timeout"
    assert "errorType" not in events(timed_out)[-1]["record"]


def test_an_init_failure_reports_the_init_phase() -> None:
    err = b'{"timestamp": "2024-01-01T00:00:00", "level": "ERROR", "errorType": "X"}\n'
    text = render_json(config(), "r", "$LATEST", ARN, b"", 5.0, 128, 0, 5.0, err,
                       error_type="Runtime.ImportModuleError", init_failed=True,
                       end_ms=END_MS)
    assert platform(text) == [
        "platform.initRuntimeDone", "platform.initReport", "platform.start", "platform.report",
    ]
    assert text.splitlines()[0] == err.decode().rstrip("\n")
    init_report = events(text)[1]["record"]
    assert init_report["status"] == "error"
    assert init_report["errorType"] == "Runtime.ImportModuleError"


def test_output_without_a_final_newline_and_undecodable_bytes() -> None:
    text = render_json(config(app="TRACE"), "r", "1", ARN, b"a\nb\xff", 1.0, 128, 1, None,
                       end_ms=END_MS)
    assert text.splitlines()[1:3] == ["a", "b\ufffd"]


def test_text_rendering_is_unchanged() -> None:
    text = render("r", "$LATEST", b"hi\n", 1.5, 128, 20, None)
    assert text == (
        "START RequestId: r Version: $LATEST\nhi\nEND RequestId: r\n"
        "REPORT RequestId: r\tDuration: 1.50 ms\tBilled Duration: 2 ms\tMemory Size: 128 MB\t"
        "Max Memory Used: 20 MB\t\n"
    )


def test_effective_config_from_stored_members() -> None:
    assert config_of({}, "fn") == LogConfig("Text", "/aws/lambda/fn")
    assert not is_json({})
    stored = {KEYS["LogFormat"]: "JSON", KEYS["ApplicationLogLevel"]: "WARN",
              KEYS["SystemLogLevel"]: "INFO"}
    assert is_json(stored)
    assert config_of(stored, "fn") == LogConfig("JSON", "/aws/lambda/fn", "WARN", "INFO")
    # Switched back to Text: no levels, whatever was stored.
    text = {**stored, KEYS["LogFormat"]: "Text", KEYS["LogGroup"]: "grp"}
    assert config_of(text, "fn") == LogConfig("Text", "grp")
    assert config_of(text, "fn").structure() == {"LogFormat": "Text", "LogGroup": "grp"}
    # Versions stored before LoggingConfig took effect: the structure as given.
    legacy = {"LoggingConfig": {"LogFormat": "JSON", "LogGroup": "old"}}
    assert is_json(legacy)
    assert config_of(legacy, "fn").structure() == {
        "LogFormat": "JSON", "ApplicationLogLevel": "INFO", "SystemLogLevel": "INFO",
        "LogGroup": "old",
    }
    assert not is_json({**legacy, KEYS["LogFormat"]: "Text"})
