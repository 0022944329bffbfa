"""LoggingConfig inside the environment: the variables Lambda sets for JSON logs, and the
Python runtime's JSON records, the same as awslambdaric's (compared with the real one, from
this venv), in a real sandbox too."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
from awslambdaric.lambda_runtime_log_utils import JsonFormatter as AwsJsonFormatter

from nimbus.guest.python import JsonFormatter
from nimbus.sandbox import envvars
from tests.sandbox.conftest import Sandbox, spec


def test_json_logs_set_lambdas_variables() -> None:
    user = {"AWS_LAMBDA_LOG_FORMAT": "mine", "AWS_LAMBDA_LOG_LEVEL": "mine"}
    json_env = envvars.build(
        spec(Path("/x"), environment=user, log_format="JSON", log_level="WARN"),
        python=(3, 12), python_bin="/p/bin",
    )
    assert json_env["AWS_LAMBDA_LOG_FORMAT"] == "JSON"
    assert json_env["AWS_LAMBDA_LOG_LEVEL"] == "WARN"
    provided = envvars.build(spec(Path("/x"), log_format="JSON", log_level="TRACE"),
                             python=None, python_bin=None)
    assert provided["AWS_LAMBDA_LOG_LEVEL"] == "TRACE"
    text = envvars.build(spec(Path("/x")), python=(3, 12), python_bin="/p/bin")
    assert "AWS_LAMBDA_LOG_FORMAT" not in text and "AWS_LAMBDA_LOG_LEVEL" not in text
    # With Text logs Lambda sets neither: the function's own values are left alone.
    assert envvars.build(spec(Path("/x"), environment=user), python=(3, 12),
                         python_bin="/p/bin")["AWS_LAMBDA_LOG_FORMAT"] == "mine"


def records() -> list[logging.LogRecord]:
    made = []
    logger = logging.getLogger("nimbus-test.json")
    for level, msg, args, extra in [
        (logging.INFO, "hello %s", ("world",), {}),
        (logging.WARNING, "ünïcode", (), {"data1": "x", "n": 2, "nested": {"a": [1]}}),
        (logging.DEBUG, "debug", (), {}),
        (logging.CRITICAL, "critical", (), {}),
        (25, "between levels", (), {}),
        (logging.ERROR, "no extra", (), {"requestId": "mine wins not"}),
    ]:
        record = logger.makeRecord(logger.name, level, __file__, 10, msg, args, None,
                                   "fn", extra)
        record.aws_request_id = "req-1"
        made.append(record)
    try:
        raise ValueError("boom")
    except ValueError:
        record = logger.makeRecord(logger.name, logging.ERROR, __file__, 20, "failed", (),
                                   sys.exc_info(), "fn", None)
        record.aws_request_id = "req-2"
        made.append(record)
    return made


def test_json_records_are_awslambdarics() -> None:
    ours = [JsonFormatter().format(r) for r in records()]
    theirs = [AwsJsonFormatter().format(r) for r in records()]
    for mine, real in zip(ours, theirs, strict=True):
        mine_json, real_json = json.loads(mine), json.loads(real)
        mine_json.pop("timestamp"), real_json.pop("timestamp")  # records made apart
        assert mine_json == real_json
        assert list(mine_json) == list(real_json)  # the same order of keys
        assert mine.endswith("\n") and mine.count("\n") == 1
    first = json.loads(ours[0])
    assert first == {**first, "level": "INFO", "message": "hello world",
                     "logger": "nimbus-test.json", "requestId": "req-1"}
    assert first["timestamp"].endswith("Z") and len(first["timestamp"]) == 24
    failed = json.loads(ours[-1])
    assert failed["errorType"] == "ValueError" and failed["errorMessage"] == "boom"
    assert failed["stackTrace"] and failed["location"].endswith(":fn:20")
    assert json.loads(ours[4])["level"] == "INFO"  # 25 rounds down to a level Lambda knows


APP = '''
import logging
logger = logging.getLogger()
logger.info("init info")
logger.warning("init warning")


def handler(event, context):
    print("printed")
    logger.info("info record")
    logger.warning("careful", extra={"order": 7})
    if event.get("fail"):
        raise KeyError("missing")
    return "ok"
'''


@pytest.mark.sandbox
def test_json_logs_in_a_sandbox(sb: Sandbox) -> None:
    code = sb.package({"app.py": APP})
    env = sb.start(spec(code, log_format="JSON", log_level="WARN"))
    try:
        init = [json.loads(line) for line in env.init_logs.decode().splitlines()]
        assert [(r["level"], r["message"]) for r in init] == [("WARNING", "init warning")]
        assert init[0]["requestId"] == ""  # no invocation yet, as awslambdaric says
        outcome = sb.invoke(env, {})
        lines = outcome.logs.decode().splitlines()
        assert lines[0] == "printed"  # print stays text: the platform's filter sees INFO
        warning = json.loads(lines[1])
        assert len(lines) == 2  # the INFO record never left the runtime (root level WARN)
        assert warning["level"] == "WARNING" and warning["message"] == "careful"
        assert warning["order"] == 7 and warning["logger"] == "root"
        assert len(warning["requestId"]) == 36
        failed = sb.invoke(env, {"fail": True})
        error = json.loads(failed.logs.decode().splitlines()[-1])
        assert error["level"] == "ERROR" and error["errorType"] == "KeyError"
        assert error["requestId"] == json.loads(failed.payload)["requestId"]
        assert len(error["timestamp"]) == 19  # awslambdaric's: seconds, no zone
    finally:
        sb.stop(env)


@pytest.mark.sandbox
def test_text_logs_in_a_sandbox_are_unchanged(sb: Sandbox) -> None:
    code = sb.package({"app.py": APP})
    env = sb.start(spec(code))
    try:
        # Python's default root level (WARNING) stands: nothing sets one with Text logs.
        assert env.init_logs.decode().startswith("[WARNING]\t")
        lines = sb.invoke(env, {}).logs.decode().splitlines()
        assert lines[0] == "printed"
        assert lines[1].startswith("[WARNING]\t") and lines[1].endswith("\tcareful")
        assert len(lines) == 2
    finally:
        sb.stop(env)
