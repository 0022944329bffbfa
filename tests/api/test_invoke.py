"""Sync Invoke through boto3 against a live server, as a user would."""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.conftest import ROLE, live_server, make_zip

SERVER_PER_TEST = True  # lam talks to the test's own nimbus: every test makes "app"

APP = """
import os, sys, time, json
COUNT = 0

def handler(event, context):
    global COUNT
    COUNT += 1
    action = event.get("action")
    print("handling", action, "in", context.aws_request_id)
    if action == "fail":
        raise ValueError("bad thing")
    if action == "sleep":
        time.sleep(event["seconds"])
    if action == "oom":
        hog = []
        while True:
            hog.append(bytearray(16 * 1024 * 1024))
    if action == "exit":
        os._exit(3)
    if action == "big":
        return "x" * (7 * 1024 * 1024)
    return {
        "count": COUNT,
        "event": event,
        "version": context.function_version,
        "arn": context.invoked_function_arn,
        "memory": context.memory_limit_in_mb,
        "remaining": context.get_remaining_time_in_millis(),
        "env": {k: os.environ.get(k) for k in ("AWS_LAMBDA_FUNCTION_NAME", "STAGE",
                "AWS_REGION", "LAMBDA_TASK_ROOT", "_HANDLER", "AWS_LAMBDA_FUNCTION_VERSION")},
        "custom": (context.client_context.custom if context.client_context else None),
    }
"""


@pytest.fixture
def fn(lam) -> str:
    """Function "app"; tests that use it run it, so they are marked sandbox."""
    lam.create_function(
        FunctionName="app",
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": APP})},
        Timeout=2,
        MemorySize=128,
        Environment={"Variables": {"STAGE": "test"}},
    )
    return "app"


def call(lam: Any, event: object = None, **kw: Any) -> dict[str, Any]:
    resp = lam.invoke(FunctionName=kw.pop("name", "app"), Payload=json.dumps(event or {}), **kw)
    resp["body"] = json.loads(resp["Payload"].read() or b"null")
    return resp


@pytest.mark.sandbox
def test_result_context_env_and_warm_reuse(lam, fn) -> None:
    first = call(lam, {"n": 1}, LogType="Tail")
    assert first["StatusCode"] == 200 and "FunctionError" not in first
    body = first["body"]
    assert body["count"] == 1 and body["event"] == {"n": 1}
    assert body["version"] == "$LATEST" and body["memory"] == "128"
    assert 0 < body["remaining"] <= 2000
    assert body["arn"] == "arn:aws:lambda:us-east-1:000000000000:function:app"
    assert body["env"] == {
        "AWS_LAMBDA_FUNCTION_NAME": "app",
        "STAGE": "test",
        "AWS_REGION": "us-east-1",
        "LAMBDA_TASK_ROOT": "/var/task",
        "_HANDLER": "app.handler",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    }
    log = base64.b64decode(first["LogResult"]).decode()
    request_id = first["ResponseMetadata"]["RequestId"]
    assert log.startswith(f"START RequestId: {request_id} Version: $LATEST\n")
    assert f"handling None in {request_id}" in log
    assert f"END RequestId: {request_id}" in log
    assert f"REPORT RequestId: {request_id}\tDuration: " in log and "Init Duration" in log
    assert first["ExecutedVersion"] == "$LATEST"

    second = call(lam, {"n": 2}, LogType="Tail")
    assert second["body"]["count"] == 2  # same environment, module state kept
    assert "Init Duration" not in base64.b64decode(second["LogResult"]).decode()


@pytest.mark.sandbox
def test_errors_timeouts_oom_crash_and_recovery(lam, fn) -> None:
    failed = call(lam, {"action": "fail"})
    assert failed["FunctionError"] == "Unhandled"
    assert failed["body"]["errorType"] == "ValueError"
    assert failed["body"]["errorMessage"] == "bad thing"
    assert failed["body"]["requestId"] == failed["ResponseMetadata"]["RequestId"]
    assert any("raise ValueError" in line for line in failed["body"]["stackTrace"])
    assert call(lam)["body"]["count"] == 2  # an exception does not cost the environment

    timed = call(lam, {"action": "sleep", "seconds": 10})
    assert timed["FunctionError"] == "Unhandled"
    assert timed["body"]["errorType"] == "Sandbox.Timedout"
    assert timed["body"]["errorMessage"].endswith("Task timed out after 2.00 seconds")
    assert call(lam)["body"]["count"] == 1  # a fresh environment

    oom = call(lam, {"action": "oom"}, LogType="Tail")
    assert oom["FunctionError"] == "Unhandled"
    assert oom["body"]["errorType"] == "Runtime.OutOfMemory"
    assert "Max Memory Used: 12" in base64.b64decode(oom["LogResult"]).decode()
    assert call(lam)["body"]["count"] == 1

    crashed = call(lam, {"action": "exit"})
    assert crashed["body"]["errorType"] == "Runtime.ExitError"
    assert "exit status 3" in crashed["body"]["errorMessage"]
    assert call(lam)["body"]["count"] == 1

    big = call(lam, {"action": "big"})
    assert big["FunctionError"] == "Unhandled"
    assert big["body"]["errorType"] == "Function.ResponseSizeTooLarge"


@pytest.mark.sandbox
def test_init_errors(lam) -> None:
    code = make_zip({"app.py": "print('init says hi')\nimport not_a_module\n", "ok.py": "x = 1\n"})
    lam.create_function(
        FunctionName="broken",
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": code},
    )
    resp = call(lam, name="broken", LogType="Tail")
    assert resp["FunctionError"] == "Unhandled"
    assert resp["body"]["errorType"] == "Runtime.ImportModuleError"
    assert "Unable to import module 'app'" in resp["body"]["errorMessage"]
    log = base64.b64decode(resp["LogResult"]).decode()
    assert log.index("init says hi") < log.index("START RequestId")  # init output first
    lam.update_function_configuration(FunctionName="broken", Handler="ok.nope")
    resp = call(lam, name="broken")
    assert resp["body"]["errorType"] == "Runtime.HandlerNotFound"


@pytest.mark.sandbox
def test_versions_aliases_and_weighted_routing(lam, fn) -> None:
    lam.publish_version(FunctionName="app")
    lam.update_function_configuration(
        FunctionName="app", Environment={"Variables": {"STAGE": "v2"}}
    )
    lam.publish_version(FunctionName="app")
    lam.create_alias(
        FunctionName="app",
        Name="live",
        FunctionVersion="1",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}},
    )
    one = call(lam, Qualifier="1")
    assert one["ExecutedVersion"] == "1" and one["body"]["env"]["STAGE"] == "test"
    assert one["body"]["arn"].endswith(":app:1")
    seen = {call(lam, Qualifier="live")["ExecutedVersion"] for _ in range(40)}
    assert seen == {"1", "2"}  # 2^-40 odds of a false failure
    via_arn = call(lam, name="arn:aws:lambda:us-east-1:000000000000:function:app:live")
    assert via_arn["body"]["arn"].endswith(":app:live")


@pytest.mark.sandbox
def test_request_checks(lam, fn) -> None:
    dry = lam.invoke(FunctionName="app", InvocationType="DryRun")
    assert dry["StatusCode"] == 204
    with pytest.raises(lam.exceptions.RequestTooLargeException, match="6291456 bytes"):
        lam.invoke(FunctionName="app", Payload=b'"' + b"x" * (6 * 1024 * 1024) + b'"')
    with pytest.raises(lam.exceptions.InvalidRequestContentException, match="json"):
        lam.invoke(FunctionName="app", Payload=b"{nope")
    # Lambda names what was invoked, $LATEST when no qualifier was given (recorded:
    # test_function_name_and_qualifier_validation[...-invoke]).
    arn = "arn:aws:lambda:us-east-1:000000000000:function"
    with pytest.raises(
        lam.exceptions.ResourceNotFoundException,
        match=rf"Function not found: {arn}:ghost:\$LATEST$",
    ):
        lam.invoke(FunctionName="ghost")
    with pytest.raises(
        lam.exceptions.ResourceNotFoundException,
        match=rf"Function not found: {arn}:app:nosuchalias$",
    ):
        lam.invoke(FunctionName="app", Qualifier="nosuchalias")
    ctx = base64.b64encode(json.dumps({"custom": {"tenant": "t1"}}).encode()).decode()
    assert call(lam, ClientContext=ctx)["body"]["custom"] == {"tenant": "t1"}
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="Client context"):
        lam.invoke(FunctionName="app", ClientContext="!!notbase64")


@pytest.mark.sandbox
def test_reserved_concurrency_throttles(lam, fn) -> None:
    lam.put_function_concurrency(FunctionName="app", ReservedConcurrentExecutions=0)
    with pytest.raises(lam.exceptions.TooManyRequestsException) as info:
        call(lam)
    assert info.value.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    lam.put_function_concurrency(FunctionName="app", ReservedConcurrentExecutions=1)
    call(lam)  # warm one environment first

    def slow(_: int) -> int:
        try:
            return call(lam, {"action": "sleep", "seconds": 1})["StatusCode"]
        except lam.exceptions.TooManyRequestsException:
            return 429

    with ThreadPoolExecutor(2) as ex:
        codes = sorted(ex.map(slow, range(2)))
    assert codes == [200, 429]


@pytest.mark.sandbox
def test_no_network_when_tagged(lam) -> None:
    code = make_zip(
        {
            "net.py": (
                "import socket\n"
                "def handler(event, context):\n"
                "    try:\n"
                "        addr = ('127.0.0.1', event['port'])\n"
                "        socket.create_connection(addr, timeout=1).close()\n"
                "        return 'connected'\n"
                "    except OSError as e:\n"
                "        return type(e).__name__\n"
            )
        }
    )
    for name, tags in (("open", {}), ("sealed", {"nimbus:network": "none"})):
        lam.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=ROLE,
            Handler="net.handler",
            Code={"ZipFile": code},
            Tags=tags,
        )
    port = int(lam.meta.endpoint_url.rsplit(":", 1)[1])
    assert call(lam, {"port": port}, name="open")["body"] == "connected"
    assert call(lam, {"port": port}, name="sealed")["body"] != "connected"


@pytest.mark.sandbox
def test_provided_runtime_with_awslambdaric(lam, tmp_path) -> None:
    from tests.conftest import awslambdaric_package

    code = awslambdaric_package(tmp_path)
    lam.create_function(
        FunctionName="custom",
        Runtime="provided.al2023",
        Role=ROLE,
        Handler="fn.handler",
        Code={"ZipFile": code},
    )
    resp = call(lam, {"hi": 1}, name="custom", LogType="Tail")
    assert resp["body"] == {"echo": {"hi": 1}, "runtime": "awslambdaric"}
    failed = call(lam, {"fail": True}, name="custom")
    assert failed["FunctionError"] == "Unhandled"
    assert failed["body"]["errorType"] == "KeyError"


def test_process_isolation_is_explicit_and_loud(tmp_path) -> None:
    """--isolation process runs functions without a sandbox, and says so."""
    from tests.conftest import HELLO, output_of

    with live_server(tmp_path / "data", args=["--isolation", "process"]) as server:
        lam = server.client()
        lam.create_function(
            FunctionName="plain",
            Runtime="python3.12",
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": HELLO},
        )
        for n in range(3):  # cold (stem cell or zygote), then warm
            assert call(lam, {"n": n}, name="plain")["body"] == {"hello": {"n": n}}
    output = output_of(server)
    assert "SANDBOX ISOLATION IS OFF" in output
    assert "exited while idle" not in output  # stem cells survive in process mode too
