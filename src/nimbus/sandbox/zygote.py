"""The server's handle on one zygote process (see ``nimbus.guest.forkserver``).

A zygote is started once per runtime with that runtime's real interpreter, in isolated
mode (``-I``: no user site, no PYTHON* variables, no cwd on sys.path). nimbus' own
in-sandbox modules are loaded through stub packages pointing at this source tree, so the
server's dependencies (and ``nimbus/__init__``) never load in the sandbox, and the
function may have a package of its own called ``nimbus``.

Requests go over a SOCK_SEQPACKET pair, one message each way, serialised by a lock:
the request JSON with the environment's control socket and log pipe attached
(SCM_RIGHTS), the answer the child's pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
from pathlib import Path

from nimbus.sandbox.errors import IsolationUnavailable, SandboxError
from nimbus.sandbox.interpreters import Interpreter

log = logging.getLogger(__name__)

SRC = str(Path(__file__).resolve().parents[2])

_BOOT = """
import sys, types
src = sys.argv[1]
for name, rel in (("nimbus", "nimbus"), ("nimbus.guest", "nimbus/guest")):
    pkg = types.ModuleType(name)
    pkg.__path__ = [src + "/" + rel]
    sys.modules[name] = pkg
from nimbus.guest import forkserver
forkserver.main(int(sys.argv[2]), sys.argv[3])
"""

START_TIMEOUT_S = 30.0


class Zygote:
    """A running zygote for one runtime."""

    def __init__(self, runtime: str, interpreter: Interpreter, config: dict) -> None:
        self.runtime = runtime
        self.interpreter = interpreter
        self.config = config
        self.pid = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._lock = asyncio.Lock()
        self._pending: set[asyncio.Future[int]] = set()
        self.alive = False

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        args = [self.interpreter.executable, "-I", "-X", "utf8", "-c", _BOOT, SRC,
                str(theirs.fileno()), json.dumps(self.config)]
        try:
            self._proc = await asyncio.to_thread(
                subprocess.Popen, args, pass_fds=[theirs.fileno()], cwd="/",
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                # Nothing of the server's environment may reach a function; each
                # environment gets exactly Lambda's variables.
                env={},
            )
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                raw = await loop.sock_recv(ours, 65536)
        except TimeoutError:
            raw = b'{"error": "zygote did not start in time"}'
        reply = json.loads(raw) if raw else {"error": "zygote exited during start"}
        if not reply.get("ready"):
            await self.close()
            message = reply.get("error", "unknown error")
            if self.config["isolation"] == "namespace":
                raise IsolationUnavailable(
                    f"cannot start the {self.runtime} zygote with namespace isolation: {message}"
                )
            raise SandboxError(f"cannot start the {self.runtime} zygote: {message}")
        self.pid = int(reply["pid"])
        self.alive = True
        log.debug("zygote for %s started (pid %d)", self.runtime, self.pid)

    async def spawn(self, request: dict, fds: list[int]) -> int:
        """Fork one environment; returns its pid (a child of this server)."""
        if not self.alive or self._sock is None:
            raise SandboxError(f"the {self.runtime} zygote is not running")
        # The exchange must not be cut in half by a cancellation (the next request
        # would read this answer), so it runs shielded; an orphaned child is killed.
        task = asyncio.ensure_future(self._exchange(request, fds))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(_kill_orphan)
            raise

    async def _exchange(self, request: dict, fds: list[int]) -> int:
        loop = asyncio.get_running_loop()
        sock = self._sock
        if sock is None:
            raise SandboxError(f"the {self.runtime} zygote is not running")
        async with self._lock:
            try:
                # One small datagram into an idle socket: never blocks.
                socket.send_fds(sock, [json.dumps(request).encode()], fds)
                raw = await loop.sock_recv(sock, 65536)
            except OSError as exc:
                raw = b""
                log.warning("zygote for %s: %s", self.runtime, exc)
        if not raw:
            self.alive = False
            raise SandboxError(f"the {self.runtime} zygote died")
        reply = json.loads(raw)
        if "error" in reply:
            raise SandboxError(f"cannot fork an environment: {reply['error']}")
        return int(reply["pid"])

    async def close(self) -> None:
        self.alive = False
        for task in list(self._pending):
            task.cancel()
        if self._sock is not None:
            self._sock.close()  # the zygote exits on end-of-file
            self._sock = None
        proc = self._proc
        if proc is not None:
            try:
                await asyncio.to_thread(proc.wait, 5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await asyncio.to_thread(proc.wait)


def _kill_orphan(task: asyncio.Future[int]) -> None:
    if task.cancelled() or task.exception() is not None:
        return
    pid = task.result()
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
