"""Control groups: cgroup v1 and v2 behind one interface, and a pool of empty ones.

Every execution environment gets its own cgroup: memory limited to MemorySize with no
swap, a pids limit (fork bombs stop there), and CPU in proportion to memory, as Lambda
gives it (one vCPU per 1,769 MB): a share under contention, and from the end of the init
phase a quota (``limit_cpu``: CFS bandwidth, per 100 ms period, at most the machine's
cores). Between invocations an environment's cgroup is frozen (``freeze``/``thaw``: the
v1 freezer or v2's ``cgroup.freeze``), so that what a function left running gets no CPU
until its next invocation. nimbus nests its cgroups under the cgroup it runs in
(delegation), never at the root of a hierarchy.

Creating a cgroup is a few mkdirs, cheap but not free, so a small pool is made ahead of
time off the event loop; a cold start only writes the limits and the child joins by
writing ``0`` to each ``cgroup.procs`` file before it drops privileges.

The memory counters (usage, peak, limit) include the page cache the environment's
processes brought in, such as what a function writes to its disk-backed /tmp; that
cache is reclaimed (written back first) when the limit is reached, so it never causes
an OOM kill. ``memory_sample`` says how much of the usage is page cache no process maps,
which ``nimbus.sandbox.memory`` takes off to report memory only.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import signal
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path

log = logging.getLogger(__name__)

PIDS_MAX = 1024
MB = 1024 * 1024
# Lambda: 1 vCPU per 1,769 MB of memory.
MB_PER_VCPU = 1769
CPU_PERIOD_US = 100_000  # the CFS bandwidth period the quota is given per
CPU_QUOTA_MIN_US = 1_000  # the kernel's smallest quota


class CgroupsUnavailable(OSError):
    """The host has no usable memory+pids cgroups for nimbus."""


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read(path: str) -> str:
    # os-level calls: this runs on the event loop after every invocation, and a file
    # object costs several times the three syscalls.
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 65536).decode()
    finally:
        os.close(fd)


def _keyed(path: str, key: str) -> int:
    """A value from a flat-keyed file such as memory.events or memory.oom_control."""
    try:
        for line in _read(path).splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except OSError:
        pass
    return 0


def _kill_members(procs_file: str) -> int:
    """SIGKILL every process listed; returns how many were still there."""
    try:
        pids = [int(p) for p in _read(procs_file).split()]
    except OSError:
        return 0
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


def _thaw_dir(path: str) -> None:
    """Thaw a cgroup directory, v1 or v2, if it is one that freezes: a frozen process
    keeps a SIGKILL pending until it is thawed (v1), so a kill is followed by this."""
    for name, value in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
        with contextlib.suppress(OSError):
            _write(f"{path}/{name}", value)


def _rmdir_when_empty(paths: list[str], procs_file: str, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    delay = 0.001
    pending = list(paths)
    while pending:
        path = pending[0]
        try:
            os.rmdir(path)
            pending.pop(0)
            continue
        except FileNotFoundError:
            pending.pop(0)
            continue
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                log.warning("cannot remove cgroup %s: %s", path, exc)
                return False
        # Members die asynchronously after SIGKILL; a busy cgroup empties within ms.
        _kill_members(procs_file)
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return True


class Cgroup(ABC):
    """One environment's cgroup (one directory per hierarchy on v1, one on v2)."""

    def __init__(self, name: str, dirs: list[str]) -> None:
        self.name = name
        self.dirs = dirs
        self._peak_fd: int | None = None  # kept open: read after every invocation
        self._usage_fd: int | None = None  # these two only once /tmp has held data
        self._stat_fd: int | None = None

    def _read_peak(self, path: str) -> int:
        """The memory peak file, read with one ``pread`` on a descriptor kept open: on
        the event loop after every invocation, open+read+close is three syscalls, and
        each one lets another thread take the GIL from the loop."""
        if self._peak_fd is None:
            try:  # writable where the kernel lets the peak be reset (reset_peak)
                self._peak_fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except PermissionError:
                self._peak_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        return int(os.pread(self._peak_fd, 64, 0))

    def reset_peak(self) -> bool:
        """Start the peak afresh from the current usage (cgroup v1; v2 from Linux 6.12,
        for reads through the same descriptor); False where the kernel cannot."""
        if self._peak_fd is None:
            self.memory_peak_bytes()
        try:
            return self._peak_fd is not None and os.pwrite(self._peak_fd, b"0", 0) > 0
        except OSError:
            return False

    def _close_peak(self) -> None:
        fds = (self._peak_fd, self._usage_fd, self._stat_fd)
        self._peak_fd = self._usage_fd = self._stat_fd = None
        for fd in fds:
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _sample(self, usage_path: str, stat_path: str, mapped: bytes) -> tuple[int, int]:
        """(usage, unmapped page cache): the usage file and memory.stat, each read with
        one ``pread`` on a descriptor kept open. The cache is what is on the file LRU
        lists (shmem is not) minus what is mapped (a loaded library is memory in use)."""
        try:
            if self._usage_fd is None:
                self._usage_fd = os.open(usage_path, os.O_RDONLY | os.O_CLOEXEC)
            if self._stat_fd is None:
                self._stat_fd = os.open(stat_path, os.O_RDONLY | os.O_CLOEXEC)
            usage = int(os.pread(self._usage_fd, 64, 0))
            raw = os.pread(self._stat_fd, 16384, 0)
        except (OSError, ValueError):
            return 0, 0
        values = {}
        for line in raw.splitlines():
            name, _, value = line.partition(b" ")
            if name in (b"active_file", b"inactive_file", mapped):
                values[name] = int(value)
                if len(values) == 3:
                    break
        cache = values.get(b"active_file", 0) + values.get(b"inactive_file", 0)
        return usage, max(0, min(usage, cache - values.get(mapped, 0)))

    @property
    def procs_files(self) -> list[str]:
        """Files the sandboxed child writes ``0`` into to join (before dropping root)."""
        return [f"{d}/cgroup.procs" for d in self.dirs]

    @abstractmethod
    def configure(self, memory_mb: int, pids_max: int = PIDS_MAX) -> None: ...

    @abstractmethod
    def memory_peak_bytes(self) -> int: ...

    @abstractmethod
    def memory_sample(self) -> tuple[int, int]:
        """(usage now, the part of it that is page cache no process maps): the data of
        files written or read (a disk-backed /tmp's), reclaimable. ~20 us (memory.stat):
        not for every invocation."""

    @abstractmethod
    def swap_limited(self) -> bool:
        """Whether swap is held at zero (the kernel accounts swap for this cgroup)."""

    @abstractmethod
    def oom_kills(self) -> int: ...

    @abstractmethod
    def kill(self) -> None:
        """SIGKILL every member, and thaw the cgroup so that frozen members die too."""

    @property
    @abstractmethod
    def can_freeze(self) -> bool:
        """Whether ``freeze`` works here (v1: the freezer hierarchy is mounted)."""

    @abstractmethod
    def freeze(self) -> None:
        """Stop every member where it is (blocking: the write can take milliseconds; the
        kernel completes the freeze asynchronously, which is all an idle environment
        needs)."""

    @abstractmethod
    def thaw(self) -> None:
        """Let the members run again; done when this returns."""

    @abstractmethod
    def limit_cpu(self, memory_mb: int) -> None:
        """Cap CPU time at ``cpu_quota_us(memory_mb)`` per ``CPU_PERIOD_US``."""

    def remove(self) -> bool:
        """Kill what is left and remove the directories (blocking; use a thread)."""
        self._close_peak()
        self.kill()
        return _rmdir_when_empty(self.dirs, self.procs_files[0])

    @staticmethod
    def cpu_shares(memory_mb: int) -> int:
        return max(2, 1024 * memory_mb // MB_PER_VCPU)

    @staticmethod
    def cpu_quota_us(memory_mb: int) -> int:
        """CPU time per period for ``memory_mb``: one core's worth at MB_PER_VCPU, in
        proportion below and above, never more than the machine's cores."""
        cores = os.cpu_count() or 1
        quota = CPU_PERIOD_US * memory_mb // MB_PER_VCPU
        return max(CPU_QUOTA_MIN_US, min(quota, cores * CPU_PERIOD_US))


class CgroupV1(Cgroup):
    def __init__(self, name: str, dirs: dict[str, str]) -> None:
        super().__init__(name, list(dict.fromkeys(dirs.values())))
        self.by_controller = dirs
        self.memory = dirs["memory"]
        self.freezer = dirs.get("freezer")

    def configure(self, memory_mb: int, pids_max: int = PIDS_MAX) -> None:
        limit = str(memory_mb * MB)
        mem = self.memory
        memsw = f"{mem}/memory.memsw.limit_in_bytes"
        try:
            _write(f"{mem}/memory.limit_in_bytes", limit)
            if os.path.exists(memsw):
                _write(memsw, limit)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            # Lowering: memsw must stay >= mem, so the other order.
            _write(memsw, limit)
            _write(f"{mem}/memory.limit_in_bytes", limit)
        with contextlib.suppress(OSError):
            _write(f"{mem}/memory.swappiness", "0")
        _write(f"{self.by_controller['pids']}/pids.max", str(pids_max))
        if "cpu" in self.by_controller:
            _write(f"{self.by_controller['cpu']}/cpu.shares", str(self.cpu_shares(memory_mb)))

    def swap_limited(self) -> bool:
        return os.path.exists(f"{self.memory}/memory.memsw.limit_in_bytes")

    def memory_peak_bytes(self) -> int:
        try:
            return self._read_peak(f"{self.memory}/memory.max_usage_in_bytes")
        except (OSError, ValueError):
            return 0

    def memory_sample(self) -> tuple[int, int]:
        return self._sample(f"{self.memory}/memory.usage_in_bytes",
                            f"{self.memory}/memory.stat", b"mapped_file")

    def oom_kills(self) -> int:
        path = f"{self.memory}/memory.oom_control"
        try:
            if "oom_kill " in _read(path):
                return _keyed(path, "oom_kill")
            # Kernels before 4.13 lack the counter: a hit limit is the next best signal.
            return 1 if int(_read(f"{self.memory}/memory.failcnt")) else 0
        except (OSError, ValueError):
            return 0

    def kill(self) -> None:
        _kill_members(f"{self.memory}/cgroup.procs")
        if self.freezer is not None:
            _thaw_dir(self.freezer)

    @property
    def can_freeze(self) -> bool:
        return self.freezer is not None

    def freeze(self) -> None:
        if self.freezer is not None:
            _write(f"{self.freezer}/freezer.state", "FROZEN")

    def thaw(self) -> None:
        if self.freezer is not None:
            _write(f"{self.freezer}/freezer.state", "THAWED")

    def limit_cpu(self, memory_mb: int) -> None:
        cpu = self.by_controller.get("cpu")
        if cpu is not None:
            _write(f"{cpu}/cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(f"{cpu}/cpu.cfs_quota_us", str(self.cpu_quota_us(memory_mb)))


class CgroupV2(Cgroup):
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name, [path])
        self.path = path

    def configure(self, memory_mb: int, pids_max: int = PIDS_MAX) -> None:
        p = self.path
        _write(f"{p}/memory.max", str(memory_mb * MB))
        with contextlib.suppress(FileNotFoundError):
            _write(f"{p}/memory.swap.max", "0")
        _write(f"{p}/pids.max", str(pids_max))
        if os.path.exists(f"{p}/cpu.weight"):
            # cgroup v2 weight 100 is the default share; map v1's 1024 onto it.
            weight = min(10000, max(1, self.cpu_shares(memory_mb) * 100 // 1024))
            _write(f"{p}/cpu.weight", str(weight))

    def swap_limited(self) -> bool:
        return os.path.exists(f"{self.path}/memory.swap.max")

    def memory_peak_bytes(self) -> int:
        for name in ("memory.peak", "memory.current"):  # memory.peak: Linux 5.19+
            try:
                return self._read_peak(f"{self.path}/{name}")
            except (OSError, ValueError):
                self._close_peak()  # memory.peak missing: fall back to memory.current
                continue
        return 0

    def memory_sample(self) -> tuple[int, int]:
        return self._sample(f"{self.path}/memory.current", f"{self.path}/memory.stat",
                            b"file_mapped")

    def oom_kills(self) -> int:
        return _keyed(f"{self.path}/memory.events", "oom_kill")

    def kill(self) -> None:
        try:
            _write(f"{self.path}/cgroup.kill", "1")  # Linux 5.14+
        except FileNotFoundError:
            _kill_members(f"{self.path}/cgroup.procs")
        except OSError:
            pass
        _thaw_dir(self.path)  # v2 kills frozen processes, but the cgroup stays frozen

    @property
    def can_freeze(self) -> bool:
        return True  # cgroup.freeze: every non-root cgroup (Linux 5.2+)

    def freeze(self) -> None:
        _write(f"{self.path}/cgroup.freeze", "1")

    def thaw(self) -> None:
        _write(f"{self.path}/cgroup.freeze", "0")

    def limit_cpu(self, memory_mb: int) -> None:
        if os.path.exists(f"{self.path}/cpu.max"):
            _write(f"{self.path}/cpu.max", f"{self.cpu_quota_us(memory_mb)} {CPU_PERIOD_US}")


def _mountinfo() -> list[tuple[str, str, str, set[str]]]:
    """(mount point, root inside the fs, fstype, super options) for each mount."""
    mounts = []
    for line in _read("/proc/self/mountinfo").splitlines():
        pre, _, post = line.partition(" - ")
        fields = pre.split()
        fstype, _source, options = ([*post.split(), "", "", ""])[:3]
        mounts.append((fields[4], fields[3], fstype, set(options.split(","))))
    return mounts


def _own_cgroups() -> dict[str, str]:
    """Controller (or "" for v2) -> this process's cgroup path."""
    own = {}
    for line in _read("/proc/self/cgroup").splitlines():
        _id, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else [""]:
            own[c] = path
    return own


def _join(mount: str, mount_root: str, path: str) -> str:
    if mount_root != "/" and path.startswith(mount_root):
        path = path[len(mount_root):]
    return mount.rstrip("/") + "/" + path.strip("/")


class Cgroups(ABC):
    """The host's cgroup hierarchy, as far as nimbus uses it."""

    version: int
    controllers: list[str]
    _instances = itertools.count(1)

    def __init__(self) -> None:
        self._names = itertools.count(1)
        # nimbus-<pid>, and nimbus-<pid>-<n> for a second user in the same process (the
        # doctor's checks, tests): sweeping one's cgroups must not kill the other's.
        n = next(Cgroups._instances)
        self.prefix = f"nimbus-{os.getpid()}" + (f"-{n}" if n > 1 else "")

    @staticmethod
    def detect() -> Cgroups:
        """v2 when the unified hierarchy holds memory and pids, else v1; raises
        CgroupsUnavailable when neither is usable."""
        found = _hierarchy()
        if isinstance(found, tuple):
            return CgroupsV2(*found)
        return CgroupsV1(found)

    @abstractmethod
    def setup(self) -> None:
        """Create nimbus' parent cgroup(s); raises CgroupsUnavailable."""

    @property
    @abstractmethod
    def can_freeze(self) -> bool:
        """Whether environments can be frozen between invocations."""

    @abstractmethod
    def create(self) -> Cgroup: ...

    @abstractmethod
    def parents(self) -> list[str]: ...

    @property
    def cpu_unlimited(self) -> str | None:
        """Why environments' CPU cannot be capped on this host (no cpu controller for
        nimbus: ``limit_cpu`` and the shares then do nothing), or None when it can."""
        return _cpu_unlimited(self.version, self.controllers)

    def sweep(self) -> None:
        """Remove the parents (blocking); environments must be gone or are killed."""
        for parent in self.parents():
            if not os.path.isdir(parent):
                continue
            for child in sorted(Path(parent).iterdir()):
                if child.is_dir():
                    _kill_members(f"{child}/cgroup.procs")
                    _thaw_dir(str(child))
                    _rmdir_when_empty([str(child)], f"{child}/cgroup.procs")
            _rmdir_when_empty([parent], f"{parent}/cgroup.procs")

    def sweep_stale(self) -> None:
        """Remove cgroups left by nimbus processes that died without cleaning up."""
        for parent in self.parents():
            base = os.path.dirname(parent)
            with contextlib.suppress(OSError):
                for entry in os.listdir(base):
                    if not entry.startswith("nimbus-") or entry == self.prefix:
                        continue
                    pid = entry.removeprefix("nimbus-").split("-")[0]
                    if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                        path = f"{base}/{entry}"
                        for child in os.listdir(path):
                            if os.path.isdir(f"{path}/{child}"):
                                _kill_members(f"{path}/{child}/cgroup.procs")
                                _thaw_dir(f"{path}/{child}")
                                _rmdir_when_empty(
                                    [f"{path}/{child}"], f"{path}/{child}/cgroup.procs"
                                )
                        _rmdir_when_empty([path], f"{path}/cgroup.procs")


def _hierarchy() -> tuple[str, str] | dict[str, tuple[str, str]]:
    """The v2 hierarchy to use, as (mount point, root), when it holds memory and pids;
    else the v1 mounts by controller; CgroupsUnavailable when neither is usable."""
    mounts = _mountinfo()
    for point, root, fstype, _opts in mounts:
        if fstype != "cgroup2":
            continue
        try:
            ctrl = set(_read(f"{point}/cgroup.controllers").split())
        except OSError:
            continue
        if {"memory", "pids"} <= ctrl:
            return point, root
    v1: dict[str, tuple[str, str]] = {}
    for point, root, fstype, opts in mounts:
        if fstype == "cgroup":
            for c in ("memory", "pids", "cpu", "cpuacct", "freezer"):
                if c in opts and c not in v1:
                    v1[c] = (point, root)
    missing = {"memory", "pids"} - set(v1)
    if missing:
        raise CgroupsUnavailable(
            f"no cgroup controllers {', '.join(sorted(missing))} on this host "
            "(neither a cgroup v2 hierarchy with them nor cgroup v1 mounts)"
        )
    return v1


def memory_headroom_mb() -> int | None:
    """What this process's cgroup and its ancestors still let it take, in MB (the least
    limit minus usage among them; a container's or a unit's MemoryMax), or None when no
    memory limit applies: a worker node announces this rather than the machine's."""
    try:
        found = _hierarchy()
        own = _own_cgroups()
    except OSError:
        return None
    if isinstance(found, tuple):
        (mount, root), path = found, own.get("", "/")
        limit_file, usage_file = "memory.max", "memory.current"
    elif "memory" in found:
        (mount, root), path = found["memory"], own.get("memory", "/")
        limit_file, usage_file = "memory.limit_in_bytes", "memory.usage_in_bytes"
    else:
        return None
    least: int | None = None
    while True:
        directory = _join(mount, root, path)
        try:
            limit = _read(f"{directory}/{limit_file}").strip()
            usage = int(_read(f"{directory}/{usage_file}").strip())
        except (OSError, ValueError):
            limit, usage = "max", 0  # the hierarchy's root has no such files
        if limit != "max" and int(limit) < 1 << 60:  # v1 says "unlimited" with a huge one
            room = max(0, int(limit) - usage) // (1024 * 1024)
            least = room if least is None else min(least, room)
        if path in ("", "/"):
            return least
        path = path.rsplit("/", 1)[0] or "/"


def _cpu_unlimited(version: int, controllers: list[str]) -> str | None:
    if "cpu" in controllers:
        return None
    where = (
        "no cgroup v1 hierarchy with the cpu controller is mounted"
        if version == 1
        else "the cgroup v2 hierarchy does not offer the cpu controller"
    )
    return (
        f"{where}: functions' CPU is neither capped in proportion to memory (one vCPU per "
        "1,769 MB, as on Lambda) nor shared by it, so one function can take every core; "
        "mount the cpu controller (v1) or enable it for nimbus's cgroup (v2)"
    )


_cpu_warned = threading.Event()


def _warn_cpu_unlimited(why: str | None) -> None:
    # Weaker than configured, never silently (DESIGN.md principle 4); once a process.
    if why is not None and not _cpu_warned.is_set():
        _cpu_warned.set()
        log.warning("CPU quota unavailable: %s (see `nimbus doctor`)", why)


def warn_if_cpu_unlimited() -> None:
    """Log a warning when this host cannot cap functions' CPU (blocking: reads
    /proc/self/mountinfo): for the server to call as it starts, before any sandbox is
    prepared (preparing one says it too, once a process). Nothing when cgroups are not
    usable at all: the sandbox refuses to start then, in its own words."""
    try:
        found = _hierarchy()
    except CgroupsUnavailable:
        return
    if isinstance(found, dict):
        _warn_cpu_unlimited(_cpu_unlimited(1, sorted(found)))
        return
    with contextlib.suppress(OSError):
        available = _read(f"{found[0]}/cgroup.controllers").split()
        _warn_cpu_unlimited(_cpu_unlimited(2, available))


class CgroupsV1(Cgroups):
    version = 1

    def __init__(self, mounts: dict[str, tuple[str, str]]) -> None:
        super().__init__()
        own = _own_cgroups()
        self.controllers = sorted(mounts)
        # Co-mounted controllers (cpu,cpuacct) share one directory.
        self.bases = {
            c: _join(point, root, own.get(c, "/")) + "/" + self.prefix
            for c, (point, root) in mounts.items()
        }

    def parents(self) -> list[str]:
        return list(dict.fromkeys(self.bases.values()))

    @property
    def can_freeze(self) -> bool:
        return "freezer" in self.bases

    def setup(self) -> None:
        for base in self.parents():
            try:
                os.makedirs(base, exist_ok=True)
            except OSError as exc:
                raise CgroupsUnavailable(f"cannot create cgroup {base}: {exc}") from exc
        _warn_cpu_unlimited(self.cpu_unlimited)

    def create(self) -> Cgroup:
        name = f"env-{next(self._names)}"
        dirs: dict[str, str] = {}
        for c, base in self.bases.items():
            path = f"{base}/{name}"
            if path not in dirs.values():
                os.mkdir(path)
            dirs[c] = path
        return CgroupV1(name, dirs)


SERVER_LEAF = "nimbus-server"


def _nimbus_family(pids: list[str]) -> list[str]:
    """Of ``pids``, this process, its children (async workers) and its parent when that
    is a nimbus server too (this is a worker): they all leave the delegating cgroup, or
    the first to set up would leave the other stuck in it."""
    me, parent = os.getpid(), os.getppid()
    family = []
    for pid in pids:
        try:
            ppid = int(_read(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()[1])
            is_nimbus_parent = int(pid) == parent and b"nimbus" in Path(
                f"/proc/{pid}/cmdline"
            ).read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if int(pid) == me or ppid == me or is_nimbus_parent:
            family.append(pid)
    return family


class CgroupsV2(Cgroups):
    version = 2
    wanted = ("memory", "pids", "cpu")

    def __init__(self, mount: str, root: str) -> None:
        super().__init__()
        own = _join(mount, root, _own_cgroups().get("", "/"))
        # A process that started in the leaf setup() makes (an async worker forked after
        # the server moved there) manages the same parent as the server.
        self.own = own.removesuffix(f"/{SERVER_LEAF}")
        self.base = f"{self.own}/{self.prefix}"
        available = set(_read(f"{mount}/cgroup.controllers").split())
        self.controllers = [c for c in self.wanted if c in available]

    def parents(self) -> list[str]:
        return [self.base]

    @property
    def can_freeze(self) -> bool:
        return True

    def _enable(self, path: str) -> None:
        current = set(_read(f"{path}/cgroup.subtree_control").split())
        missing = [c for c in self.controllers if c not in current]
        if missing:
            _write(f"{path}/cgroup.subtree_control", " ".join(f"+{c}" for c in missing))

    def setup(self) -> None:
        try:
            try:
                self._enable(self.own)
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise
                # "No internal processes": move this server into a leaf of its own
                # cgroup so that the cgroup can delegate controllers to its children.
                leaf = f"{self.own}/{SERVER_LEAF}"
                os.makedirs(leaf, exist_ok=True)
                for pid in _nimbus_family(_read(f"{self.own}/cgroup.procs").split()):
                    with contextlib.suppress(OSError):
                        _write(f"{leaf}/cgroup.procs", pid)
                log.warning("moved the nimbus processes into %s to delegate cgroups", leaf)
                self._enable(self.own)
            os.makedirs(self.base, exist_ok=True)
            self._enable(self.base)
        except OSError as exc:
            raise CgroupsUnavailable(
                f"cannot delegate cgroup controllers under {self.own}: {exc} "
                "(run nimbus in a cgroup it may manage, e.g. systemd-run -p Delegate=yes)"
            ) from exc
        _warn_cpu_unlimited(self.cpu_unlimited)

    def create(self) -> Cgroup:
        path = f"{self.base}/env-{next(self._names)}"
        os.mkdir(path)
        return CgroupV2(os.path.basename(path), path)


class CgroupPool:
    """Empty cgroups made ahead of time, so a cold start does not pay the mkdirs."""

    def __init__(self, cgroups: Cgroups, size: int = 8) -> None:
        self.cgroups = cgroups
        self.size = size
        self._free: list[Cgroup] = []
        self._lock = threading.Lock()

    def take(self) -> Cgroup:
        with self._lock:
            if self._free:
                return self._free.pop()
        return self.cgroups.create()

    @property
    def low(self) -> bool:
        return len(self._free) < self.size // 2

    def refill(self) -> None:
        """Top the pool up (blocking; run in a thread)."""
        while len(self._free) < self.size:
            cgroup = self.cgroups.create()
            with self._lock:
                self._free.append(cgroup)

    def drain(self) -> None:
        with self._lock:
            free, self._free = self._free, []
        for cgroup in free:
            cgroup.remove()
