"""An execution environment as the server sees it: a sandboxed process that runs one
function version's invocations one at a time.

The process is a child of the server (the zygote clones it with CLONE_PARENT), watched
through a pidfd, so its exit status is known without polling. Invocations go over the
control socket; logs come from the log pipe, cut at the runtime's end markers. A
timeout, an OOM kill or a crash ends the environment (``reusable=False``), with the
error payloads Lambda gives for each.

Max Memory Used comes from the cgroup, without the page cache of /tmp (see
``nimbus.sandbox.memory``).

While idle the pool may freeze it (``freeze``: its cgroup, until ``invoke`` thaws it),
and from the end of its init its CPU is capped in proportion to its memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import secrets
import signal
import socket
import time
from collections.abc import Awaitable, Callable

from nimbus.guest import protocol
from nimbus.sandbox import frames
from nimbus.sandbox.cgroups import Cgroup
from nimbus.sandbox.channel import Channel, ChannelClosed
from nimbus.sandbox.errors import EnvironmentGone, InitError, IsolationUnavailable
from nimbus.sandbox.logs import LogPipe
from nimbus.sandbox.memory import MaxMemory
from nimbus.sandbox.spec import EnvironmentSpec, Invocation, Outcome
from nimbus.sandbox.tmpdisk import TmpDisk

log = logging.getLogger(__name__)

# How Go (Lambda's runtime manager) names signals in "Runtime exited with error: ...".
SIGNAL_NAMES = {
    1: "hangup", 2: "interrupt", 3: "quit", 4: "illegal instruction",
    5: "trace/breakpoint trap", 6: "aborted", 7: "bus error", 8: "floating point exception",
    9: "killed", 10: "user defined signal 1", 11: "segmentation fault",
    12: "user defined signal 2", 13: "broken pipe", 14: "alarm clock", 15: "terminated",
    16: "stack fault", 24: "CPU time limit exceeded", 25: "file size limit exceeded",
    31: "bad system call",
}
EXIT_WAIT_S = 5.0


def describe_exit(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return "signal: " + SIGNAL_NAMES.get(sig, f"signal {sig}")
    if os.WIFEXITED(status):
        return f"exit status {os.WEXITSTATUS(status)}"
    return f"unknown status {status}"


class _Died(Exception):
    """The environment's process ended; ``status`` is its wait status."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class Environment:
    """A live execution environment; create it with ``SandboxManager.start``."""

    def __init__(self, *, env_id: str, spec: EnvironmentSpec, pid: int, ctl: socket.socket,
                 log_fd: int, nonce: str, cgroup: Cgroup | None, process_group: bool,
                 on_stop: Callable[[Environment], Awaitable[None]],
                 pidfd: int | None = None, tmp: TmpDisk | None = None) -> None:
        self.id = env_id
        self.spec = spec
        self.pid = pid
        self.init_duration_ms = 0.0
        self.restored = False  # started from a SnapStart template: init_duration is restore
        self.init_logs = b""
        # (stage, time.perf_counter()) of the cold start, for benchmarks and profiling:
        # spawn requested, forked, cgroup, mounts, privileges, runtime, init, ready.
        self.stages: list[tuple[str, float]] = []
        self.origin = ""  # "stem cell" or "zygote": how the cold start was served
        # Awaited once, after the first invocation that returned, before its outcome
        # (the manager learns from the process then: nimbus.sandbox.hot_pages).
        self.after_first_invocation: Callable[[Environment], Awaitable[None]] | None = None
        self.alive = True
        self.invocations = 0
        self.cgroup = cgroup
        self.tmp = tmp  # its disk-backed /tmp (None: a tmpfs, or process isolation)
        self.memory = MaxMemory(cgroup, tmp) if cgroup is not None else None
        self._nonce = nonce
        self._seq = 1  # the runtime's init marker is number 1
        self._process_group = process_group
        self._on_stop = on_stop
        self._busy = False  # one invocation at a time (the pool hands an env to one caller)
        self._frozen = False  # its cgroup is frozen, or being frozen (see freeze)
        self._freezing: asyncio.Future[None] | None = None  # the freeze's write under way
        self._stopped = False
        self._loop = asyncio.get_running_loop()
        self._logs = LogPipe(log_fd, self._loop)
        self._ctl = ctl
        ctl.setblocking(False)
        self._channel: Channel | None = None
        self._violation: frames.Violation | None = None  # how it broke the protocol
        self._exit: asyncio.Future[int] = self._loop.create_future()
        self._pidfd = os.pidfd_open(pid) if pidfd is None else pidfd
        self._loop.add_reader(self._pidfd, self._on_exit)

    # -- process ------------------------------------------------------------------------

    def _on_exit(self) -> None:
        self._loop.remove_reader(self._pidfd)
        try:
            _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:
            status = 0x7F00  # reaped elsewhere: unknown
        os.close(self._pidfd)
        self._pidfd = -1
        self.alive = False
        if not self._exit.done():
            self._exit.set_result(status)

    def _kill(self) -> None:
        if self._pidfd >= 0:
            with contextlib.suppress(ProcessLookupError):
                if self._process_group:
                    os.killpg(self.pid, signal.SIGKILL)
                else:
                    # PID 1 of its namespace: the kernel kills every process in it.
                    signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
        if self.cgroup is not None:
            self.cgroup.kill()

    async def _exit_status(self) -> int:
        try:
            async with asyncio.timeout(EXIT_WAIT_S):
                return await asyncio.shield(self._exit)
        except TimeoutError:
            self._kill()
            return await self._exit

    @property
    def busy(self) -> bool:
        """An invocation is running."""
        return self._busy

    def _memory_mb(self) -> int:
        if self.memory is None:
            return math.ceil(_vm_hwm(self.pid) / (1024 * 1024))
        return self.memory.after_invocation()

    def _oom_killed(self) -> bool:
        return self.cgroup is not None and self.cgroup.oom_kills() > 0

    # -- freezing between invocations -------------------------------------------------

    @property
    def stopped(self) -> bool:
        """``stop()`` has begun: the process is gone or going."""
        return self._stopped

    @property
    def frozen(self) -> bool:
        """Its cgroup is frozen (or being frozen) until the next invocation."""
        return self._frozen

    def freeze(self) -> bool:
        """Freeze the environment while it is idle, as Lambda does between invocations:
        what the function left running (threads, processes) gets no CPU until the next
        invocation thaws it. The write goes to a thread (on cgroup v1 it can take
        milliseconds); ``invoke`` waits for it before thawing. Returns whether it froze
        (not while busy or stopped, nor without a cgroup that can freeze)."""
        cgroup = self.cgroup
        if (self._frozen or self._busy or self._stopped or not self.alive or cgroup is None
                or not cgroup.can_freeze):
            return False
        self._frozen = True
        self._freezing = self._loop.run_in_executor(None, cgroup.freeze)
        return True

    async def _settle_freeze(self) -> None:
        """Wait for a freeze under way (its failure only means it is not frozen)."""
        freezing, self._freezing = self._freezing, None
        if freezing is not None:
            try:
                await freezing
            except OSError as exc:
                log.warning("cannot freeze environment %s: %s", self.id, exc)

    async def _thaw(self) -> None:
        """Thaw before the invocation is sent: done when the write returns."""
        await self._settle_freeze()
        if self._stopped or self.cgroup is None:
            return
        try:
            await self._loop.run_in_executor(None, self.cgroup.thaw)
        except OSError as exc:
            raise EnvironmentGone(f"environment {self.id} cannot be thawed: {exc}") from exc
        self._frozen = False

    # -- control channel ----------------------------------------------------------------

    async def _open_channel(self) -> Channel:
        if self._channel is None:
            self._channel = await Channel.open(self._ctl, self._broke_protocol)
        return self._channel

    def _broke_protocol(self, violation: frames.Violation) -> None:
        """A frame the environment may not send (``nimbus.sandbox.frames``): it is
        treated as crashed, at once, whether an invocation is running or not (the pool
        then no longer hands it out)."""
        self._violation = violation
        if not isinstance(violation, frames.Exited):
            log.warning("environment %s of %s broke the control protocol: it sent %s; "
                        "stopping it", self.id, self.spec.function_name, violation)
        self.alive = False
        self._kill()

    def _violation_note(self) -> bytes:
        """A line for the function's log saying why nimbus stopped the environment."""
        if self._violation is None or isinstance(self._violation, frames.Exited):
            return b""
        return (f"[nimbus] environment stopped: its control channel carried "
                f"{self._violation}\n").encode()

    async def _read_frame(self) -> tuple[dict, bytes]:
        """The next frame, or _Died when the environment ends first (or breaks the
        protocol: the channel has killed it then)."""
        channel = self._channel or await self._open_channel()
        try:
            header, body = await channel.read()
        except ChannelClosed:
            raise _Died(await self._exit_status()) from None
        if header["t"] == "exit":  # provided: the bootstrap exited; so does PID 1
            self._kill()
            await self._exit_status()
            raise _Died(header["status"])
        return header, body

    # -- lifecycle ----------------------------------------------------------------------

    async def wait_ready(self, timeout_s: float, *, limit_cpu: bool = True) -> None:
        """The init phase; raises InitError or IsolationUnavailable (after cleanup).
        Init runs on a full CPU, as on Lambda; from then on the CPU quota of its memory
        applies (``limit_cpu``; not for a SnapStart template, which only forks)."""
        try:
            async with asyncio.timeout(timeout_s):
                header, body = await self._read_frame()
        except TimeoutError:
            self._kill()
            logs = await self._logs.rest()
            await self.stop()
            raise InitError("Sandbox.Timedout", f"Init timed out after {timeout_s:.2f} seconds",
                            logs, timeout_s * 1000) from None
        except _Died as died:
            logs = await self._logs.rest() + self._violation_note()
            await self.stop()
            if self._oom_killed():
                raise InitError("Runtime.OutOfMemory",
                                f"Runtime exited with error: {describe_exit(died.status)}",
                                logs) from None
            raise InitError("Runtime.ExitError",
                            f"Runtime exited with error: {describe_exit(died.status)}",
                            logs) from None
        kind = header.get("t")
        if kind == "ready":
            if limit_cpu and self.cgroup is not None:
                try:
                    self.cgroup.limit_cpu(self.spec.memory_mb)
                except OSError as exc:  # never run weaker than configured
                    await self.stop()
                    raise IsolationUnavailable(f"cannot cap the environment's CPU: {exc}") from exc
            self.init_duration_ms = float(header.get("init_ms", 0.0))
            self.restored = bool(header.get("restore"))
            self.stages += [(name, t) for name, t in header.get("stages", [])]
            self.stages.append(("ready", time.perf_counter()))
            self.init_logs = await self._logs.until(protocol.marker(self._nonce, 1))
            return
        logs = await self._logs.until(protocol.marker(self._nonce, 1))
        await self.stop()
        if kind == "setup_error":
            raise IsolationUnavailable(f"cannot sandbox the environment: {header.get('message')}")
        try:
            message = str(json.loads(body).get("errorMessage", ""))
        except (ValueError, AttributeError, RecursionError):  # the function's bytes
            message = body.decode(errors="replace")
        raise InitError(header.get("type") or "Runtime.Unknown", message, logs,
                        float(header.get("init_ms", 0.0)), payload=body)

    async def invoke(self, inv: Invocation) -> Outcome:
        """Run one invocation (one at a time per environment)."""
        if self._busy:
            raise RuntimeError(f"environment {self.id} is already running an invocation")
        self._busy = True
        try:
            if self._frozen:
                await self._thaw()
            return await self._invoke(inv)
        finally:
            self._busy = False

    async def _invoke(self, inv: Invocation) -> Outcome:
        if not self.alive or self._stopped:
            raise EnvironmentGone(f"environment {self.id} is not alive")
        self.invocations += 1
        self._seq += 1
        marker = protocol.marker(self._nonce, self._seq)
        # The runtime echoes the tag in its result; a frame without it is not an answer.
        tag = secrets.randbits(53)
        header = {"t": "invoke", "id": inv.request_id, "tag": tag, "deadline": inv.deadline_ms,
                  "arn": inv.invoked_function_arn, "trace": inv.trace_id,
                  "cc": inv.client_context, "ci": inv.cognito_identity}
        channel = self._channel or await self._open_channel()
        channel.expect_result(tag)
        start = time.perf_counter()
        timeout = max(0.0, inv.deadline_ms / 1000 - time.time())
        # A timer that kills the environment at the deadline (cheaper than a cancellation
        # scope per invocation): the read then fails, and the flag says it was the timeout.
        expired: list[bool] = []

        def expire() -> None:
            expired.append(True)
            self._kill()

        timer = self._loop.call_later(timeout, expire)
        try:
            await channel.send(header, inv.payload)
            reply, body = await self._read_frame()
        except (_Died, ChannelClosed) as exc:
            duration = (time.perf_counter() - start) * 1000
            if expired:
                await self._exit_status()
                error = {"errorType": "Sandbox.Timedout",
                         "errorMessage": f"RequestId: {inv.request_id} Error: Task timed out "
                         f"after {self.spec.timeout_s:.2f} seconds"}
                return await self._failed(error, duration)
            status = exc.status if isinstance(exc, _Died) else await self._exit_status()
            reason = describe_exit(status)
            error_type = "Runtime.OutOfMemory" if self._oom_killed() else "Runtime.ExitError"
            error = {"errorType": error_type,
                     "errorMessage": f"RequestId: {inv.request_id} Error: Runtime exited "
                     f"with error: {reason}"}
            return await self._failed(error, duration)
        finally:
            timer.cancel()
        duration = (time.perf_counter() - start) * 1000
        if reply.get("marked", True):
            logs = await self._logs.until(marker)
        else:
            logs = self._logs.take()
        if self.after_first_invocation is not None:
            hook, self.after_first_invocation = self.after_first_invocation, None
            try:
                await hook(self)
            except Exception:  # the invocation has succeeded: its outcome stands
                log.exception("after the first invocation of environment %s", self.id)
        return Outcome(body, reply.get("error"), logs, duration, self._memory_mb(), True)

    async def _failed(self, error: dict, duration_ms: float) -> Outcome:
        memory = self._memory_mb()
        logs = await self._logs.rest() + self._violation_note()
        await self.stop()
        return Outcome(json.dumps(error).encode(), "Unhandled", logs, duration_ms, memory, False)

    async def stop(self) -> None:
        """Kill the environment (if alive) and release its resources; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        await self._settle_freeze()  # then the kill's thaw comes after any freeze
        self._kill()
        await self._exit_status()
        self.alive = False
        if self._channel is not None:
            self._channel.close()
        else:
            self._ctl.close()
        self._logs.close()
        await self._on_stop(self)


def _vm_hwm(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0
