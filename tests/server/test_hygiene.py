"""Request hygiene against a real ``nimbus up``, as a client would meet it: slow and
oversized requests are answered and cut off (not held), deeply nested JSON and absurd
numeric ids are 400s in the AWS shape botocore parses (never 500s), and the Runtime API
in the sandbox serves clients that close their connection after each request (urllib).

The module's server runs with 1-second header and body timeouts (NIMBUS_HTTP_HEADER_TIMEOUT,
NIMBUS_HTTP_BODY_TIMEOUT) so that tests wait for the server's answer, not for a clock; the
connection limit is tested on the protocol itself, under uvicorn in this process.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
import uvicorn
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from nimbus.server.http import MAX_HEAD_BYTES, HttpProtocol
from tests.conftest import ROLE, live_server, make_zip
from tests.nimbus_process import NimbusProcess, free_port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NimbusProcess]:
    env = {"NIMBUS_HTTP_HEADER_TIMEOUT": "1", "NIMBUS_HTTP_BODY_TIMEOUT": "1"}
    with live_server(tmp_path_factory.mktemp("hygiene") / "data", env) as proc:
        yield proc


@pytest.fixture(scope="module")
def lam(server: NimbusProcess) -> Any:
    return boto3.client(
        "lambda",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=BotoConfig(retries={"max_attempts": 0}, read_timeout=120),
    )


def connect(server: NimbusProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.settimeout(30)  # a bound for a broken server; the server answers within ~1 s
    return sock


def answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Everything the server sends until it closes: (status, headers, body)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def assert_refused(got: tuple[int, dict[str, str], bytes], status: int, words: str) -> None:
    code, headers, body = got
    assert code == status, got
    assert headers["connection"] == "close"
    assert words in json.loads(body)["message"], body


# -- slow and oversized requests ---------------------------------------------------------


def test_clients_that_send_nothing_or_trickle_a_head_are_cut_off(server: NimbusProcess) -> None:
    """An attack held 800 connections with slow clients: each now gets 408 and is closed
    once its head is late, and the server still answers others."""
    idle = [connect(server) for _ in range(50)]
    trickling = [connect(server) for _ in range(50)]
    for sock in trickling:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: nimbus\r\nX-Slow: ")
    for sock in idle + trickling:
        assert_refused(answer(sock), 408, "did not arrive within 1 seconds")
    assert httpx.get(f"{server.endpoint}/health").status_code == 200


def test_a_late_head_on_a_kept_alive_connection_is_cut_off(server: NimbusProcess) -> None:
    """The next request's head on a kept-alive connection has its own deadline, counted
    from its first byte: answered requests before it do not make it wait forever."""
    sock = connect(server)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: nimbus\r\n\r\n")
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: nimbus\r\nX-Slow: ")
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    first, _, rest = data.partition(b"HTTP/1.1 408 ")
    assert first.startswith(b"HTTP/1.1 200 "), data
    assert b"did not arrive within 1 seconds" in rest, data


def test_an_idle_kept_alive_connection_is_closed(server: NimbusProcess) -> None:
    """After its answers, a connection that sends nothing more is closed (uvicorn's
    keep-alive timeout, 5 s), however many requests it made before."""
    sock = connect(server)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: nimbus\r\n\r\n" * 3)
    data = b""
    while chunk := sock.recv(65536):  # ends when the server closes
        data += chunk
    sock.close()
    assert data.count(b"HTTP/1.1 200 ") == 3, data


def test_a_stalled_body_is_408(server: NimbusProcess) -> None:
    sock = connect(server)
    sock.sendall(
        b"POST /2015-03-31/functions HTTP/1.1\r\nHost: nimbus\r\nContent-Length: 100\r\n\r\n{"
    )
    assert_refused(answer(sock), 408, "No byte of the request body arrived for 1 seconds")


def test_an_oversized_head_is_431_before_it_ends(server: NimbusProcess) -> None:
    sock = connect(server)
    # Never finished: refused as soon as more than the limit has come, not at the timeout.
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: nimbus\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 1))
    assert_refused(answer(sock), 431, f"at most {MAX_HEAD_BYTES} bytes")


def test_an_oversized_head_in_one_piece_is_431(server: NimbusProcess) -> None:
    big = {"X-Big": "a" * MAX_HEAD_BYTES}
    response = httpx.get(f"{server.endpoint}/health", headers=big)
    assert response.status_code == 431
    assert "at most" in response.json()["message"]
    many = {f"X-H{i}": "v" * 60 for i in range(200)}  # 14 kB in 200 headers: fine
    assert httpx.get(f"{server.endpoint}/health", headers=many).status_code == 200


def test_connections_beyond_the_limit_get_503() -> None:
    """The protocol's connection limit, under uvicorn in this process (the server's own
    limit is sized from its descriptors: thousands)."""

    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    port = free_port()
    protocol = HttpProtocol.configured(header_timeout=30, body_timeout=30, max_connections=3)
    config = uvicorn.Config(app, port=port, http=protocol, lifespan="off", log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    try:
        held = []
        while not held:
            try:
                held.append(socket.create_connection(("127.0.0.1", port), timeout=30))
            except ConnectionRefusedError:
                threading.Event().wait(0.05)  # uvicorn is still binding: poll its port
        held += [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(2)]
        extra = socket.create_connection(("127.0.0.1", port), timeout=30)
        extra.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert_refused(answer(extra), 503, "holds 3 connections, its limit")
        held[0].sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert held[0].recv(1024).startswith(b"HTTP/1.1 200")
        for sock in held:
            sock.close()
    finally:
        server.should_exit = True
        thread.join(30)


def test_a_streamed_responses_head_is_not_held_for_its_body() -> None:
    """A response's head waits for its body's first bytes only within one turn of the
    event loop: a client gets the head of a response whose body is slow to come."""
    body_may_go = threading.Event()

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"transfer-encoding", b"chunked")]})  # fmt: skip
        await asyncio.get_running_loop().run_in_executor(None, body_may_go.wait, 30)
        await send({"type": "http.response.body", "body": b"late"})

    port = free_port()
    protocol = HttpProtocol.configured(header_timeout=30, body_timeout=30, max_connections=10)
    config = uvicorn.Config(app, port=port, http=protocol, lifespan="off", log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    try:
        sock = None
        while sock is None:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            except ConnectionRefusedError:
                threading.Event().wait(0.05)  # uvicorn is still binding: poll its port
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        head = sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n"), head
        body_may_go.set()
        assert b"late" in sock.recv(65536)
        sock.close()
    finally:
        body_may_go.set()
        server.should_exit = True
        thread.join(30)


# -- JSON nesting and numbers ------------------------------------------------------------

DEEP = b"[" * 100_000


def test_deeply_nested_json_is_a_400_in_each_protocol(server: NimbusProcess, lam: Any) -> None:
    with pytest.raises(ClientError) as raised:
        lam.invoke(FunctionName="no-such-function", Payload=DEEP)
    assert raised.value.response["Error"]["Code"] == "InvalidRequestContentException"
    nested = b'{"FunctionName": "f", "Environment": {"Variables": ' + b"[" * 500 + b"]" * 500
    for body in (DEEP, nested + b"}}"):
        response = httpx.post(f"{server.endpoint}/2015-03-31/functions", content=body)
        assert response.status_code == 400, response.text
        assert response.headers["x-amzn-errortype"] == "InvalidRequestContentException"
        assert "nested too deeply" in response.json()["message"]
    sqs = boto3.client(
        "sqs",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    response = httpx.post(
        server.endpoint,
        content=b'{"QueueName": "q", "Attributes": ' + b"[" * 500 + b"]" * 500 + b"}",
        headers={
            "content-type": "application/x-amz-json-1.0",
            "x-amz-target": "AmazonSQS.CreateQueue",
        },
    )
    assert response.status_code == 400 and "nested too deeply" in response.text
    assert sqs.list_queues().get("QueueUrls", []) == []  # nothing half-made
    response = httpx.post(f"{server.endpoint}/v2/apis", content=b'{"name": ' + DEEP)
    assert response.status_code == 400 and "nested too deeply" in response.text
    # Nesting within the limit is fine.
    ok = b'{"FunctionName": "f", "Environment": {"Variables": ' + b"[" * 90 + b"]" * 90 + b"}}"
    response = httpx.post(f"{server.endpoint}/2015-03-31/functions", content=ok)
    assert response.status_code == 400 and "nested too deeply" not in response.text


@pytest.mark.parametrize(
    "method,path",
    [
        ("POST", "/_nimbus/dead-letters/123456789012345678901234567/redrive"),
        ("POST", "/_nimbus/dead-letters/%C2%B2/redrive"),
        ("POST", "/_nimbus/dead-letters/0/redrive"),
        ("GET", "/_nimbus/dead-letters?After=123456789012345678901234567"),
        ("GET", "/_nimbus/dead-letters?Limit=%C2%B2"),
        ("GET", "/_nimbus/dead-letters?After=" + "9" * 5000),
        ("GET", "/_nimbus/dead-letters?FunctionName=%00"),  # PostgreSQL: a 500 once
        ("GET", "/_nimbus/dead-letters?Queue=" + "q" * 300),
        ("GET", "/2018-10-31/layers/l/versions/%C2%B2"),
        ("GET", "/2018-10-31/layers/l/versions/123456789012345678901234567"),
        ("GET", "/2015-03-31/functions?MaxItems=123456789012345678901234567"),
        ("GET", "/v2/apis?maxResults=%C2%B2"),
        ("GET", "/_nimbus/cost?Since=" + "9" * 400),
    ],
)
def test_numbers_out_of_range_are_400s(server: NimbusProcess, method: str, path: str) -> None:
    response = httpx.request(method, server.endpoint + path)
    assert response.status_code == 400, response.text
    assert response.json()  # a JSON error that says what is wrong


# -- the Runtime API and clients that close ----------------------------------------------

PYTHON = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
URLLIB_LOOP = """
import json, os, urllib.request

base = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
while True:
    with urllib.request.urlopen(base + "next") as answer:  # sends Connection: close
        request_id = answer.headers["Lambda-Runtime-Aws-Request-Id"]
        event = json.loads(answer.read())
    body = json.dumps({"echo": event, "request_id": request_id}).encode()
    urllib.request.urlopen(urllib.request.Request(base + request_id + "/response", body)).read()
"""


@pytest.mark.sandbox
def test_a_bootstrap_using_urllib_is_served(lam: Any) -> None:
    name = f"urllib-{uuid.uuid4().hex[:8]}"
    code = make_zip(
        {"bootstrap": f"#!/bin/sh\nexec {PYTHON} /var/task/loop.py\n", "loop.py": URLLIB_LOOP},
        bootstrap=0o755,
    )
    lam.create_function(
        FunctionName=name,
        Runtime="provided.al2023",
        Role=ROLE,
        Handler="unused",
        Code={"ZipFile": code},
    )
    for n in range(3):
        response = lam.invoke(FunctionName=name, Payload=json.dumps({"n": n}))
        payload = json.loads(response["Payload"].read())
        assert "FunctionError" not in response, payload
        assert payload["echo"] == {"n": n}
        assert payload["request_id"]  # Lambda's headers came with the event


def test_sigusr1_prints_every_threads_stack_and_the_server_carries_on(
    server: NimbusProcess,
) -> None:
    assert server.proc is not None
    before = len(server.output)
    os.kill(server.proc.pid, signal.SIGUSR1)
    server.wait_output("most recent call first", after=before)
    server.wait_output('File "', after=before)  # the frames follow
    assert httpx.get(f"{server.endpoint}/health", timeout=10).status_code == 200
