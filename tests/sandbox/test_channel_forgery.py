"""A function that writes its own frames on the control channel, against a real ``nimbus
up`` driven with boto3: the server takes nothing it did not ask for.

The function finds the runtime's control socket as any code in its process can (in
/proc/self/fd: the runtime moved it off fd 3, which only keeps honest code from
stumbling on it) and writes on it: a 40 MB result (Lambda's limit is 6 MB), malformed
frames of every kind, a result left behind by a thread for the next invocation. Each
forged frame ends the environment as a crash (Runtime.ExitError, with a line in the log
saying what the channel carried), the server's memory does not grow with what was
written, the next invocation runs in a fresh environment, and a leftover result never
answers another invocation.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig

from tests.conftest import ROLE, live_server, make_zip, python_runtime
from tests.nimbus_process import NimbusProcess

pytestmark = pytest.mark.sandbox

FORGER = r'''
import os
import socket
import struct
import sys
import threading
import uuid

ENVIRONMENT = uuid.uuid4().hex  # which environment answered
_go = threading.Event()
_sent = threading.Event()


def control_socket():
    """The runtime's control socket, found as any code in this process can."""
    for name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink("/proc/self/fd/" + name).startswith("socket:"):
                continue
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        if sock.family == socket.AF_UNIX:
            return sock, int(name)
        sock.detach()
    raise RuntimeError("no control socket")


def own_tag():
    """The tag of the invocation in flight, read from the runtime's frame (None if the
    runtime's frames have none)."""
    frame = sys._getframe()
    while frame is not None:
        header = frame.f_locals.get("header")
        if isinstance(header, dict) and header.get("t") == "invoke":
            return header.get("tag")
        frame = frame.f_back
    raise RuntimeError("no invocation header on the stack")


def frame(header, body=b"", body_len=None):
    size = len(body) if body_len is None else body_len
    return struct.pack("!II", len(header), size) + header + body


def result_header(tag):
    """A result's header as the runtime writes it."""
    return b'{"t":"result","error":null%s}' % (b',"tag":%d' % tag if tag is not None else b"")


def leave_behind(sock, data):
    _go.wait()
    sock.sendall(data)
    _sent.set()


def handler(event, context):
    kind = event.get("kind", "hello")
    if kind == "hello":
        return {"environment": ENVIRONMENT, "fd": control_socket()[1]}
    sock, _ = control_socket()
    if kind == "big":  # a real result's header, with a 40 MB body
        sock.sendall(frame(result_header(own_tag()), body_len=40 << 20))
        chunk = b"x" * (1 << 20)
        for _ in range(40):
            sock.sendall(chunk)  # the server reads none of it: this blocks until killed
        return "sent"
    if kind == "leave":  # a thread answers the next invocation
        data = frame(result_header(own_tag() if event["tagged"] else None), b'"leftover"')
        threading.Thread(target=leave_behind, args=(sock, data), daemon=True).start()
        return {"environment": ENVIRONMENT}
    if kind == "trigger":  # the invocation the leftover tries to answer
        _go.set()
        _sent.wait(10)
        return {"environment": ENVIRONMENT, "sent": _sent.is_set()}
    forged = {
        "header-length": struct.pack("!II", 0xFFFFFFFF, 0),
        "not-json": frame(b'{"t": "result", "err'),
        "not-an-object": frame(b'["result", null]'),
        "unknown-type": frame(b'{"t":"bogus"}'),
        "untagged": frame(b'{"t":"result","error":null}', b'"forged"'),
        "bad-field": frame(b'{"t":"result","error":null,"tag":"%s"}' % str(own_tag()).encode(),
                           b"1"),
        "truncated": struct.pack("!II", 16, 0)[:5],  # the runtime's own frame follows
    }[kind]
    sock.sendall(forged)
    return {"environment": ENVIRONMENT}
'''

MALFORMED = [
    "header-length",
    "not-json",
    "not-an-object",
    "unknown-type",
    "untagged",
    "bad-field",
    "truncated",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NimbusProcess]:
    with live_server(tmp_path_factory.mktemp("forgery") / "data") as proc:
        yield proc


@pytest.fixture(scope="module")
def lam(server: NimbusProcess) -> Any:
    return boto3.client(
        "lambda",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=BotoConfig(retries={"max_attempts": 0}, read_timeout=120, max_pool_connections=32),
    )


@pytest.fixture
def forger(lam: Any) -> str:
    name = f"forger-{uuid.uuid4().hex[:8]}"
    lam.create_function(
        FunctionName=name,
        Runtime=python_runtime(),
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": FORGER})},
        Timeout=30,
    )
    return name


def invoke(lam: Any, name: str, event: dict) -> tuple[dict, Any, str]:
    """(the response, its decoded payload, its log tail)."""
    response = lam.invoke(FunctionName=name, Payload=json.dumps(event), LogType="Tail")
    payload = json.loads(response["Payload"].read())
    return response, payload, base64.b64decode(response.get("LogResult", "")).decode()


def assert_crashed(response: dict, payload: Any, logs: str, carried: str) -> None:
    assert response["StatusCode"] == 200, response
    assert response.get("FunctionError") == "Unhandled", payload
    assert payload["errorType"] == "Runtime.ExitError", payload
    assert "Runtime exited with error: signal: killed" in payload["errorMessage"]
    assert "[nimbus] environment stopped: its control channel carried" in logs, logs
    assert carried in logs, logs


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def server_pid(server: NimbusProcess) -> int:
    assert server.proc is not None
    return server.proc.pid


def test_the_control_socket_is_off_fd_3(lam: Any, forger: str) -> None:
    _, payload, _ = invoke(lam, forger, {})
    assert payload["fd"] > 3


def test_a_forged_40_mb_frame_is_a_crash_and_costs_the_server_nothing(
    server: NimbusProcess, lam: Any, forger: str
) -> None:
    invoke(lam, forger, {})  # warm: the server's code paths and an environment
    before = rss_kb(server_pid(server))
    response, payload, logs = invoke(lam, forger, {"kind": "big"})
    grown = rss_kb(server_pid(server)) - before
    assert_crashed(response, payload, logs, "a frame body of 41943040 bytes (at most 6291556)")
    assert grown < 8 * 1024, f"the server grew by {grown} kB"
    server.wait_output("broke the control protocol")
    # The environment was replaced: the next invocation is answered by a new one.
    _, after, _ = invoke(lam, forger, {})
    assert "environment" in after


def test_sixteen_forged_40_mb_frames_at_once(server: NimbusProcess, lam: Any, forger: str) -> None:
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda _: invoke(lam, forger, {}), range(16)))  # 16 warm environments
        before = rss_kb(server_pid(server))
        answers = list(pool.map(lambda _: invoke(lam, forger, {"kind": "big"}), range(16)))
    grown = rss_kb(server_pid(server)) - before
    for response, payload, logs in answers:
        assert_crashed(response, payload, logs, "a frame body of 41943040 bytes")
    # 16 x 40 MB were written at the server; it kept none of it.
    assert grown < 16 * 1024, f"the server grew by {grown} kB"


@pytest.mark.parametrize("kind", MALFORMED)
def test_a_malformed_frame_is_a_crash_not_a_server_error(lam: Any, forger: str, kind: str) -> None:
    carried = {
        "header-length": "a frame header of 4294967295 bytes",
        "not-json": "a frame header that is not JSON",
        "not-an-object": "a frame header that is a JSON list, not an object",
        "unknown-type": "a frame of unknown type 'bogus'",
        "untagged": "a result without a valid tag (None)",
        "bad-field": "a result without a valid tag ('",
        "truncated": "a frame header",
    }[kind]
    _, first, _ = invoke(lam, forger, {})
    response, payload, logs = invoke(lam, forger, {"kind": kind})
    assert_crashed(response, payload, logs, carried)
    _, after, _ = invoke(lam, forger, {})
    assert after["environment"] != first["environment"]  # a new environment


def test_a_leftover_result_never_answers_the_next_invocation(lam: Any, forger: str) -> None:
    """A thread writes a well-formed result of the invocation that started it, while the
    next one runs: it is dropped (as Lambda's Runtime API refuses a response for an
    invocation that is over), and the environment carries on."""
    _, first, _ = invoke(lam, forger, {"kind": "leave", "tagged": True})
    response, second, _ = invoke(lam, forger, {"kind": "trigger"})
    assert "FunctionError" not in response, second
    assert second == {"environment": first["environment"], "sent": True}
    _, third, _ = invoke(lam, forger, {})
    assert third["environment"] == first["environment"]


def test_an_untagged_leftover_is_a_crash_of_the_invocation_it_lands_in(
    lam: Any, forger: str
) -> None:
    _, first, _ = invoke(lam, forger, {"kind": "leave", "tagged": False})
    response, payload, logs = invoke(lam, forger, {"kind": "trigger"})
    assert payload != "leftover"
    assert_crashed(response, payload, logs, "a result without a valid tag (None)")
    _, after, _ = invoke(lam, forger, {})
    assert after["environment"] != first["environment"]
