"""The nimbus ``nimbus dev`` runs: ``nimbus up`` in a child process on its own port and data
dir, waited for until it is ready, stopped with the session. A child rather than in
process: the server owns signals, worker processes and an event loop of its own."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nimbus.config import Config, load_config
from nimbus.sigv4.credentials import Credentials, client_credentials

READY = "nimbus ready:"


class ServerFailed(Exception):
    """The dev server did not start; the message holds its output."""


class DevServer:
    """``nimbus up --port PORT --data-dir DIR`` for a dev session; a fresh temporary data
    dir (removed afterwards) unless one is given."""

    def __init__(self, port: int, data_dir: Path | None = None, isolation: str | None = None,
                 echo: Callable[[str], None] | None = None,
                 function_network: str | None = None) -> None:
        self.port = port
        self.owned = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="nimbus-dev-"))
        self.isolation = isolation
        self.function_network = function_network
        self.echo = echo or (lambda line: print(line, end="", file=sys.stderr))
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> Config:
        """The configuration the server runs with (the same environment, its data dir)."""
        return load_config(data_dir=self.data_dir)

    def credentials(self) -> Credentials | None:
        """The keys to sign with when the server wants SigV4 (api_auth from the environment
        or config): the configured pair, or the one it wrote into its data dir."""
        return client_credentials(self.config())

    def auth(self, service: str) -> Any:
        """httpx signing for ``service`` with the server's keys (None when there are none)."""
        from nimbus.sigv4.signing import httpx_auth

        found = self.credentials()
        return httpx_auth(found, region=self.config().region, service=service) if found else None

    def start(self, timeout: float = 120) -> None:
        args = [sys.executable, "-m", "nimbus", "up", "--host", "127.0.0.1",
                "--port", str(self.port), "--data-dir", str(self.data_dir),
                "--log-level", "warning"]
        if self.isolation:
            args += ["--isolation", self.isolation]
        env = os.environ.copy()
        if self.function_network:
            env["NIMBUS_FUNCTION_NETWORK"] = self.function_network
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env)
        ready: queue.Queue[bool] = queue.Queue()

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            started = False
            for line in self.proc.stdout:
                if started:
                    self.echo(line)  # the server's warnings, after start-up
                    continue
                self.output.append(line)
                if line.startswith(READY):
                    started = True
                    ready.put(True)
            ready.put(False)

        threading.Thread(target=pump, name="nimbus-dev-server", daemon=True).start()
        try:
            ok = ready.get(timeout=timeout)
        except queue.Empty:
            ok = False
        if not ok:
            self.stop()
            raise ServerFailed("".join(self.output[-40:]))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        if self.owned:
            shutil.rmtree(self.data_dir, ignore_errors=True)
