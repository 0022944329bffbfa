"""SnapStart templates, host side: one initialised process per published version,
forking that version's new environments (see ``nimbus.guest.template``).

A template is cloned by the runtime's zygote into a user namespace of its own. This
module gives it a block of host uids (``BLOCK`` of them: namespace root is the block's
first uid, which the template runs as; the others map to themselves and are the
uids of its environments, one each, reused when an environment stops), writes its
uid/gid maps, moves it into its own cgroup (memory = MemorySize) and lets it run its
init. Once ready it is stopped (SIGSTOP) and continued only to fork.

A cold start claims one of the template's *cells* (``nimbus.sandbox.template_cells``:
children forked from it ahead of time, each already in the environment cgroup it will
keep), or forks one now when none is ready; it takes a ``/tmp`` disk and a uid as any
cold start does and hands them, with the environment's variables, to the cell, which
confines itself and restores. The environment is then an ordinary ``Environment``.

Templates are reaped once idle (no environment alive, unused for ``idle_seconds``),
replaced when their version's configuration changes, and closed with the manager;
closing a template kills its cells and the environments forked from it (they live in
the PID namespace its keeper process holds).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import signal
import socket
import time
from typing import TYPE_CHECKING

from nimbus.sandbox.cgroups import Cgroup
from nimbus.sandbox.environment import Environment
from nimbus.sandbox.errors import CapacityExhausted
from nimbus.sandbox.spec import EnvironmentSpec
from nimbus.sandbox.template_cells import CELLS, TemplateCells
from nimbus.sandbox.tmpdisk import TmpDisk, memory_tmp

if TYPE_CHECKING:
    from nimbus.sandbox.manager import SandboxManager

log = logging.getLogger(__name__)

BLOCK = 32  # host uids per template: itself and up to 31 environments at a time
INIT_TYPE = "snap-start"  # AWS_LAMBDA_INITIALIZATION_TYPE, as on Lambda


def take_block(free: list[int], size: int) -> int | None:
    """Remove ``size`` consecutive uids from ``free``; returns the first, or None."""
    available = set(free)
    for first in sorted(available):
        if all(first + i in available for i in range(size)):
            block = set(range(first, first + size))
            free[:] = [u for u in free if u not in block]
            return first
    return None


def fingerprint(spec: EnvironmentSpec) -> str:
    """What makes two specs the same template (the log stream is per environment)."""
    return repr(dataclasses.replace(spec, log_stream=""))


def _write(path: str, data: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)


@dataclasses.dataclass
class TemplateInfo:
    """What ``/_nimbus/snapstart`` shows of one template."""

    function_name: str
    version: str
    pid: int
    init_ms: float
    memory_bytes: int
    environments: int
    forks: int
    created: float
    last_used: float
    cells: int = 0  # forked ahead of time, waiting (each in its own cgroup)


class Template:
    """A live template for one function version's spec."""

    def __init__(self, spec: EnvironmentSpec, process: Environment, fork_sock: socket.socket,
                 uid_first: int, manager: SandboxManager, cells: int = CELLS) -> None:
        self.spec = spec
        self.key = fingerprint(spec)
        self.process = process  # the template itself: its exit, logs, cgroup
        self.fork_sock = fork_sock
        self.uid_first = uid_first
        self.free_uids = list(range(uid_first + BLOCK - 1, uid_first, -1))
        self.environments: set[Environment] = set()
        self.forks = 0
        self.created = time.time()
        self.last_used = time.monotonic()
        self.lock = asyncio.Lock()  # one fork at a time
        self._freezing: asyncio.Future[None] | None = None  # pause()'s freeze under way
        self.cells = TemplateCells(self, manager, cells)

    @property
    def alive(self) -> bool:
        return self.process.alive

    def info(self) -> TemplateInfo:
        cgroup = self.process.cgroup
        usage = 0
        if cgroup is not None:
            with contextlib.suppress(OSError):
                usage = cgroup.memory_sample()[0]
        return TemplateInfo(self.spec.function_name, self.spec.version, self.process.pid,
                            round(self.process.init_duration_ms, 3), usage,
                            len(self.environments), self.forks, self.created,
                            time.time() - (time.monotonic() - self.last_used),
                            self.cells.ready)

    def signal(self, sig: int) -> None:
        if self.process.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, sig)

    def pause(self) -> None:
        """Between forks: stop the template and freeze its cgroup, so that what its init
        left running (threads, processes) gets no CPU either; the freezer's write goes to
        a thread, ``resume`` waits for it. Environments forked from the template are
        child subreapers (``nimbus.guest.template``): its frozen keeper never has to reap
        their orphans."""
        self.signal(signal.SIGSTOP)
        cgroup = self.process.cgroup
        if cgroup is not None and cgroup.can_freeze and self.process.alive:
            self._freezing = asyncio.get_running_loop().run_in_executor(None, cgroup.freeze)

    async def resume(self) -> None:
        """Thaw and continue the template, to fork."""
        freezing, self._freezing = self._freezing, None
        if freezing is not None:
            try:
                await freezing
            except OSError as exc:
                log.warning("cannot freeze the SnapStart template of %s:%s: %s",
                            self.spec.function_name, self.spec.version, exc)
        cgroup = self.process.cgroup
        if cgroup is not None and cgroup.can_freeze and self.process.alive:
            await asyncio.get_running_loop().run_in_executor(None, cgroup.thaw)
        self.signal(signal.SIGCONT)

    async def close(self) -> None:
        await self.resume()  # its kill (process.stop) must not race a freeze
        await self.cells.close()
        self.fork_sock.close()
        await asyncio.gather(*(e.stop() for e in list(self.environments)),
                             return_exceptions=True)
        await self.process.stop()


class Templates:
    """The manager's templates, one per (function ARN, version)."""

    def __init__(self, manager: SandboxManager, cells: int = CELLS) -> None:
        self._manager = manager
        self.cells = cells  # per template
        self._templates: dict[tuple[str, str], Template] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    def get(self, function_arn: str, version: str) -> Template | None:
        """The live template of a version, if any."""
        template = self._templates.get((function_arn, version))
        return template if template is not None and template.alive else None

    def infos(self) -> list[TemplateInfo]:
        return [t.info() for t in self._templates.values() if t.alive]

    async def ensure(self, spec: EnvironmentSpec) -> Template:
        """The live template for ``spec``, made now (running the init) if missing or
        made for another configuration. Raises InitError as a cold start would."""
        await self._manager._prepare()  # as a cold start: made at PublishVersion too
        ident = (spec.function_arn, spec.version)
        lock = self._locks.setdefault(ident, asyncio.Lock())
        async with lock:
            template = self._templates.get(ident)
            if template is not None and template.alive and template.key == fingerprint(spec):
                # In use from now: the reaper must not close it under the cold start
                # that asked for it (between here and its fork).
                template.last_used = time.monotonic()
                return template
            if template is not None:
                self._templates.pop(ident, None)
                await template.close()
            template = await self._create(spec)
            self._templates[ident] = template
            template.cells.refill()
            return template

    async def _create(self, spec: EnvironmentSpec) -> Template:
        m = self._manager
        zygote = await m._zygote(spec.runtime)
        first = await m.take_uid_block(BLOCK)  # evicts idle environments if need be
        disk: TmpDisk | None = None
        cgroup: Cgroup | None = None
        ctl_ours = ctl_theirs = fork_ours = fork_theirs = None
        log_r = log_w = -1
        pid = 0
        try:
            disk = await _tmp_for(m, spec.ephemeral_mb)
            cgroup = m._take_cgroup(spec.memory_mb)
            ctl_ours, ctl_theirs = socket.socketpair()
            fork_ours, fork_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            log_r, log_w = os.pipe2(os.O_CLOEXEC)
            nonce = secrets.token_hex(8)
            request = {**m._generic_request(spec.network, cgroup),
                       **m._function_request(spec, 0, nonce), "template": True,
                       "snapstart": True}
            request["env"]["AWS_LAMBDA_INITIALIZATION_TYPE"] = INIT_TYPE
            fds = [ctl_theirs.fileno(), log_w] + ([disk.fd] if disk is not None else [])
            fds.append(fork_theirs.fileno())
            # The template and the environments it forks share one network namespace.
            namespace = await m._namespace(spec.network, request, fds, m._wanted(spec))
            try:
                pid = await zygote.spawn(request, fds)
            finally:
                if namespace is not None:
                    namespace.close()
            fork_theirs.close()
            fork_theirs = None
            fork_ours.setblocking(False)
            loop = asyncio.get_running_loop()
            # It built its root and entered its user namespace: map it (or it failed,
            # and the control socket says why: the read below ends with EOF).
            async with asyncio.timeout(m.init_timeout_s):
                said = await loop.sock_recv(fork_ours, 16)
            if said == b"userns":
                maps = f"0 {first} 1\n{first + 1} {first + 1} {BLOCK - 1}\n"
                _write(f"/proc/{pid}/uid_map", maps)
                _write(f"/proc/{pid}/gid_map", maps)
                fork_ours.send(b"mapped")
        except BaseException:
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
            for sock in (ctl_ours, ctl_theirs, fork_ours, fork_theirs):
                if sock is not None:
                    sock.close()
            for fd in (log_r, log_w):
                if fd >= 0:
                    os.close(fd)
            m._release(None, cgroup, disk)
            m._free_uids.extend(range(first, first + BLOCK))
            raise
        ctl_theirs.close()
        os.close(log_w)

        async def stopped(process: Environment) -> None:
            m._release(None, process.cgroup, process.tmp)
            m._free_uids.extend(range(first, first + BLOCK))

        process = Environment(env_id="template-" + secrets.token_hex(4), spec=spec, pid=pid,
                              ctl=ctl_ours, log_fd=log_r, nonce=nonce, cgroup=cgroup,
                              process_group=False, on_stop=stopped, tmp=disk)
        process.origin = "snapstart template"
        try:
            await process.wait_ready(m.init_timeout_s, limit_cpu=False)  # only forks
        except BaseException:
            fork_ours.close()  # the init failed: its fork socket goes with it
            raise
        template = Template(spec, process, fork_ours, first, m, self.cells)
        template.pause()
        log.info("SnapStart template for %s:%s ready (init %.1f ms)", spec.function_name,
                 spec.version, process.init_duration_ms)
        return template

    async def start(self, spec: EnvironmentSpec) -> Environment:
        """A cold start from the version's template (made first if needed): a ready
        cell claimed, or one forked now."""
        template = await self.ensure(spec)
        m = self._manager
        if not template.free_uids:
            raise CapacityExhausted(f"SnapStart template of {spec.function_name}:"
                                    f"{spec.version} has no uid left ({BLOCK - 1} "
                                    "environments at a time)")
        uid = template.free_uids.pop()
        requested = time.perf_counter()
        cell = template.cells.take()
        origin = "snapstart cell" if cell is not None else "snapstart"
        disk: TmpDisk | None = None
        try:
            if cell is None:
                cell = await template.cells.make(background=False)
            disk = await _tmp_for(m, spec.ephemeral_mb)
            nonce = secrets.token_hex(8)
            env = m._function_request(spec, uid, nonce)["env"]
            env["AWS_LAMBDA_INITIALIZATION_TYPE"] = INIT_TYPE
            claim = {"uid": uid, "gid": uid, "nonce": nonce, "env": env,
                     "mounts": ["tmp"] if disk is not None else []}
            m._hand_over(cell, {"t": "claim", "req": claim},
                         [disk.fd] if disk is not None else [])
        except BaseException:
            if cell is not None:
                cell.discard()
                m._release(None, cell.cgroup)
            # The cell may have attached the disk before it was killed: never reuse it.
            m._release(None, None, disk)
            template.free_uids.append(uid)
            raise

        async def stopped(environment: Environment) -> None:
            template.environments.discard(environment)
            m._environments.discard(environment)
            m._release(None, environment.cgroup, environment.tmp)
            template.free_uids.append(uid)

        environment = Environment(env_id=secrets.token_hex(8), spec=spec, pid=cell.pid,
                                  ctl=cell.ctl, log_fd=cell.log_fd, nonce=nonce,
                                  cgroup=cell.cgroup, process_group=False, on_stop=stopped,
                                  pidfd=cell.pidfd, tmp=disk)
        environment.origin = origin
        environment.stages.append(("requested", requested))
        template.forks += 1
        template.last_used = time.monotonic()
        template.environments.add(environment)
        m._environments.add(environment)
        await environment.wait_ready(m.init_timeout_s)
        return environment

    def reap(self, idle_seconds: float) -> list[Template]:
        """Templates with no environment, unused for ``idle_seconds``: removed from the
        registry and returned, for the caller to close."""
        deadline = time.monotonic() - idle_seconds
        gone = [(k, t) for k, t in self._templates.items()
                if not t.alive or (not t.environments and t.last_used < deadline)]
        for ident, _template in gone:
            del self._templates[ident]
        return [t for _k, t in gone]

    def versions(self, function_name: str) -> set[str]:
        """The versions of a function that have a template."""
        return {t.spec.version for t in self._templates.values()
                if t.spec.function_name == function_name}

    async def drop_version(self, function_name: str, version: str) -> None:
        """Close the template of a deleted version now (its processes go with it)."""
        for ident in [k for k, t in self._templates.items()
                      if t.spec.function_name == function_name and k[1] == version]:
            await self._templates.pop(ident).close()

    async def drop(self, function_arn: str, version: str | None = None) -> None:
        """Close the templates of a function (one version, or all)."""
        for ident in [k for k in self._templates
                      if k[0] == function_arn and (version is None or k[1] == version)]:
            await self._templates.pop(ident).close()

    async def close(self) -> None:
        templates = list(self._templates.values())
        self._templates.clear()
        await asyncio.gather(*(t.close() for t in templates), return_exceptions=True)


async def _tmp_for(manager: SandboxManager, size_mb: int) -> TmpDisk:
    """An environment's own /tmp: a disk from the manager's supply, or (``tmp_storage =
    "memory"``) a tmpfs made here, since one forked from a template cannot mount it
    itself and must not share the template's."""
    if manager._tmp is not None:
        return await manager._tmp.take(size_mb)
    return await asyncio.to_thread(memory_tmp, size_mb)
