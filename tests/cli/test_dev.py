"""`nimbus dev`, run as a user runs it: a folder or a SAM template served by a nimbus of
its own, the next invocation after a save running the new code, every log line in one
stream, and ``--debug`` attaching a real debugpy client (a DAP client speaking to the
function's environment) that stops at a breakpoint in /var/task."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.cli.conftest import nimbus_cli
from tests.nimbus_process import free_port

VERSION = 'def handler(event, context):\n    print("{v} called")\n    return "{v}"\n'


class Dev:
    """A running `nimbus dev`: its port, and its stdout (logs) and stderr lines so far."""

    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc = proc
        self.port = port
        self.out: queue.Queue[str] = queue.Queue()
        self.err: list[str] = []
        self.said: queue.Queue[str] = queue.Queue()  # stderr lines after `ready:`
        self.ready = threading.Event()
        threading.Thread(target=self._pump_out, daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()

    def _pump_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.out.put(line)

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.err.append(line)
            if self.ready.is_set():
                self.said.put(line)
            if line.startswith("ready:"):
                self.ready.set()
        self.ready.set()  # exited: the test sees it was not ready
        self.said.put("(exited)")

    def await_said(self, text: str, deadline_s: float = 60) -> list[str]:
        """The stderr lines said until (and with) the first one containing ``text``."""
        deadline = time.monotonic() + deadline_s
        lines = []
        while True:
            lines.append(self.said.get(timeout=max(0.01, deadline - time.monotonic())))
            assert lines[-1] != "(exited)", "".join(self.err)
            if text in lines[-1]:
                return lines

    def invoke(self, name: str, timeout: float = 30) -> httpx.Response:
        return httpx.post(f"http://127.0.0.1:{self.port}/2015-03-31/functions/{name}/"
                          "invocations", content=b"{}", timeout=timeout)

    def listed(self, label: str) -> str:
        """What the start-up lines say after ``  LABEL``."""
        return next(line.strip() for line in self.err if line.startswith(f"  {label}"))

    def log_line(self, text: str, deadline_s: float = 30) -> str:
        """The first log line (stdout) containing ``text``, awaited."""
        deadline = time.monotonic() + deadline_s
        while True:
            line = self.out.get(timeout=max(0.01, deadline - time.monotonic()))
            if text in line:
                return line


@contextmanager
def nimbus_dev(target: Path, *args: str) -> Iterator[Dev]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "nimbus", "dev", str(target), "--port",
                             str(port), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    dev = Dev(proc, port)
    try:
        assert dev.ready.wait(120) and proc.poll() is None, "".join(dev.err)
        yield dev
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, "".join(dev.err)


def until_returns(dev: Dev, name: str, expected: str, deadline_s: float = 20) -> float:
    """Invoke until the function returns ``expected``; the seconds that took."""
    start = time.monotonic()
    while True:
        answer = dev.invoke(name)
        if answer.status_code == 200 and answer.json() == expected:
            return time.monotonic() - start
        assert time.monotonic() - start < deadline_s, answer.text


@pytest.mark.sandbox
def test_dev_reloads_on_save(tmp_path: Path) -> None:
    folder = tmp_path / "greeter"
    folder.mkdir()
    (folder / "app.py").write_text(VERSION.format(v="v1"))
    with nimbus_dev(folder) as dev:
        url = next(line.split(": ", 1)[1].strip() for line in dev.err
                   if line.startswith("  greeter: http"))
        assert httpx.get(url).json() == "v1"  # its function URL serves it
        assert dev.invoke("greeter").json() == "v1"
        assert dev.log_line("v1 called").startswith("greeter | ")

        (folder / "app.py").write_text(VERSION.format(v="v2"))
        until_returns(dev, "greeter", "v2")
        assert dev.log_line("v2 called").startswith("greeter | ")
        assert any(line.startswith("reloaded greeter in ") for line in dev.err)

        (folder / "notes.txt").write_text("a file that is not code")  # redeployed too
        (folder / "app.py").write_text("def handler(event, context):\n    return 1 +\n")
        deadline = time.monotonic() + 20
        while dev.invoke("greeter").headers.get("x-amz-function-error") != "Unhandled":
            assert time.monotonic() < deadline  # a syntax error is the function's error
        (folder / "app.py").write_text(VERSION.format(v="v3"))
        until_returns(dev, "greeter", "v3")


def test_dev_refuses_what_it_cannot_serve(tmp_path: Path) -> None:
    empty = nimbus_cli(None, "dev", str(tmp_path), "--port", str(free_port()))
    assert empty.returncode == 2 and "has no app.py" in empty.stderr
    (tmp_path / "app.py").write_text(VERSION.format(v="v1"))
    other = nimbus_cli(None, "dev", str(tmp_path), "--port", str(free_port()),
                       "--debug", "nope")
    assert other.returncode == 2 and "--debug nope" in other.stderr
    with socket.socket() as taken:  # something listens on the port asked for
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = nimbus_cli(None, "dev", str(tmp_path), "--port", str(taken.getsockname()[1]))
    assert busy.returncode == 2 and "pick another with --port" in busy.stderr
    assert "Traceback" not in empty.stderr + other.stderr + busy.stderr


def test_dev_refuses_a_template_it_cannot_serve(tmp_path: Path) -> None:
    app = sam_project(tmp_path)
    port = str(free_port())
    for args, says in [
        (("--debug", "Nope"), "--debug Nope: no such function in"),
        (("--handler", "x.y"), "--handler and --runtime are for a folder without a template"),
        (("--param", "novalue"), "--param 'novalue': write KEY=VALUE"),
    ]:
        refused = nimbus_cli(None, "dev", str(app), "--port", port, *args)
        assert refused.returncode == 2, (args, refused.stderr)
        assert says in refused.stderr and "Traceback" not in refused.stderr
    assert "(its functions: Greeter, Counter)" in nimbus_cli(
        None, "dev", str(app / "template.yaml"), "--port", port, "--debug", "Nope").stderr
    (app / "template.yaml").write_text("Resources: [not, a, mapping\n")
    broken = nimbus_cli(None, "dev", str(app), "--port", port)
    assert broken.returncode == 2 and "template.yaml: line 2: expected" in broken.stderr
    assert "Traceback" not in broken.stderr


# A SAM project of two functions in folders of their own: one behind an HTTP API route,
# one with a function URL, both printing what they return.
TEMPLATE = """\
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.12
    Handler: app.handler
Resources:
  Greeter:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: greeter/
      FunctionUrlConfig:
        AuthType: NONE
  Counter:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: counter/
      Environment:
        Variables:
          START: "c1"
      Events:
        Count:
          Type: HttpApi
          Properties:
            Path: /count
            Method: get
"""
COUNTER = ('import os\n\ndef handler(event, context):\n    print("counter called")\n'
           '    return os.environ["START"]\n')


def sam_project(root: Path) -> Path:
    app = root / "app"
    (app / "greeter").mkdir(parents=True)
    (app / "counter").mkdir()
    (app / "greeter" / "app.py").write_text(VERSION.format(v="g1"))
    (app / "counter" / "app.py").write_text(COUNTER)
    (app / "template.yaml").write_text(TEMPLATE)
    return app


@pytest.mark.sandbox
def test_dev_serves_a_template_and_reloads_the_function_saved(tmp_path: Path) -> None:
    """`nimbus dev DIR` with a template.yaml: each function deployed as `nimbus deploy`
    names it, with its URL and route; saving one function's file redeploys that function
    only, and the next invocation returns its new result; a template edit is applied;
    a broken template is reported while the last deploy keeps serving."""
    app = sam_project(tmp_path)
    with nimbus_dev(app) as dev:
        url = dev.listed("Greeter (function app-Greeter)").split(": ", 1)[1]
        route = dev.listed("http://").removesuffix("/")
        assert route.endswith("/count") and "/execute-api/" in route
        assert dev.listed("Counter (function app-Counter)") == "Counter (function app-Counter)"
        assert httpx.get(url, timeout=30).json() == "g1"
        assert httpx.get(route, timeout=30).json() == "c1"
        assert dev.invoke("app-Greeter").json() == "g1"
        assert dev.log_line("g1 called").startswith("Greeter | ")

        (app / "greeter" / "app.py").write_text(VERSION.format(v="g2"))
        said = dev.await_said("reloaded ")
        assert said[-1].startswith("reloaded Greeter in "), said  # Counter is untouched
        assert dev.invoke("app-Greeter").json() == "g2"  # the very next invocation
        assert httpx.get(url, timeout=30).json() == "g2"
        assert dev.log_line("g2 called").startswith("Greeter | ")
        assert httpx.get(route, timeout=30).json() == "c1"
        assert dev.log_line("counter called").startswith("Counter | ")

        (app / "template.yaml").write_text(TEMPLATE.replace('START: "c1"', 'START: "c2"'))
        said = dev.await_said("reloaded ")
        assert said[-1].startswith("reloaded Counter in "), said
        assert httpx.get(route, timeout=30).json() == "c2"

        (app / "template.yaml").write_text(TEMPLATE + "  Table:\n    Type: AWS::Serverless::"
                                           "SimpleTable\n")
        dev.await_said("problem(s), nothing redeployed")
        assert "line 28: Table: resource type AWS::Serverless::SimpleTable is not supported" in (
            dev.await_said("SimpleTable")[-1])
        assert dev.invoke("app-Greeter").json() == "g2"  # the last deploy still serves


class DapClient:
    """The Debug Adapter Protocol as VS Code speaks it to debugpy, the parts the test needs."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.buf = b""
        self.seq = 0

    def send(self, command: str, **arguments: object) -> None:
        self.seq += 1
        body = json.dumps({"seq": self.seq, "type": "request", "command": command,
                           "arguments": arguments}).encode()
        self.sock.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def until(self, key: str, value: str) -> dict:
        """Messages are read until one whose ``key`` (command or event) is ``value``."""
        while True:
            while b"\r\n\r\n" not in self.buf:
                self.buf += self.sock.recv(65536)
            head, _, rest = self.buf.partition(b"\r\n\r\n")
            size = int(head.split(b":")[1])
            while len(rest) < size:
                rest += self.sock.recv(65536)
            message, self.buf = json.loads(rest[:size]), rest[size:]
            if message.get(key) == value:
                return message


def stops_at_a_breakpoint(dev: Dev, function: str, debug_port: int, line: int) -> object:
    """Invoke ``function``, attach as VS Code does, break at /var/task/app.py:``line``,
    continue; the invocation's result."""
    result: queue.Queue[httpx.Response] = queue.Queue()
    threading.Thread(target=lambda: result.put(dev.invoke(function, 120)), daemon=True).start()
    deadline = time.monotonic() + 60
    while True:  # the environment starts with the invocation, then listens
        try:
            client = DapClient(debug_port)
            break
        except OSError:
            assert time.monotonic() < deadline, "debugpy never listened"
            time.sleep(0.05)
    assert result.empty()  # the invocation waits for the debugger
    client.send("initialize", adapterID="python", clientID="nimbus-test",
                pathFormat="path", linesStartAt1=True, columnsStartAt1=True)
    client.until("command", "initialize")
    client.send("attach", justMyCode=False)
    client.until("event", "initialized")
    client.send("setBreakpoints", source={"path": "/var/task/app.py"},
                breakpoints=[{"line": line}])
    placed = client.until("command", "setBreakpoints")
    assert placed["body"]["breakpoints"][0]["verified"] is True
    client.send("configurationDone")
    stopped = client.until("event", "stopped")
    assert stopped["body"]["reason"] == "breakpoint"
    client.send("stackTrace", threadId=stopped["body"]["threadId"])
    frames = client.until("command", "stackTrace")["body"]["stackFrames"]
    assert (frames[0]["source"]["path"], frames[0]["line"]) == ("/var/task/app.py", line)
    assert result.empty()  # paused at the breakpoint
    client.send("continue", threadId=stopped["body"]["threadId"])
    answer = result.get(timeout=60)
    assert answer.status_code == 200
    return answer.json()


@pytest.mark.sandbox
def test_dev_debug_stops_at_a_breakpoint(tmp_path: Path) -> None:
    folder = tmp_path / "debugged"
    folder.mkdir()
    (folder / "app.py").write_text("def handler(event, context):\n    x = 41\n"
                                   "    return x + 1\n")
    debug_port = free_port()
    with nimbus_dev(folder, "--debug", "debugged", "--debug-port", str(debug_port)) as dev:
        assert stops_at_a_breakpoint(dev, "debugged", debug_port, 3) == 42


@pytest.mark.sandbox
def test_dev_debug_a_template_function(tmp_path: Path) -> None:
    """--debug names a template's function by its logical id (or its name); the path
    mapping printed is that function's CodeUri folder; the other function runs as usual."""
    app = sam_project(tmp_path)
    (app / "greeter" / "app.py").write_text("def handler(event, context):\n    x = 41\n"
                                            "    return x + 1\n")
    debug_port = free_port()
    with nimbus_dev(app / "template.yaml", "--debug", "Greeter",
                    "--debug-port", str(debug_port)) as dev:
        said = dev.listed(f"Greeter: debugpy on 127.0.0.1:{debug_port}")
        assert said.endswith(f"pathMappings /var/task -> {app / 'greeter'})"), said
        assert dev.invoke("app-Counter").json() == "c1"
        assert stops_at_a_breakpoint(dev, "app-Greeter", debug_port, 3) == 42
        config = httpx.get(f"http://127.0.0.1:{dev.port}/2015-03-31/functions/app-Greeter/"
                           "configuration").json()
        assert config["Timeout"] == 900 and config["Environment"]["Variables"][
            "NIMBUS_DEBUGPY"] == f"127.0.0.1:{debug_port}"
