"""The execution layer's entry point: one ``SandboxManager`` per server process.

It owns the zygotes (one per runtime, started on first use), the stem cells (a few
pre-forked, half-confined environments per runtime and network setting in demand), the
cgroup pool, the pools of disk-backed ``/tmp`` file systems (``tmpdisk``), the sandbox
uids (a range of the host's claimed for this process: ``uid_range``) and the generated
``/etc``; ``start`` turns an ``EnvironmentSpec`` into a running,
initialised ``Environment`` (a cold start: from a stem cell when one is ready, else
forked from the zygote) and ``close`` tears everything down.

Isolation is ``"namespace"`` (the default: namespaces, cgroups, unprivileged uid,
seccomp) or ``"process"`` (explicit; no isolation at all, for machines without root).
If the configured isolation cannot be had, ``start`` raises ``IsolationUnavailable``:
nimbus never falls back to something weaker on its own. The same goes for ``/tmp``:
``tmp_storage="disk"`` (the default, as Lambda: disk of EphemeralStorage size, not
counted against memory) needs loop devices; where there are none, ``start`` refuses
with a clear error rather than putting ``/tmp`` in memory, which only
``tmp_storage="memory"``, chosen explicitly, does.

Every environment holds one of the manager's uids until it stops. When none is free,
a cold start asks ``evict`` (set by the pool, which knows which environments are idle)
to stop one; when nothing can be evicted it is refused with ``CapacityExhausted``, a
429, never a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from nimbus.egress_rules import LOOPBACK_NET, Rule
from nimbus.guest import mounts, protocol
from nimbus.sandbox import (
    catalog,
    egress,
    envvars,
    function_mounts,
    host,
    hot_pages,
    memory,
    uid_range,
    watchdog,
)
from nimbus.sandbox.cgroups import PIDS_MAX, Cgroup, CgroupPool, Cgroups, CgroupsUnavailable
from nimbus.sandbox.environment import Environment
from nimbus.sandbox.errors import (
    CapacityExhausted,
    IsolationUnavailable,
    SandboxError,
    UnsupportedRuntime,
)
from nimbus.sandbox.interpreters import Interpreter, InterpreterNotFound, resolve
from nimbus.sandbox.netns import Namespace, NetnsSupply
from nimbus.sandbox.quiet import Quiet
from nimbus.sandbox.spec import NOFILE, EnvironmentSpec
from nimbus.sandbox.stemcells import StemCell, StemCells
from nimbus.sandbox.templates import Templates, take_block
from nimbus.sandbox.tmp_supply import TmpSupply
from nimbus.sandbox.tmpdisk import TmpDisk
from nimbus.sandbox.zygote import Zygote

log = logging.getLogger(__name__)

ISOLATIONS = ("namespace", "process")
NETWORKS = ("isolated", "host")
TMP_STORAGES = ("disk", "memory")
INIT_TIMEOUT_S = 10.0  # Lambda's limit for the init phase
# Uids per manager unless told: what the default account concurrency limit (1,000) needs.
UID_COUNT = uid_range.per_process(1000)
# Imported by stem cells while idle, to pre-fault the import machinery (see jail.warm_up).
WARM_MODULE = """import os, sys, json
counter = 0
print("", end="")


def handler(event, context):
    global counter
    counter += 1
    return {"counter": counter}
"""


class SandboxManager:
    """Starts and tracks execution environments for one server process."""

    def __init__(self, work_dir: Path, isolation: str = "namespace", *, pool_size: int = 8,
                 stem_cells: int = 2, stem_cells_burst: int | None = None,
                 tmp_storage: str = "disk",
                 uid_base: int | None = None, uid_count: int = UID_COUNT,
                 init_timeout_s: float = INIT_TIMEOUT_S, pids_max: int = PIDS_MAX,
                 network: str = "isolated", network_allow: Sequence[str] = ()) -> None:
        if isolation not in ISOLATIONS:
            raise ValueError(f"isolation must be one of {', '.join(ISOLATIONS)}, not {isolation!r}")
        if tmp_storage not in TMP_STORAGES:
            raise ValueError(f"tmp_storage must be one of {', '.join(TMP_STORAGES)}, "
                             f"not {tmp_storage!r}")
        self.work_dir = Path(work_dir).absolute()
        self.isolation = isolation
        self.tmp_storage = tmp_storage
        self.pool_size = pool_size
        self.init_timeout_s = init_timeout_s
        self.pids_max = pids_max
        if network not in NETWORKS:
            raise ValueError(f"network must be one of {', '.join(NETWORKS)}, not {network!r}")
        # "isolated": a network namespace per environment (sandbox/netns.py), made
        # once namespace isolation is prepared; parsed now, so a bad entry fails early.
        self.network = network
        self._egress = (egress.EgressPolicy.of(network_allow)
                        if network == "isolated" and isolation == "namespace" else None)
        self._net: NetnsSupply | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None  # sandbox/watchdog.py
        # None: a range of the host's uids is claimed at preparation (uid_range.claim),
        # so no other nimbus process on this host hands out the same uids.
        self._uid_base, self._uid_count = uid_base, uid_count
        self._uid_claim: uid_range.UidClaim | None = None
        self._free_uids: list[int] = []
        if uid_base is not None:
            self._free_uids = list(range(uid_base + uid_count - 1, uid_base - 1, -1))
        # Called when no uid is free: stops an idle environment (True) or finds none
        # (False). The pool sets it; without one, a full manager refuses at once.
        self.evict: Callable[[], Awaitable[bool]] | None = None
        self._zygotes: dict[str, Zygote] = {}
        self._zygote_locks: dict[str, asyncio.Lock] = {}
        self._prepare_lock = asyncio.Lock()
        self._prepared = False
        self._environments: set[Environment] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._cgroups: Cgroups | None = None
        self._pool: CgroupPool | None = None
        self._tmp: TmpSupply | None = None  # disk-backed /tmp (None: tmpfs)
        self._sampler: asyncio.Task[None] | None = None
        self._run_dir = self.work_dir / f"run-{os.getpid()}-{secrets.token_hex(3)}"
        self._interpreters: dict[str, Interpreter] = {}
        self._layout: dict = {}
        self._closed = False
        # Pools are refilled once cold starts are quiet (nimbus.sandbox.quiet).
        self._quiet = Quiet()
        # None: pools do not grow after a burst of cold starts.
        self._cells = StemCells(stem_cells, self._spawn_cell, self._release_cgroup,
                                self._quiet, burst=stem_cells_burst)
        # Stem cells enter their root while idle, and get the function as detached
        # mounts (nimbus.sandbox.function_mounts), where the kernel allows it.
        self._early_root = False
        # The zygote pages a cold start writes, for cells to copy while they idle.
        self._hot_pages = hot_pages.HotPages()
        self.templates = Templates(self)  # SnapStart (nimbus.sandbox.templates)
        if isolation == "process":
            log.warning(
                "SANDBOX ISOLATION IS OFF (isolation='process'): functions run as this user "
                "(uid %d) without namespaces, cgroups, seccomp or a private filesystem; they "
                "can read and change everything this user can. Use only for trusted code.",
                os.getuid(),
            )

    @property
    def environments(self) -> set[Environment]:
        return set(self._environments)

    @property
    def uids(self) -> range:
        """This manager's sandbox uids (empty until prepared, with a claimed range)."""
        if self._uid_base is None:
            return range(0)
        return range(self._uid_base, self._uid_base + self._uid_count)

    # -- preparation --------------------------------------------------------------------

    async def _prepare(self) -> None:
        async with self._prepare_lock:
            if self._prepared:
                return
            if self._closed:
                raise SandboxError("the sandbox manager is closed")
            await asyncio.to_thread(self._prepare_blocking)
            self._prepared = True
            if self._tmp is not None:
                self._tmp.attach(asyncio.get_running_loop())

    def _sweep_stale_run_dirs(self) -> None:
        """Remove what managers of dead processes left in the work dir (after a crash):
        their run dirs hold at most an image file caught between creation and unlink."""
        with contextlib.suppress(OSError):
            for entry in os.listdir(self.work_dir):
                pid = entry.split("-")[1] if entry.startswith("run-") else ""
                if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                    shutil.rmtree(self.work_dir / entry, ignore_errors=True)

    def _prepare_blocking(self) -> None:
        self._sweep_stale_run_dirs()
        self._run_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self._run_dir, 0o755)
        runtimes = catalog.available()
        with ThreadPoolExecutor(max_workers=len(runtimes) or 1) as pool:
            futures = {name: pool.submit(resolve, r.executable) for name, r in runtimes.items()}
        for name, future in futures.items():
            try:
                self._interpreters[name] = future.result()
            except InterpreterNotFound as exc:
                log.warning("runtime %s unavailable: %s", name, exc)
        # Stem cells rehearse an import from here, in either isolation mode.
        warm = self._run_dir / "warm"
        warm.mkdir(mode=0o755, exist_ok=True)
        (warm / "_nimbus_warm_module.py").write_text(WARM_MODULE)
        # Environments inherit this process's hard limit and lower theirs to NOFILE.
        short = host.descriptor_limit(NOFILE, apply=True)
        if short is not None:
            raise IsolationUnavailable(short)
        if self.isolation == "process":
            return
        if os.geteuid() != 0:
            raise IsolationUnavailable(
                "namespace isolation needs root (mount, PID and network namespaces, cgroups, "
                "switching to sandbox uids); run nimbus as root, or choose isolation "
                "'process' explicitly to run functions without isolation"
            )
        try:
            cgroups = Cgroups.detect()
            cgroups.sweep_stale()
            cgroups.setup()
        except CgroupsUnavailable as exc:
            raise IsolationUnavailable(f"cgroups unavailable: {exc}") from exc
        self._cgroups = cgroups
        self._watchdog = watchdog.start(cgroups.parents())
        if self._uid_base is None:
            claim = uid_range.claim(self.work_dir, self._uid_count)
            self._uid_claim, self._uid_base = claim, claim.first
            self._free_uids = list(range(claim.first + self._uid_count - 1, claim.first - 1, -1))
        self._pool = CgroupPool(cgroups, self.pool_size)
        self._pool.refill()
        if self._egress is not None:
            net = NetnsSupply(self._egress)
            net.open()  # IsolationUnavailable says what the host lacks
            self._net = net
        if self.tmp_storage == "disk":
            tmp = TmpSupply(self._run_dir / "tmp", self._background, self._quiet)
            tmp.open()
            self._tmp = tmp
        prefixes = sorted({i.prefix for i in self._interpreters.values()})
        self._layout = mounts.base_layout(prefixes)
        assert self._uid_base is not None
        mounts.write_etc(str(self._run_dir / "etc"), self._uid_base, self._uid_count)
        if self._egress is not None and self._egress.resolv_conf != Path("/etc/resolv.conf"):
            # Their own loopback has no stub resolver: they get the servers it forwards to.
            shutil.copyfile(self._egress.resolv_conf, self._run_dir / "etc" / "resolv.conf")
        (self._run_dir / "rootfs").mkdir(mode=0o755, exist_ok=True)
        self._early_root = function_mounts.supported(str(self._run_dir))
        if not self._early_root:
            log.warning("this kernel cannot make detached read-only mounts (open_tree, "
                        "mount_setattr: Linux 5.12+): stem cells mount functions by path, "
                        "and their cold starts pay pivot_root")

    async def _zygote(self, runtime_name: str) -> Zygote:
        runtime = catalog.available().get(runtime_name)
        if runtime is None:
            raise UnsupportedRuntime(
                f"Runtime {runtime_name} is not supported on this host; supported: "
                + ", ".join(catalog.names())
            )
        interpreter = self._interpreters.get(runtime_name)
        if interpreter is None:
            raise SandboxError(f"the interpreter for {runtime_name} cannot be run on this host")
        lock = self._zygote_locks.setdefault(runtime_name, asyncio.Lock())
        async with lock:
            zygote = self._zygotes.get(runtime_name)
            if zygote is not None and zygote.alive:
                return zygote
            if zygote is not None:
                await zygote.close()
            config = {
                "isolation": self.isolation,
                "kind": "python" if runtime.python else "provided",
                "root": str(self._run_dir / "rootfs"),
                "layout": self._layout,
                "etc": str(self._run_dir / "etc"),
            }
            zygote = Zygote(runtime_name, interpreter, config)
            await zygote.start()
            self._zygotes[runtime_name] = zygote
            return zygote

    async def warm_up(self, runtimes: list[str]) -> None:
        """Start the zygotes of these runtimes now rather than on first use."""
        await self._prepare()
        await asyncio.gather(*(self._zygote(name) for name in runtimes))

    # -- environments -------------------------------------------------------------------

    def _take_cgroup(self, memory_mb: int) -> Cgroup | None:
        if self._pool is None:
            return None
        cgroup = self._pool.take()
        cgroup.configure(memory_mb, self.pids_max)
        if self._pool.low:
            self._background(asyncio.to_thread(self._pool.refill))
        return cgroup

    def _background(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _generic_request(self, network: bool, cgroup: Cgroup | None) -> dict:
        """What the sandbox needs before the function is known (stem cells)."""
        return {
            "isolation": self.isolation,
            "cgroup_procs": cgroup.procs_files if cgroup is not None else [],
            "root": str(self._run_dir / "rootfs"),
            "hostname": "localhost",
            "network": network,
            "nofile": NOFILE,
            "warm_dir": str(self._run_dir / "warm"),
            "early_root": self._early_root,  # stem cells: enter the root while idle
        }

    def _function_request(self, spec: EnvironmentSpec, uid: int, nonce: str) -> dict:
        """The function's part: its files, user, variables and handler."""
        runtime = catalog.available()[spec.runtime]
        interpreter = self._interpreters[spec.runtime]
        namespace = self.isolation == "namespace"
        task_root = envvars.TASK_ROOT if namespace else str(spec.code_dir)
        python = interpreter.version if runtime.python else None
        python_bin = f"{interpreter.prefix}/bin" if runtime.python else None
        env = envvars.build(spec, python=python, python_bin=python_bin, task_root=task_root)
        if namespace:
            major, minor = interpreter.version
            python_path = [f"/opt/python/lib/python{major}.{minor}/site-packages", "/opt/python"]
        else:
            python_path = [str(d / "python") for d in reversed(spec.layer_dirs)]
        return {
            "code_dir": str(Path(spec.code_dir).absolute()),
            "layers": [str(Path(d).absolute()) for d in spec.layer_dirs],
            "tmp_mb": spec.ephemeral_mb,
            "uid": uid,
            "gid": uid,
            "env": env,
            "handler": spec.handler,
            "nonce": nonce,
            "task_root": task_root,
            "python_path": python_path,
        }

    def _wanted(self, spec: EnvironmentSpec) -> frozenset[Rule]:
        """The rules a function's namespace needs beyond the installation's: its tag's
        entries, and UDP to this process's X-Ray receiver if it is traced."""
        wanted = set(spec.network_allow)
        if spec.xray_daemon and self._net is not None:
            rule = Rule(LOOPBACK_NET, int(spec.xray_daemon.rpartition(":")[2]))
            self._net.widen(rule)
            wanted.add(rule)
        return frozenset(wanted)

    async def _namespace(self, network: bool, request: dict, fds: list[int],
                         wanted: frozenset[Rule] = frozenset()) -> Namespace | None:
        """A network namespace of its own for an environment with network: its
        descriptor goes last in ``fds`` (the guest joins it first thing)."""
        if not network or self._net is None:
            return None
        namespace = await self._net.take(wanted)
        request["netns"] = True
        fds.append(namespace.fd)
        return namespace

    async def _spawn_cell(self, key: tuple[str, bool]) -> StemCell:
        runtime, network = key
        zygote = await self._zygote(runtime)
        cgroup = await asyncio.to_thread(self._pool.take) if self._pool is not None else None
        if self._pool is not None and self._pool.low:  # a grown pool of cells drains it
            self._background(asyncio.to_thread(self._pool.refill))
        ctl_ours, ctl_theirs = socket.socketpair()
        log_r, log_w = os.pipe2(os.O_CLOEXEC)
        namespace = None
        try:
            request = {**self._generic_request(network, cgroup), "stem": True}
            hot = self._hot_pages.of(runtime, zygote.pid)
            if hot is not None:
                request["hot_pages"] = hot
            fds = [ctl_theirs.fileno(), log_w]
            namespace = await self._namespace(network, request, fds)
            pid = await zygote.spawn(request, fds)
        except BaseException:
            ctl_ours.close()
            os.close(log_r)
            self._release(None, cgroup)
            raise
        finally:
            ctl_theirs.close()
            os.close(log_w)
            if namespace is not None:
                namespace.close()
        cell = StemCell(key, pid, os.pidfd_open(pid), ctl_ours, log_r, cgroup,
                        zygote_pid=zygote.pid)
        cell.net_rules = namespace.rules if namespace is not None else frozenset()
        return cell

    def _release_cgroup(self, cgroup: Cgroup | None) -> None:
        self._release(None, cgroup)

    async def start(self, spec: EnvironmentSpec) -> Environment:
        """A cold start: a fresh sandbox (from a stem cell, else forked from the
        runtime's zygote) and the init phase. Raises InitError, IsolationUnavailable
        or UnsupportedRuntime."""
        await self._prepare()
        self._quiet.begin()  # no refills while it runs, nor during its first invocation
        try:
            if spec.snapstart and self.isolation == "namespace":
                return await self.templates.start(spec)
            return await self._start(spec)
        finally:
            self._quiet.end()

    async def refilled(self, spec: EnvironmentSpec) -> None:
        """Wait until the cells a cold start of ``spec`` takes have been refilled (the
        refill held back or under way has ended): what a cold start finds between
        sporadic requests. SnapStart: its template's cells, if the template exists."""
        if spec.snapstart and self.isolation == "namespace":
            template = self.templates.get(spec.function_arn, spec.version)
            if template is not None:
                await template.cells.filled()
            return
        await self._cells.filled((spec.runtime, spec.network))

    async def _start(self, spec: EnvironmentSpec) -> Environment:
        zygote = await self._zygote(spec.runtime)
        namespace = self.isolation == "namespace"
        if namespace:
            uid = await self._take_uid()
        else:
            uid = os.getuid()
        own_uid = uid if namespace else None
        env_id = secrets.token_hex(8)
        nonce = secrets.token_hex(8)
        try:
            environment = await self._from_cell(spec, env_id, uid, nonce, own_uid)
            if environment is None:
                try:
                    environment = await self._from_zygote(zygote, spec, env_id, uid, nonce,
                                                          own_uid)
                except SandboxError:
                    if zygote.alive:
                        raise
                    # The zygote died (killed from outside?): one new one, one more try.
                    zygote = await self._zygote(spec.runtime)
                    environment = await self._from_zygote(zygote, spec, env_id, uid, nonce,
                                                          own_uid)
        except BaseException:
            self._release(own_uid, None)
            raise
        self._environments.add(environment)
        await environment.wait_ready(self.init_timeout_s)
        return environment

    async def _take_uid(self) -> int:
        """A free uid, after evicting idle environments if none is (CapacityExhausted
        when nothing can be evicted)."""
        while not self._free_uids:
            await self._make_room("a sandbox uid")
        return self._free_uids.pop()

    async def take_uid_block(self, size: int) -> int:
        """``size`` consecutive free uids (a SnapStart template's), after evicting idle
        environments if need be; returns the first."""
        while (first := take_block(self._free_uids, size)) is None:
            await self._make_room(f"a block of {size} consecutive sandbox uids")
        return first

    async def _make_room(self, what: str) -> None:
        if self.evict is None or not await self.evict():
            detail = (f"no {what} left: all {self._uid_count} of this process's are held by "
                      "busy, provisioned or stopping environments")
            log.warning("cold start refused (429): %s", detail)
            raise CapacityExhausted(detail)

    def _environment(self, spec: EnvironmentSpec, env_id: str, pid: int, ctl: socket.socket,
                     log_fd: int, nonce: str, cgroup: Cgroup | None, own_uid: int | None,
                     disk: TmpDisk | None, pidfd: int | None = None) -> Environment:
        async def stopped(environment: Environment) -> None:
            self._environments.discard(environment)
            self._release(own_uid, environment.cgroup, environment.tmp)

        if disk is not None and (self._sampler is None or self._sampler.done()):
            self._sampler = asyncio.ensure_future(self._sample_memory())
        return Environment(
            env_id=env_id, spec=spec, pid=pid, ctl=ctl, log_fd=log_fd, nonce=nonce,
            cgroup=cgroup, process_group=self.isolation != "namespace", on_stop=stopped,
            pidfd=pidfd, tmp=disk,
        )

    async def _sample_memory(self) -> None:
        """While environments with a disk-backed /tmp exist: every SAMPLE_S, let those
        running an invocation note their page cache and memory (nimbus.sandbox.memory)."""
        while not self._closed:
            await asyncio.sleep(memory.SAMPLE_S)
            watched = [e for e in self._environments if e.tmp is not None]
            if not watched:
                return
            for environment in watched:
                if environment.busy and environment.memory is not None:
                    environment.memory.sample()

    async def _from_cell(self, spec: EnvironmentSpec, env_id: str, uid: int, nonce: str,
                         own_uid: int | None) -> Environment | None:
        cell = self._cells.take((spec.runtime, spec.network))
        if cell is None:
            return None
        disk = None
        handed: dict[str, int] = {}  # detached mounts, by name (nimbus.guest.mounts)
        before = None  # the cell's page map, while a zygote's cold starts are learned
        try:
            disk = None if self._tmp is None else await self._tmp.take(spec.ephemeral_mb)
            if cell.cgroup is not None:
                cell.cgroup.configure(spec.memory_mb, self.pids_max)
            request = self._function_request(spec, uid, nonce)
            if self._net is not None and spec.network:
                await self._net.allow(cell.pid, self._wanted(spec) - cell.net_rules)
            requested = time.perf_counter()
            if disk is not None:
                handed["tmp"] = disk.fd
            if self._early_root:  # the cell is in its root: no host path reaches it
                handed["code"] = function_mounts.bind_read_only(request["code_dir"])
                opt = function_mounts.layers(request["layers"])
                if opt is not None:
                    handed["opt"] = opt
            request["mounts"] = list(handed)
            if catalog.available()[spec.runtime].python:  # what does a cold start write?
                before = await self._hot_pages.before(spec.runtime, cell.zygote_pid, cell.pid)
            self._hand_over(cell, {"t": "specialize", "req": request}, list(handed.values()))
        except BaseException as exc:
            if isinstance(exc, OSError):
                log.warning("discarding a stem cell: %s", exc)
            cell.discard()
            # The cell may have attached the disk before it was killed: never reuse it.
            self._release(None, cell.cgroup, disk)
            if isinstance(exc, OSError):
                return None
            raise
        finally:
            for name, fd in handed.items():
                if name != "tmp":  # the cell has its own copy (the disk is released apart)
                    os.close(fd)
        environment = self._environment(spec, env_id, cell.pid, cell.ctl, cell.log_fd, nonce,
                                         cell.cgroup, own_uid, disk, pidfd=cell.pidfd)
        environment.origin = "stem cell"
        environment.stages.append(("requested", requested))
        if before is not None:
            environment.after_first_invocation = functools.partial(
                self._learn_hot_pages, spec.runtime, cell.zygote_pid, before)
        return environment

    async def _learn_hot_pages(self, runtime: str, zygote_pid: int,
                               before: hot_pages.Snapshot, environment: Environment) -> None:
        def current() -> bool:  # the process read is the cell, of the zygote in use
            zygote = self._zygotes.get(runtime)
            return (environment.alive and not environment.stopped and zygote is not None
                    and zygote.alive and zygote.pid == zygote_pid)

        await self._hot_pages.learn(runtime, zygote_pid, environment.pid, before, current)

    @staticmethod
    def _hand_over(cell: StemCell, message: dict, fds: list[int]) -> None:
        """Give a waiting cell (a stem cell or a SnapStart template's) its function, as
        ``nimbus.guest.cells.await_function`` reads it: one byte carrying the detached
        mounts ``fds`` (SCM_RIGHTS; ``message["req"]["mounts"]`` names them), then the
        frame: a few kB into an empty socket buffer, no block."""
        if os.sched_getscheduler(cell.pid) != os.SCHED_OTHER:
            # Cells idle at SCHED_IDLE; this one is needed now, at normal priority.
            os.sched_setscheduler(cell.pid, os.SCHED_OTHER, os.sched_param(0))
        frame = protocol.encode(message)
        if not fds:
            cell.ctl.sendall(b"\x00" + frame)
        else:
            sent = socket.send_fds(cell.ctl, [b"\x01" + frame], fds)
            if sent < len(frame) + 1:
                cell.ctl.sendall(frame[sent - 1:])

    async def _from_zygote(self, zygote: Zygote, spec: EnvironmentSpec, env_id: str,
                           uid: int, nonce: str, own_uid: int | None) -> Environment:
        cgroup = None
        disk = None
        ctl_ours = ctl_theirs = None
        log_r = log_w = -1
        namespace = None
        try:
            disk = None if self._tmp is None else await self._tmp.take(spec.ephemeral_mb)
            cgroup = self._take_cgroup(spec.memory_mb)
            ctl_ours, ctl_theirs = socket.socketpair()
            log_r, log_w = os.pipe2(os.O_CLOEXEC)
            request = {**self._generic_request(spec.network, cgroup),
                       **self._function_request(spec, uid, nonce)}
            requested = time.perf_counter()
            fds = [ctl_theirs.fileno(), log_w] + ([disk.fd] if disk is not None else [])
            namespace = await self._namespace(spec.network, request, fds, self._wanted(spec))
            pid = await zygote.spawn(request, fds)
        except BaseException:
            if namespace is not None:
                namespace.close()
            for sock in (ctl_ours, ctl_theirs):
                if sock is not None:
                    sock.close()
            for fd in (log_r, log_w):
                if fd >= 0:
                    os.close(fd)
            # Even a failed spawn may have reached a child: a retry takes a new disk.
            self._release(None, cgroup, disk)
            raise
        ctl_theirs.close()
        os.close(log_w)
        if namespace is not None:
            namespace.close()
        environment = self._environment(spec, env_id, pid, ctl_ours, log_r, nonce, cgroup,
                                        own_uid, disk)
        environment.origin = "zygote"
        environment.stages.append(("requested", requested))
        return environment

    def _release(self, uid: int | None, cgroup: Cgroup | None,
                 disk: TmpDisk | None = None) -> None:
        if uid is not None:
            self._free_uids.append(uid)
        if cgroup is not None:
            self._background(asyncio.to_thread(cgroup.remove))
        if disk is not None:
            if self._tmp is not None:
                self._tmp.release(disk)
            else:  # a template environment's tmpfs (tmp_storage "memory")
                self._background(asyncio.to_thread(disk.close))

    async def close(self) -> None:
        """Kill every environment and zygote and remove nimbus' cgroups."""
        self._closed = True
        if self._sampler is not None:
            self._sampler.cancel()
        await self._cells.close()
        await self.templates.close()
        self._quiet.close()  # what waits runs now (closed pools refill nothing)
        if self._net is not None:
            await asyncio.to_thread(self._net.close)
        await asyncio.gather(*(e.stop() for e in list(self._environments)),
                             return_exceptions=True)
        await asyncio.gather(*(z.close() for z in self._zygotes.values()),
                             return_exceptions=True)
        self._zygotes.clear()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._pool is not None:
            await asyncio.to_thread(self._pool.drain)
        if self._tmp is not None:
            await self._tmp.close()
        if self._cgroups is not None:
            await asyncio.to_thread(self._cgroups.sweep)
        if self._watchdog is not None:
            await asyncio.to_thread(watchdog.stop, self._watchdog)
        with contextlib.suppress(OSError):
            await asyncio.to_thread(shutil.rmtree, self._run_dir)
        if self._uid_claim is not None:
            self._uid_claim.close()
