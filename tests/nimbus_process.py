"""Start a real ``nimbus up`` on a free port, as a user would, and wait until it is ready."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import boto3
from botocore.config import Config as BotoConfig


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NimbusProcess:
    """A nimbus server in a child process; ``restart()`` keeps its data dir. ``host``: the
    address it listens on and is reached at (``--host``; 127.0.0.1 when not given);
    ``prefix``: a command it is started through (e.g. ``nsenter --net=...``, which execs
    it, so the pid is still the server's)."""

    # Those running now, for the output a failed test shows (tests/conftest.py's
    # pytest_runtest_makereport).
    running: ClassVar[list[NimbusProcess]] = []

    def __init__(
        self, data_dir: Path, env: dict[str, str] | None = None, args: list[str] | None = None,
        *, host: str | None = None, prefix: Sequence[str] = (),
    ) -> None:
        self.data_dir = data_dir
        self.env = {**os.environ, **(env or {})}
        self.args = [*(args or []), *(["--host", host] if host else [])]
        self.host = host or "127.0.0.1"
        self.prefix = list(prefix)
        self.command = "up"  # or "worker": a worker node of a cluster
        self.port = free_port()
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []
        self._said = threading.Condition()

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 60) -> NimbusProcess:
        NimbusProcess.running.append(self)
        self.proc = subprocess.Popen(
            [
                *self.prefix,
                sys.executable,
                "-m",
                "nimbus",
                self.command,
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
                *self.args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
        )
        ready: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert self.proc and self.proc.stdout
            for line in self.proc.stdout:
                with self._said:
                    self.output.append(line)
                    self._said.notify_all()
                if line.startswith("nimbus ready:"):
                    ready.put(line)
            ready.put(None)

        threading.Thread(target=pump, daemon=True).start()
        try:
            line = ready.get(timeout=timeout)
        except queue.Empty:
            line = None
        if line is None:
            self.stop()
            raise RuntimeError("nimbus did not start:\n" + "".join(self.output))
        return self

    def wait_output(self, text: str, timeout: float = 30, after: int = 0) -> str:
        """The first line of the server's output containing ``text`` (from line ``after``
        on), waiting for it (the server may log a moment after it answered)."""
        with self._said:
            found = self._said.wait_for(
                lambda: next((line for line in self.output[after:] if text in line), None),
                timeout)
        if found is None:
            raise AssertionError(f"the server never said {text!r}:\n" + "".join(self.output))
        return found

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self in NimbusProcess.running:
            NimbusProcess.running.remove(self)
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=30)
        self.proc = None
        return code

    def workers(self) -> list[int]:
        """The pids of the server's async worker processes."""
        assert self.proc is not None
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read()
            except (OSError, ValueError, IndexError):
                continue
            if ppid == self.proc.pid and b"nimbus.workers.worker" in cmdline:
                found.append(int(entry))
        return found

    def restart(self) -> NimbusProcess:
        self.stop()
        return self.start()

    def client(self, service: str = "lambda", validate: bool = True) -> Any:
        """A boto3 client of ``service`` for this server."""
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=BotoConfig(
                retries={"max_attempts": 0}, parameter_validation=validate, read_timeout=120
            ),
        )
