"""``provided.*`` runtimes: the Lambda Runtime API served inside the sandbox, driven by
the real awslambdaric and by a bootstrap that probes the API's contract."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from nimbus.sandbox import Environment, InitError
from tests.sandbox.conftest import Sandbox, invocation, spec

pytestmark = pytest.mark.sandbox

# The interpreter awslambdaric's C extension was built for; it is a runtime prefix, so
# the sandbox can see it.
PYTHON = os.path.realpath(getattr(sys, "_base_executable", sys.executable))

RIC_APP = '''
import os

def handler(event, context):
    print("ric says hi to", event["name"])
    return {"hello": event["name"], "request_id": context.aws_request_id,
            "function": context.function_name, "memory": context.memory_limit_in_mb,
            "api": os.environ["AWS_LAMBDA_RUNTIME_API"]}

def fail(event, context):
    raise KeyError("nope")
'''


def _site_packages() -> Path:
    found = importlib.util.find_spec("awslambdaric")
    if found is None or not found.submodule_search_locations:
        if os.environ.get("CI"):
            pytest.fail("awslambdaric is not installed (pip install -e .[test])")
        pytest.skip("awslambdaric is not installed")
    return Path(next(iter(found.submodule_search_locations))).parent


@pytest.fixture(scope="module")
def ric_code(sb: Sandbox) -> Path:
    """A function that vendors awslambdaric, like a container image would."""
    bootstrap = f'#!/bin/sh\ncd "$LAMBDA_TASK_ROOT"\nexec {PYTHON} -m awslambdaric "$_HANDLER"\n'
    code = sb.package({"app.py": RIC_APP, "bootstrap": bootstrap}, executable=("bootstrap",))
    site = _site_packages()
    for name in ("awslambdaric", "simplejson"):
        shutil.copytree(site / name, code / name, ignore=shutil.ignore_patterns("__pycache__"))
    for so in site.glob("runtime_client*.so"):
        shutil.copy(so, code / so.name)
    for dirpath, _dirs, files in os.walk(code):
        os.chmod(dirpath, 0o755)
        for f in files:
            os.chmod(os.path.join(dirpath, f), 0o755 if f == "bootstrap" else 0o644)
    return code


def test_awslambdaric_end_to_end(sb: Sandbox, ric_code: Path) -> None:
    env = sb.start(spec(ric_code, "app.handler", runtime="provided.al2023", memory_mb=256))
    try:
        assert env.init_duration_ms > 0
        for name in ("a", "b"):
            inv = invocation(json.dumps({"name": name}))
            outcome = sb.loop.run(env.invoke(inv))
            assert outcome.function_error is None, outcome.payload
            result = json.loads(outcome.payload)
            assert result["hello"] == name
            assert result["request_id"] == inv.request_id
            assert result["function"] == "fn" and result["memory"] == "256"
            assert result["api"].startswith("127.0.0.1:")
            assert f"ric says hi to {name}".encode() in outcome.logs
    finally:
        sb.stop(env)


def test_awslambdaric_unhandled_error(sb: Sandbox, ric_code: Path) -> None:
    env = sb.start(spec(ric_code, "app.fail", runtime="provided.al2"))
    try:
        outcome = sb.invoke(env)
        error = json.loads(outcome.payload)
        assert outcome.function_error == "Unhandled"
        assert error["errorType"] == "KeyError" and error["errorMessage"] == "'nope'"
        assert outcome.reusable
    finally:
        sb.stop(env)


def test_awslambdaric_import_error(sb: Sandbox, ric_code: Path) -> None:
    with pytest.raises(InitError) as caught:
        sb.start(spec(ric_code, "missing.handler", runtime="provided.al2023"))
    assert caught.value.error_type == "Runtime.ImportModuleError"
    assert caught.value.error_message == (
        "Unable to import module 'missing': No module named 'missing'"
    )


# A bootstrap that exercises the Runtime API and reports what it saw.
PROBE = r'''#!PYTHON
import http.client, json, os, sys

API = os.environ["AWS_LAMBDA_RUNTIME_API"]
BASE = "/2018-06-01/runtime"
seen = []


def call(method, path, body=None, headers=None):
    conn = http.client.HTTPConnection(API)
    conn.request(method, BASE + path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, dict(resp.getheaders()), data


def record(what, status, data):
    seen.append({"call": what, "status": status, "body": data.decode(errors="replace")})


while True:
    status, headers, body = call("GET", "/invocation/next")
    rid = headers["Lambda-Runtime-Aws-Request-Id"]
    case = json.loads(body)["case"]
    if case == "headers":
        call("POST", f"/invocation/{rid}/response", json.dumps(headers))
    elif case == "misuse":
        record("unknown id", *call("POST", "/invocation/not-a-request/response", b"{}")[::2])
        record("next again", *call("GET", "/invocation/next")[::2])
        record("unknown path", *call("GET", "/nope")[::2])
        record("init error late", *call("POST", "/init/error", b"{}")[::2])
        status, _, data = call("POST", f"/invocation/{rid}/response", b'"ok"')
        record("response", status, data)
        record("response twice", *call("POST", f"/invocation/{rid}/response", b"{}")[::2])
    elif case == "too_large":
        big = b"x" * (6 * 1024 * 1024 + 101)
        status, _, data = call("POST", f"/invocation/{rid}/response", big)
        record("too large", status, data)
    elif case == "error":
        status, _, data = call("POST", f"/invocation/{rid}/error",
                               json.dumps({"errorMessage": "bad", "errorType": "Custom.Err"}),
                               {"Lambda-Runtime-Function-Error-Type": "Custom.Err"})
        record("error", status, data)
    elif case == "report":
        call("POST", f"/invocation/{rid}/response", json.dumps(seen))
        seen.clear()
    elif case == "exit":
        print("bye", flush=True)
        sys.exit(5)
'''

INIT_FAILS = r'''#!PYTHON
import http.client, json, os
conn = http.client.HTTPConnection(os.environ["AWS_LAMBDA_RUNTIME_API"])
print("failing init", flush=True)
conn.request("POST", "/2018-06-01/runtime/init/error",
             json.dumps({"errorMessage": "cannot start", "errorType": "Custom.Init"}),
             {"Lambda-Runtime-Function-Error-Type": "Custom.Init"})
conn.getresponse().read()
'''


@pytest.fixture(scope="module")
def probe(sb: Sandbox) -> Iterator[Environment]:
    code = sb.package({"bootstrap": PROBE.replace("PYTHON", PYTHON)}, executable=("bootstrap",))
    env = sb.start(spec(code, "unused", runtime="provided.al2023"))
    yield env
    sb.stop(env)


def _report(sb: Sandbox, env) -> dict[str, dict]:
    return {r["call"]: r for r in sb.call(env, {"case": "report"})}


def test_next_carries_lambdas_headers(sb: Sandbox, probe) -> None:
    cc = json.dumps({"custom": {"a": 1}})
    ci = json.dumps({"cognitoIdentityId": "x"})
    inv = invocation(json.dumps({"case": "headers"}), trace_id="Root=1-t", client_context=cc,
                     cognito_identity=ci, invoked_function_arn="arn:aws:lambda:us-east-1:"
                     "000000000000:function:fn:7")
    outcome = sb.loop.run(probe.invoke(inv))
    headers = json.loads(outcome.payload)
    assert headers["Lambda-Runtime-Aws-Request-Id"] == inv.request_id
    assert headers["Lambda-Runtime-Deadline-Ms"] == str(inv.deadline_ms)
    assert headers["Lambda-Runtime-Invoked-Function-Arn"] == inv.invoked_function_arn
    assert headers["Lambda-Runtime-Trace-Id"] == "Root=1-t"
    assert headers["Lambda-Runtime-Client-Context"] == cc
    assert headers["Lambda-Runtime-Cognito-Identity"] == ci
    assert headers["Content-Type"] == "application/json"


def test_misuse_is_refused_like_lambda(sb: Sandbox, probe) -> None:
    outcome = sb.invoke(probe, {"case": "misuse"})
    assert outcome.function_error is None and json.loads(outcome.payload) == "ok"
    seen = _report(sb, probe)
    assert seen["unknown id"]["status"] == 400
    assert json.loads(seen["unknown id"]["body"]) == {
        "errorMessage": "Invalid request ID", "errorType": "InvalidRequestID"}
    assert seen["next again"]["status"] == 403
    assert json.loads(seen["next again"]["body"])["errorType"] == "InvalidStateTransition"
    assert seen["unknown path"]["status"] == 404
    assert seen["init error late"]["status"] == 403
    assert seen["response"]["status"] == 202
    assert json.loads(seen["response"]["body"]) == {"status": "OK"}
    assert seen["response twice"]["status"] == 403


def test_response_over_6mb_is_413(sb: Sandbox, probe) -> None:
    outcome = sb.invoke(probe, {"case": "too_large"})
    assert outcome.function_error == "Unhandled"
    error = json.loads(outcome.payload)
    assert error == {
        "errorMessage": "Response payload size (6291557 bytes) exceeded maximum allowed "
        "payload size (6291556 bytes).",
        "errorType": "Function.ResponseSizeTooLarge",
    }
    seen = _report(sb, probe)["too large"]
    assert seen["status"] == 413
    assert json.loads(seen["body"]) == {
        "errorMessage": "Exceeded maximum allowed payload size (6291556 bytes).",
        "errorType": "RequestEntityTooLarge",
    }


def test_error_endpoint(sb: Sandbox, probe) -> None:
    outcome = sb.invoke(probe, {"case": "error"})
    assert outcome.function_error == "Unhandled"
    assert json.loads(outcome.payload) == {"errorMessage": "bad", "errorType": "Custom.Err"}
    assert _report(sb, probe)["error"]["status"] == 202


def test_init_error_endpoint(sb: Sandbox) -> None:
    code = sb.package({"bootstrap": INIT_FAILS.replace("PYTHON", PYTHON)},
                      executable=("bootstrap",))
    with pytest.raises(InitError) as caught:
        sb.start(spec(code, "unused", runtime="provided.al2023"))
    assert caught.value.error_type == "Custom.Init"
    assert caught.value.error_message == "cannot start"
    assert b"failing init" in caught.value.logs


def test_bootstrap_exit_is_runtime_exit_error(sb: Sandbox) -> None:
    code = sb.package({"bootstrap": PROBE.replace("PYTHON", PYTHON)}, executable=("bootstrap",))
    env = sb.start(spec(code, "unused", runtime="provided.al2023"))
    inv = invocation(json.dumps({"case": "exit"}))
    outcome = sb.loop.run(env.invoke(inv))
    assert json.loads(outcome.payload) == {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {inv.request_id} Error: Runtime exited with error: "
        "exit status 5",
    }
    assert not outcome.reusable and outcome.logs == b"bye\n"


@pytest.mark.parametrize("files, executable, message", [
    ({"app.py": ""}, (), "Couldn't find valid bootstrap(s): [/var/task/bootstrap /opt/bootstrap]"),
    ({"bootstrap": "#!/bin/sh\n"}, (),
     "Couldn't find valid bootstrap(s): [/var/task/bootstrap /opt/bootstrap]"),
])
def test_invalid_entrypoint(sb: Sandbox, files, executable, message) -> None:
    code = sb.package(files, executable=executable)
    with pytest.raises(InitError) as caught:
        sb.start(spec(code, "unused", runtime="provided.al2023"))
    assert caught.value.error_type == "Runtime.InvalidEntrypoint"
    assert caught.value.error_message == message


NEIGHBOUR = '''
import socket

def handler(event, context):
    try:
        s = socket.create_connection(("127.0.0.1", event["port"]), timeout=2)
        s.sendall(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
        return s.recv(100).decode()
    except OSError as e:
        return type(e).__name__
'''


def test_runtime_api_port_is_private_to_its_environment(sb: Sandbox, ric_code: Path) -> None:
    """Each environment has a network namespace of its own: the Runtime API listens on
    its loopback (Lambda's 127.0.0.1:9001), which neither a neighbour nor the host can
    reach."""
    env = sb.start(spec(ric_code, "app.handler", runtime="provided.al2023"))
    neighbour = sb.start(spec(sb.package({"app.py": NEIGHBOUR})))
    try:
        api = sb.call(env, {"name": "x"})["api"]
        assert api == "127.0.0.1:9001"
        # The neighbour's 127.0.0.1:9001 is its own loopback, where nothing listens.
        assert sb.call(neighbour, {"port": 9001}) == "ConnectionRefusedError"
        # The host's 127.0.0.1:9001 is not the API.
        with contextlib.suppress(ConnectionRefusedError), \
                socket.create_connection(("127.0.0.1", 9001), timeout=2) as s:
            s.sendall(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n\r\n")
            assert not s.recv(100).startswith(b"HTTP/1.1 200")
        assert sb.call(env, {"name": "still served"})["hello"] == "still served"
    finally:
        sb.stop(neighbour)
        sb.stop(env)
