"""`nimbus dev`, run as a user runs it: a folder served by a nimbus of its own, the next
invocation after a save running the new code, every log line in one stream, and
``--debug`` attaching a real debugpy client (a DAP client speaking to the function's
environment) that stops at a breakpoint in /var/task."""

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
            if line.startswith("ready:"):
                self.ready.set()
        self.ready.set()  # exited: the test sees it was not ready

    def invoke(self, name: str, timeout: float = 30) -> httpx.Response:
        return httpx.post(f"http://127.0.0.1:{self.port}/2015-03-31/functions/{name}/"
                          "invocations", content=b"{}", timeout=timeout)

    def log_line(self, text: str, deadline_s: float = 30) -> str:
        """The first log line (stdout) containing ``text``, awaited."""
        deadline = time.monotonic() + deadline_s
        while True:
            line = self.out.get(timeout=max(0.01, deadline - time.monotonic()))
            if text in line:
                return line


@contextmanager
def nimbus_dev(folder: Path, *args: str) -> Iterator[Dev]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "nimbus", "dev", str(folder), "--port",
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
    assert "Traceback" not in empty.stderr + other.stderr


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


@pytest.mark.sandbox
def test_dev_debug_stops_at_a_breakpoint(tmp_path: Path) -> None:
    folder = tmp_path / "debugged"
    folder.mkdir()
    (folder / "app.py").write_text("def handler(event, context):\n    x = 41\n"
                                   "    return x + 1\n")
    debug_port = free_port()
    with nimbus_dev(folder, "--debug", "debugged", "--debug-port", str(debug_port)) as dev:
        result: queue.Queue[httpx.Response] = queue.Queue()
        threading.Thread(target=lambda: result.put(dev.invoke("debugged", 120)),
                         daemon=True).start()
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
                    breakpoints=[{"line": 3}])
        placed = client.until("command", "setBreakpoints")
        assert placed["body"]["breakpoints"][0]["verified"] is True
        client.send("configurationDone")
        stopped = client.until("event", "stopped")
        assert stopped["body"]["reason"] == "breakpoint"
        client.send("stackTrace", threadId=stopped["body"]["threadId"])
        frames = client.until("command", "stackTrace")["body"]["stackFrames"]
        assert (frames[0]["source"]["path"], frames[0]["line"]) == ("/var/task/app.py", 3)
        assert result.empty()  # paused at the breakpoint
        client.send("continue", threadId=stopped["body"]["threadId"])
        answer = result.get(timeout=60)
        assert answer.status_code == 200 and answer.json() == 42
