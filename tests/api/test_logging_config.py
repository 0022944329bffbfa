"""LoggingConfig through boto3 against a live server: Lambda's validation, defaults and
partial updates (as the LocalStack recordings of TestLoggingConfig show them), and JSON
logs with level filtering from functions that run, read with LogType=Tail and with
``nimbus logs``."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.api.conftest import error
from tests.cli.conftest import nimbus_cli
from tests.conftest import (
    HELLO,
    ROLE,
    awslambdaric_package,
    make_zip,
    powertools_package,
    python_runtime,
)
from tests.nimbus_process import NimbusProcess

TEXT_WITH_LEVEL = (
    'LogLevel is not supported when LogFormat is set to "Text". Remove LogLevel from your '
    'request or change the LogFormat to "JSON" and try again.'
)

APP = """
import logging
logger = logging.getLogger()
logger.setLevel(logging.INFO)
logger.info("init info")


def handler(event, context):
    print("printed line")
    logger.info("info record")
    logger.warning("warn record", extra={"order": 7})
    if event.get("fail"):
        raise ValueError("bad thing")
    return {"ok": True}
"""


def name() -> str:
    return f"log-{uuid.uuid4().hex[:8]}"


def create(lam: Any, fn: str, code: bytes = HELLO, **kwargs: Any) -> dict:
    kwargs.setdefault("Runtime", "python3.12")
    kwargs.setdefault("Handler", "app.handler")
    return lam.create_function(FunctionName=fn, Role=ROLE, Code={"ZipFile": code}, **kwargs)


def logging_of(lam: Any, fn: str) -> dict:
    return lam.get_function_configuration(FunctionName=fn)["LoggingConfig"]


def json_config(fn: str, app: str = "INFO", system: str = "INFO", group: str = "") -> dict:
    return {"ApplicationLogLevel": app, "LogFormat": "JSON",
            "LogGroup": group or f"/aws/lambda/{fn}", "SystemLogLevel": system}


def text_config(fn: str, group: str = "") -> dict:
    return {"LogFormat": "Text", "LogGroup": group or f"/aws/lambda/{fn}"}


# -- the control plane, as the recordings show it --------------------------------------------


def test_json_format_fills_in_the_levels(lam) -> None:
    """TestLoggingConfig::test_function_advanced_logging_configuration."""
    fn = name()
    created = create(lam, fn, LoggingConfig={"LogFormat": "JSON"})
    assert created["LoggingConfig"] == json_config(fn)
    assert lam.get_function(FunctionName=fn)["Configuration"]["LoggingConfig"] == json_config(fn)
    assert logging_of(lam, fn) == json_config(fn)
    advanced = {"LogFormat": "JSON", "ApplicationLogLevel": "INFO", "SystemLogLevel": "INFO",
                "LogGroup": "cool_lambda"}
    updated = lam.update_function_configuration(FunctionName=fn, LoggingConfig=advanced)
    assert updated["LoggingConfig"] == json_config(fn, group="cool_lambda")
    assert logging_of(lam, fn) == json_config(fn, group="cool_lambda")


def test_format_switch(lam) -> None:
    """TestLoggingConfig::test_advanced_logging_configuration_format_switch."""
    fn = name()
    assert create(lam, fn)["LoggingConfig"] == text_config(fn)
    assert logging_of(lam, fn) == text_config(fn)
    to_json = lam.update_function_configuration(FunctionName=fn,
                                                LoggingConfig={"LogFormat": "JSON"})
    assert to_json["LoggingConfig"] == json_config(fn) == logging_of(lam, fn)
    to_text = lam.update_function_configuration(FunctionName=fn,
                                                LoggingConfig={"LogFormat": "Text"})
    assert to_text["LoggingConfig"] == text_config(fn) == logging_of(lam, fn)


@pytest.mark.parametrize(
    ("partial", "expected"),
    [
        ({"LogFormat": "JSON"}, lambda fn: json_config(fn)),
        ({"LogFormat": "JSON", "ApplicationLogLevel": "DEBUG"},
         lambda fn: json_config(fn, app="DEBUG")),
        ({"LogFormat": "JSON", "SystemLogLevel": "DEBUG"},
         lambda fn: json_config(fn, system="DEBUG")),
        ({"LogGroup": "cool_lambda"}, lambda fn: text_config(fn, "cool_lambda")),
    ],
)
def test_partial_updates(lam, partial: dict, expected: Any) -> None:
    """TestLoggingConfig::test_function_partial_advanced_logging_configuration_update."""
    fn = name()
    assert create(lam, fn)["LoggingConfig"] == text_config(fn)
    updated = lam.update_function_configuration(FunctionName=fn, LoggingConfig=partial)
    assert updated["LoggingConfig"] == expected(fn) == logging_of(lam, fn)


def test_an_update_changes_only_the_members_it_names(lam) -> None:
    fn = name()
    create(lam, fn, LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "WARN",
                                   "SystemLogLevel": "DEBUG"})
    lam.update_function_configuration(FunctionName=fn, LoggingConfig={"LogGroup": "grp"})
    assert logging_of(lam, fn) == json_config(fn, "WARN", "DEBUG", "grp")
    lam.update_function_configuration(FunctionName=fn,
                                      LoggingConfig={"ApplicationLogLevel": "ERROR"})
    assert logging_of(lam, fn) == json_config(fn, "ERROR", "DEBUG", "grp")
    lam.update_function_configuration(FunctionName=fn, Description="other settings")
    assert logging_of(lam, fn) == json_config(fn, "ERROR", "DEBUG", "grp")
    # Back to Text drops the levels; JSON again starts from the defaults.
    lam.update_function_configuration(FunctionName=fn, LoggingConfig={"LogFormat": "Text"})
    assert logging_of(lam, fn) == text_config(fn, "grp")
    lam.update_function_configuration(FunctionName=fn, LoggingConfig={"LogFormat": "JSON"})
    assert logging_of(lam, fn) == json_config(fn, group="grp")
    published = lam.publish_version(FunctionName=fn)
    assert published["LoggingConfig"] == json_config(fn, group="grp")


@pytest.mark.parametrize("level", [{"ApplicationLogLevel": "DEBUG"}, {"SystemLogLevel": "WARN"}])
def test_levels_with_text_are_refused(lam, level: dict) -> None:
    fn = name()
    with pytest.raises(ClientError) as exc:
        create(lam, fn, LoggingConfig={"LogFormat": "Text", **level})
    assert error(exc) == ("InvalidParameterValueException", 400, TEXT_WITH_LEVEL)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName=fn)  # nothing stored
    create(lam, fn, LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "WARN"})
    with pytest.raises(ClientError) as exc:
        lam.update_function_configuration(FunctionName=fn,
                                          LoggingConfig={"LogFormat": "Text", **level})
    assert error(exc) == ("InvalidParameterValueException", 400, TEXT_WITH_LEVEL)
    assert logging_of(lam, fn) == json_config(fn, app="WARN")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"LogFormat": "XML"},
         "1 validation error detected: Value 'XML' at 'loggingConfig.logFormat' failed to "
         "satisfy constraint: Member must satisfy enum value set: [JSON, Text]"),
        ({"LogFormat": "JSON", "ApplicationLogLevel": "WARNING"},
         "1 validation error detected: Value 'WARNING' at 'loggingConfig.applicationLogLevel' "
         "failed to satisfy constraint: Member must satisfy enum value set: "
         "[TRACE, DEBUG, INFO, WARN, ERROR, FATAL]"),
        ({"LogFormat": "JSON", "SystemLogLevel": "ERROR"},
         "1 validation error detected: Value 'ERROR' at 'loggingConfig.systemLogLevel' failed "
         "to satisfy constraint: Member must satisfy enum value set: [DEBUG, INFO, WARN]"),
        ({"LogGroup": "no spaces"},
         "1 validation error detected: Value 'no spaces' at 'loggingConfig.logGroup' failed to "
         "satisfy constraint: Member must satisfy regular expression pattern: "
         "[\\.\\-_/#A-Za-z0-9]+"),
    ],
)
def test_invalid_values_are_validation_errors(lam, config: dict, message: str) -> None:
    with pytest.raises(ClientError) as exc:
        create(lam, name(), LoggingConfig=config)
    assert error(exc) == ("ValidationException", 400, message)


def test_tracing_active_is_stored_and_reported(lam) -> None:
    """Stored and returned; it takes effect once nimbus traces (README)."""
    fn = name()
    assert create(lam, fn, TracingConfig={"Mode": "Active"})["TracingConfig"] == {
        "Mode": "Active"
    }
    assert lam.get_function_configuration(FunctionName=fn)["TracingConfig"] == {
        "Mode": "Active"
    }


# -- functions that run -------------------------------------------------------------------------


def invoke(lam: Any, fn: str, event: dict | None = None) -> tuple[dict, list[str]]:
    """(the response, the lines of its LogResult)."""
    resp = lam.invoke(FunctionName=fn, Payload=json.dumps(event or {}).encode(),
                      LogType="Tail")
    resp["body"] = json.loads(resp["Payload"].read())
    return resp, base64.b64decode(resp["LogResult"]).decode().splitlines()


def platform(lines: list[str]) -> dict[str, dict]:
    """Platform events by type (the last of each)."""
    return {e["type"]: e for e in map(json.loads, lines) if "type" in e and "time" in e}


def records(lines: list[str]) -> list[dict]:
    """The function's JSON records."""
    return [r for r in map(json.loads, lines) if "time" not in r]


@pytest.mark.sandbox
def test_json_logs_drop_records_below_the_application_level(
    lam, server: NimbusProcess
) -> None:
    fn = name()
    create(lam, fn, make_zip({"app.py": APP}),
           LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "WARN"})
    resp, lines = invoke(lam, fn)
    assert resp["body"] == {"ok": True}
    assert all(line.startswith("{") for line in lines), lines  # every line is JSON
    events = platform(lines)
    assert list(events) == ["platform.start", "platform.report"]
    request_id = events["platform.start"]["record"]["requestId"]
    assert request_id == resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert events["platform.start"]["record"]["version"] == "$LATEST"
    report = events["platform.report"]["record"]
    assert report["requestId"] == request_id and report["status"] == "success"
    assert {"durationMs", "billedDurationMs", "memorySizeMB", "maxMemoryUsedMB",
            "initDurationMs"} <= set(report["metrics"])
    # INFO records (logging's and print's) are dropped, WARN kept, with the request id.
    assert "info record" not in "".join(lines) and "printed line" not in "".join(lines)
    assert "init info" not in "".join(lines)
    [warning] = records(lines)
    assert warning["level"] == "WARNING" and warning["message"] == "warn record"
    assert warning["requestId"] == request_id and warning["order"] == 7

    failed, failed_lines = invoke(lam, fn, {"fail": True})
    assert failed["FunctionError"] == "Unhandled"
    error_record = records(failed_lines)[-1]
    assert error_record["level"] == "ERROR" and error_record["errorType"] == "ValueError"
    failed_report = platform(failed_lines)["platform.report"]["record"]
    assert failed_report["status"] == "error" and failed_report["errorType"] == "ValueError"

    shown = nimbus_cli(server, "logs", fn, "--raw")
    assert shown.returncode == 0, shown.stderr
    shown_lines = shown.stdout.splitlines()
    assert all(line.startswith("{") for line in shown_lines), shown_lines
    starts = [e["record"]["requestId"] for e in map(json.loads, shown_lines)
              if e.get("type") == "platform.start"]
    assert request_id in starts and len(starts) == 2
    assert "info record" not in shown.stdout and "warn record" in shown.stdout


@pytest.mark.sandbox
def test_text_logs_stay_as_they_were(lam, server: NimbusProcess) -> None:
    fn = name()
    create(lam, fn, make_zip({"app.py": APP}))
    resp, lines = invoke(lam, fn)
    request_id = resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert lines[0].startswith("[INFO]\t") and lines[0].endswith("\tinit info")
    assert lines[1] == f"START RequestId: {request_id} Version: $LATEST"
    assert lines[2] == "printed line"
    assert lines[3].startswith("[INFO]\t") and lines[3].endswith(f"\t{request_id}\tinfo record")
    assert lines[4].startswith("[WARNING]\t") and lines[4].endswith("\twarn record")
    assert lines[5] == f"END RequestId: {request_id}"
    assert lines[6].startswith(f"REPORT RequestId: {request_id}\tDuration: ")
    shown = nimbus_cli(server, "logs", fn, "--raw")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == lines


@pytest.mark.sandbox
def test_an_update_switches_the_format_for_the_next_environment(lam) -> None:
    fn = name()
    create(lam, fn, make_zip({"app.py": APP}))
    assert invoke(lam, fn)[1][1].startswith("START RequestId: ")
    lam.update_function_configuration(
        FunctionName=fn, LoggingConfig={"LogFormat": "JSON", "SystemLogLevel": "DEBUG"}
    )
    lam.get_waiter("function_updated_v2").wait(FunctionName=fn)
    _, lines = invoke(lam, fn)
    assert "printed line" in lines  # text stays text (and INFO, the default level, keeps it)
    lines.remove("printed line")
    assert list(platform(lines)) == [
        "platform.initStart", "platform.initRuntimeDone", "platform.initReport",
        "platform.start", "platform.runtimeDone", "platform.report",
    ]
    assert "initDurationMs" in platform(lines)["platform.report"]["record"]["metrics"]
    messages = [r["message"] for r in records(lines)]
    assert messages == ["init info", "info record", "warn record"]
    lam.update_function_configuration(FunctionName=fn, LoggingConfig={"LogFormat": "Text"})
    assert invoke(lam, fn)[1][1].startswith("START RequestId: ")


@pytest.mark.sandbox
def test_system_level_warn_shows_platform_events_of_failures_only(lam) -> None:
    fn = name()
    create(lam, fn, make_zip({"app.py": APP}),
           LoggingConfig={"LogFormat": "JSON", "SystemLogLevel": "WARN",
                          "ApplicationLogLevel": "ERROR"})
    _, lines = invoke(lam, fn)
    assert lines == []
    _, failed = invoke(lam, fn, {"fail": True})
    assert list(platform(failed)) == ["platform.runtimeDone", "platform.report"]
    assert [r["errorType"] for r in records(failed)] == ["ValueError"]


POWERTOOLS_APP = """
from aws_lambda_powertools import Logger

logger = Logger(service="orders")


@logger.inject_lambda_context
def handler(event, context):
    logger.info("powertools info")
    logger.warning("powertools warning", extra={"order_id": 42})
    return "done"
"""


@pytest.mark.sandbox
def test_powertools_json_passes_through_unchanged(lam) -> None:
    fn = name()
    create(lam, fn, powertools_package({"app.py": POWERTOOLS_APP}), Runtime=python_runtime(),
           LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "WARN"}, Timeout=30)
    resp, lines = invoke(lam, fn)
    assert resp["body"] == "done", lines
    [warning] = records(lines)
    # Powertools' own record, one line, as it wrote it (its keys, not the runtime's).
    assert warning["level"] == "WARNING" and warning["message"] == "powertools warning"
    assert warning["service"] == "orders" and warning["order_id"] == 42
    assert "location" in warning and "function_request_id" in warning
    assert "logger" not in warning and "requestId" not in warning
    assert "powertools info" not in "".join(lines)


@pytest.mark.sandbox
def test_provided_runtime_gets_lambdas_log_variables(lam, tmp_path) -> None:
    """The real awslambdaric in a provided.al2023 bootstrap reads AWS_LAMBDA_LOG_FORMAT:
    its unhandled error is a JSON record."""
    fn = name()
    create(lam, fn, awslambdaric_package(tmp_path), Runtime="provided.al2023",
           Handler="fn.handler", LoggingConfig={"LogFormat": "JSON"})
    failed, lines = invoke(lam, fn, {"fail": True})
    assert failed["FunctionError"] == "Unhandled"
    [error_record] = [r for r in records(lines) if r.get("level") == "ERROR"]
    assert error_record["errorType"] == "KeyError"
    assert error_record["requestId"] == platform(lines)["platform.start"]["record"]["requestId"]


ENV_APP = """
import os

def handler(event, context):
    return {"group": context.log_group_name,
            "env": {k: os.environ.get(k) for k in ("AWS_LAMBDA_LOG_FORMAT",
                    "AWS_LAMBDA_LOG_LEVEL", "AWS_LAMBDA_LOG_GROUP_NAME")}}
"""


@pytest.mark.sandbox
def test_the_function_sees_its_logging_config(lam) -> None:
    fn = name()
    create(lam, fn, make_zip({"app.py": ENV_APP}),
           LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "TRACE",
                          "LogGroup": "cool_lambda"})
    resp, _ = invoke(lam, fn)
    assert resp["body"] == {"group": "cool_lambda", "env": {
        "AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "TRACE",
        "AWS_LAMBDA_LOG_GROUP_NAME": "cool_lambda"}}
    lam.update_function_configuration(FunctionName=fn, LoggingConfig={"LogFormat": "Text"})
    resp, _ = invoke(lam, fn)
    assert resp["body"] == {"group": "cool_lambda", "env": {
        "AWS_LAMBDA_LOG_FORMAT": None, "AWS_LAMBDA_LOG_LEVEL": None,
        "AWS_LAMBDA_LOG_GROUP_NAME": "cool_lambda"}}


@pytest.mark.sandbox
def test_an_init_failure_in_json(lam) -> None:
    fn = name()
    create(lam, fn, make_zip({"app.py": "import missing_module\n"}),
           LoggingConfig={"LogFormat": "JSON"})
    failed, lines = invoke(lam, fn)
    assert failed["FunctionError"] == "Unhandled"
    [error_record] = records(lines)
    assert error_record["level"] == "ERROR"
    assert error_record["errorType"] == "Runtime.ImportModuleError"
    events = platform(lines)
    assert list(events) == ["platform.initRuntimeDone", "platform.initReport",
                            "platform.start", "platform.report"]
    assert events["platform.initReport"]["record"]["status"] == "error"
    assert events["platform.report"]["record"]["errorType"] == "Runtime.ImportModuleError"
