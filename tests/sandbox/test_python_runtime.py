"""The Python runtime in real sandboxes: results, Lambda's error shapes, logs, context,
environment variables, limits."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from nimbus.sandbox import Environment, InitError, IsolationUnavailable, SandboxManager, catalog
from tests.sandbox.conftest import Sandbox, invocation, spec

pytestmark = pytest.mark.sandbox

APP = '''
import ctypes, json, logging, os, sys, time

counter = 0
print("module loaded")
logger = logging.getLogger()
logger.setLevel(logging.INFO)


def handler(event, context):
    global counter
    counter += 1
    return {"hello": event.get("name"), "counter": counter}


def fail(event, context):
    raise ValueError("boom")


def marshal(event, context):
    return {"not": object()}


def sleepy(event, context):
    print("going to sleep", flush=True)
    time.sleep(30)


def hog(event, context):
    chunks = []
    while True:
        chunks.append(bytearray(16 * 1024 * 1024))


def leave(event, context):
    print("leaving", flush=True)
    os._exit(3)


def segfault(event, context):
    ctypes.string_at(0)


def big(event, context):
    return "x" * (7 * 1024 * 1024)


def chatty(event, context):
    print("out", event["n"], context.aws_request_id)
    print("err", event["n"], file=sys.stderr)
    logger.info("logged %s", event["n"])
    return event["n"]


def paced(event, context):
    sys.stdout.write(event["text"])
    time.sleep(event["pause"])
    return None


def introspect(event, context):
    cc = context.client_context
    return {
        "env": dict(os.environ),
        "sys_path": sys.path[:4],
        "cwd": os.getcwd(),
        "uid": os.getuid(),
        "pid": os.getpid(),
        "context": {
            "aws_request_id": context.aws_request_id,
            "function_name": context.function_name,
            "function_version": context.function_version,
            "invoked_function_arn": context.invoked_function_arn,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "log_group_name": context.log_group_name,
            "log_stream_name": context.log_stream_name,
            "remaining": context.get_remaining_time_in_millis(),
            "cognito_identity_id": context.identity.cognito_identity_id,
            "cognito_identity_pool_id": context.identity.cognito_identity_pool_id,
            "custom": cc.custom if cc else None,
            "client_env": cc.env if cc else None,
            "installation_id": cc.client.installation_id if cc else None,
        },
    }


def layered(event, context):
    import shared
    return shared.WHO
'''


@pytest.fixture(scope="module")
def code(sb: Sandbox) -> Path:
    return sb.package({"app.py": APP})


@pytest.fixture(scope="module")
def warm(sb: Sandbox, code: Path) -> Iterator[Environment]:
    env = sb.start(spec(code, memory_mb=256, environment={"GREETING": "hi"}))
    yield env
    sb.stop(env)


def test_result_returned(sb: Sandbox, warm) -> None:
    outcome = sb.invoke(warm, {"name": "nimbus"})
    assert outcome.function_error is None
    assert json.loads(outcome.payload)["hello"] == "nimbus"
    assert outcome.reusable and warm.alive
    assert outcome.duration_ms > 0
    assert 1 <= outcome.max_memory_used_mb <= 256


def test_init_phase(warm) -> None:
    assert warm.init_duration_ms > 0
    assert b"module loaded" in warm.init_logs


def test_module_state_persists_across_warm_invokes(sb: Sandbox, warm) -> None:
    counters = [sb.call(warm, {})["counter"] for _ in range(3)]
    assert counters == [counters[0], counters[0] + 1, counters[0] + 2]


def test_unhandled_error_has_lambdas_shape(sb: Sandbox, code) -> None:
    env = sb.start(spec(code, "app.fail"))
    try:
        outcome = sb.invoke(env)
        error = json.loads(outcome.payload)
        assert outcome.function_error == "Unhandled"
        assert list(error) == ["errorMessage", "errorType", "requestId", "stackTrace"]
        assert error["errorMessage"] == "boom"
        assert error["errorType"] == "ValueError"
        assert len(error["requestId"]) == 36
        assert error["stackTrace"][0].startswith('  File "/var/task/app.py", line')
        assert "nimbus" not in "".join(error["stackTrace"])
        assert b"[ERROR] ValueError: boom" in outcome.logs
        assert outcome.reusable  # an exception does not end the environment
        assert sb.invoke(env).function_error == "Unhandled"
    finally:
        sb.stop(env)


@pytest.mark.parametrize("handler, error_type, message", [
    ("missing.handler", "Runtime.ImportModuleError",
     "Unable to import module 'missing': No module named 'missing'"),
    ("app.nope", "Runtime.HandlerNotFound", "Handler 'nope' missing on module 'app'"),
    ("nodot", "Runtime.MalformedHandlerName",
     "Bad handler 'nodot': not enough values to unpack (expected 2, got 1)"),
])
def test_init_errors(sb: Sandbox, code, handler: str, error_type: str, message: str) -> None:
    with pytest.raises(InitError) as caught:
        sb.start(spec(code, handler))
    err = caught.value
    assert (err.error_type, err.error_message) == (error_type, message)
    payload = json.loads(err.payload)
    assert payload["errorType"] == error_type and payload["errorMessage"] == message
    assert f"[ERROR] {error_type}: {message}".encode() in err.logs


def test_syntax_error_in_handler_module(sb: Sandbox) -> None:
    code = sb.package({"app.py": "def handler(event, context)\n    return 1\n"})
    with pytest.raises(InitError) as caught:
        sb.start(spec(code))
    assert caught.value.error_type == "Runtime.UserCodeSyntaxError"
    assert caught.value.error_message.startswith("Syntax error in module 'app'")


def test_handler_in_a_package_path(sb: Sandbox) -> None:
    code = sb.package({"pkg/__init__.py": "", "pkg/mod.py": "def fn(e, c):\n    return 'deep'\n"})
    env = sb.start(spec(code, "pkg/mod.fn"))
    try:
        assert sb.call(env) == "deep"
    finally:
        sb.stop(env)


def test_marshal_error(sb: Sandbox, code) -> None:
    env = sb.start(spec(code, "app.marshal"))
    try:
        error = json.loads(sb.invoke(env).payload)
        assert error["errorType"] == "Runtime.MarshalError"
        assert error["errorMessage"].startswith("Unable to marshal response: Object of type")
    finally:
        sb.stop(env)


def test_response_too_large(sb: Sandbox, code) -> None:
    env = sb.start(spec(code, "app.big"))
    try:
        outcome = sb.invoke(env)
        error = json.loads(outcome.payload)
        assert outcome.function_error == "Unhandled"
        assert error["errorType"] == "Function.ResponseSizeTooLarge"
        assert "exceeded maximum allowed payload size (6291556 bytes)" in error["errorMessage"]
    finally:
        sb.stop(env)


def test_timeout_kills_the_environment(sb: Sandbox, code) -> None:
    env = sb.start(spec(code, "app.sleepy", timeout_s=1))
    inv = invocation(b"{}", timeout_s=1)
    outcome = sb.loop.run(env.invoke(inv))
    assert json.loads(outcome.payload) == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": f"RequestId: {inv.request_id} Error: Task timed out after 1.00 seconds",
    }
    assert outcome.function_error == "Unhandled"
    assert not outcome.reusable and not env.alive
    assert 900 < outcome.duration_ms < 2000
    assert b"going to sleep" in outcome.logs


def test_out_of_memory(sb: Sandbox, code) -> None:
    env = sb.start(spec(code, "app.hog", memory_mb=64))
    inv = invocation(b"{}", timeout_s=10)
    outcome = sb.loop.run(env.invoke(inv))
    assert json.loads(outcome.payload) == {
        "errorType": "Runtime.OutOfMemory",
        "errorMessage": f"RequestId: {inv.request_id} Error: Runtime exited with error: "
        "signal: killed",
    }
    assert not outcome.reusable and not env.alive
    assert outcome.max_memory_used_mb >= 60


@pytest.mark.parametrize("handler, reason", [
    ("app.leave", "exit status 3"),
    ("app.segfault", "signal: segmentation fault"),
])
def test_runtime_exit(sb: Sandbox, code, handler: str, reason: str) -> None:
    env = sb.start(spec(code, handler))
    inv = invocation()
    outcome = sb.loop.run(env.invoke(inv))
    assert json.loads(outcome.payload) == {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {inv.request_id} Error: Runtime exited with error: {reason}",
    }
    assert not outcome.reusable and not env.alive
    if handler == "app.leave":
        assert outcome.logs == b"leaving\n"


def test_logs_are_attributed_to_their_invocation(sb: Sandbox, code) -> None:
    env = sb.start(spec(code, "app.chatty"))
    try:
        for n in range(3):
            inv = invocation(json.dumps({"n": n}))
            outcome = sb.loop.run(env.invoke(inv))
            lines = outcome.logs.decode().splitlines()
            assert lines[0] == f"out {n} {inv.request_id}"
            assert lines[1] == f"err {n}"
            level, _ts, request_id, message = lines[2].split("\t")
            assert (level, request_id, message) == ("[INFO]", inv.request_id, f"logged {n}")
            assert len(lines) == 3
    finally:
        sb.stop(env)


def test_logs_are_cut_whether_or_not_the_server_read_them_already(sb: Sandbox, code) -> None:
    # The runtime skips its end marker when the server has read every byte (after a
    # pause, or when nothing was printed) and writes it when output is still in the pipe
    # (a burst beyond the server's 64 KiB reads); either way each invocation gets
    # exactly its own output.
    env = sb.start(spec(code, "app.paced"))
    try:
        burst = "".join(f"{i:07d}\n" for i in range(40_000))  # 320 KB
        cases = [("", 0), ("after a pause\n", 0.05), (burst, 0), ("", 0), ("no pause\n", 0),
                 (burst, 0.05), ("last\n", 0)]
        for text, pause in cases:
            inv = invocation(json.dumps({"text": text, "pause": pause}))
            outcome = sb.loop.run(env.invoke(inv))
            assert outcome.function_error is None
            assert outcome.logs.decode() == text
    finally:
        sb.stop(env)


def test_environment_variables_and_context(sb: Sandbox, code) -> None:
    cc = {"custom": {"k": "v"}, "env": {"platform": "x"}, "client": {"installation_id": "i-1"}}
    ci = {"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool-1"}
    env = sb.start(spec(code, "app.introspect", name="intro", memory_mb=256, timeout_s=7,
                        environment={"GREETING": "hi", "AWS_REGION": "nope"}))
    try:
        arn = "arn:aws:lambda:us-east-1:000000000000:function:intro:live"
        result = sb.call(env, {}, trace_id="Root=1-abc;Parent=def;Sampled=1",
                         client_context=json.dumps(cc), cognito_identity=json.dumps(ci),
                         invoked_function_arn=arn)
    finally:
        sb.stop(env)
    e = result["env"]
    assert e["GREETING"] == "hi"
    assert e["AWS_REGION"] == e["AWS_DEFAULT_REGION"] == "us-east-1"  # reserved wins
    assert e["AWS_LAMBDA_FUNCTION_NAME"] == "intro"
    assert e["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert e["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert e["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.12"
    assert e["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/intro"
    assert "/[$LATEST]" in e["AWS_LAMBDA_LOG_STREAM_NAME"]
    assert e["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
    assert e["LAMBDA_TASK_ROOT"] == "/var/task"
    assert e["LAMBDA_RUNTIME_DIR"] == "/var/runtime"
    assert e["_HANDLER"] == "app.introspect"
    assert e["TZ"] == ":UTC" and e["LANG"] == "en_US.UTF-8"
    assert "/usr/bin" in e["PATH"] and "/opt/lib" in e["LD_LIBRARY_PATH"]
    assert "/var/task" in e["PYTHONPATH"] and "/opt/python" in e["PYTHONPATH"]
    assert e["_X_AMZN_TRACE_ID"] == "Root=1-abc;Parent=def;Sampled=1"
    assert result["sys_path"][0] == "/var/task"
    assert result["cwd"] == "/var/task"
    assert result["uid"] >= 60000 and result["pid"] == 1
    c = result["context"]
    assert len(c["aws_request_id"]) == 36
    assert c["function_name"] == "intro" and c["function_version"] == "$LATEST"
    assert c["invoked_function_arn"] == arn
    assert c["memory_limit_in_mb"] == "256"  # a string, as on Lambda
    assert c["log_group_name"] == "/aws/lambda/intro"
    assert c["log_stream_name"] == e["AWS_LAMBDA_LOG_STREAM_NAME"]
    assert 5000 < c["remaining"] <= 7000
    assert (c["cognito_identity_id"], c["cognito_identity_pool_id"]) == ("id-1", "pool-1")
    assert c["custom"] == {"k": "v"} and c["client_env"] == {"platform": "x"}
    assert c["installation_id"] == "i-1"


def test_trace_id_is_per_invocation(sb: Sandbox, code) -> None:
    env = sb.start(spec(code, "app.introspect"))
    try:
        first = sb.call(env, {}, trace_id="Root=1-one")
        second = sb.call(env, {})
    finally:
        sb.stop(env)
    assert first["env"]["_X_AMZN_TRACE_ID"] == "Root=1-one"
    assert "_X_AMZN_TRACE_ID" not in second["env"]


def test_layers_later_wins(sb: Sandbox, code) -> None:
    one = sb.package({"python/shared.py": "WHO = 'one'\n", "python/only_one.py": ""})
    two = sb.package({"python/shared.py": "WHO = 'two'\n"})
    env = sb.start(spec(code, "app.layered", layer_dirs=[one, two]))
    try:
        assert sb.call(env) == "two"
    finally:
        sb.stop(env)


@pytest.mark.parametrize("runtime", [r for r in catalog.names() if r.startswith("python")])
def test_every_python_runtime(sb: Sandbox, runtime: str) -> None:
    code = sb.package({"app.py": "import sys\ndef handler(e, c):\n"
                                 "    return list(sys.version_info[:2])\n"})
    env = sb.start(spec(code, runtime=runtime))
    try:
        assert sb.call(env) == [int(x) for x in runtime.removeprefix("python").split(".")]
    finally:
        sb.stop(env)


def test_no_network_environment_has_only_loopback(sb: Sandbox) -> None:
    code = sb.package({"app.py": "import socket\ndef handler(e, c):\n"
                                 "    return [n for _, n in socket.if_nameindex()]\n"})
    env = sb.start(spec(code, network=False))
    try:
        assert sb.call(env) == ["lo"]
    finally:
        sb.stop(env)


def test_process_isolation_is_explicit_and_loud(sb: Sandbox, tmp_path, caplog) -> None:
    code = sb.package({"app.py": "import os\ndef handler(e, c):\n    return os.getcwd()\n"})

    async def run() -> str:
        manager = SandboxManager(tmp_path / "work", isolation="process")
        try:
            env = await manager.start(spec(code))
            outcome = await env.invoke(invocation())
            return json.loads(outcome.payload)
        finally:
            await manager.close()

    with caplog.at_level(logging.WARNING, logger="nimbus.sandbox.manager"):
        assert sb.loop.run(run()) == str(code)
    assert "SANDBOX ISOLATION IS OFF" in caplog.text


def test_isolation_unavailable_is_never_a_fallback(sb: Sandbox, tmp_path, monkeypatch) -> None:
    code = sb.package({"app.py": "def handler(e, c):\n    return 1\n"})
    monkeypatch.setattr("nimbus.sandbox.manager.os.geteuid", lambda: 1000)

    async def run() -> None:
        manager = SandboxManager(tmp_path / "work")
        try:
            await manager.start(spec(code))
        finally:
            await manager.close()

    with pytest.raises(IsolationUnavailable, match="needs root"):
        sb.loop.run(run())
