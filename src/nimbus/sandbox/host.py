"""What isolation this host allows: the checks behind ``nimbus doctor``.

``report()`` returns structured checks. Those marked ``required`` must all pass for
``isolation="namespace"`` (the default); the others are advice. Checks that need to
create namespaces or mount things run in a short-lived probe subprocess, so the
server's own process is never altered.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nimbus.sandbox import catalog
from nimbus.sandbox.cgroups import Cgroups, CgroupsUnavailable
from nimbus.sandbox.interpreters import InterpreterNotFound, resolve
from nimbus.sandbox.spec import NOFILE


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True  # needed for namespace isolation


@dataclass
class HostReport:
    """The outcome of every check, and the verdict for namespace isolation."""

    checks: list[Check] = field(default_factory=list)

    @property
    def namespace_isolation(self) -> bool:
        return all(c.ok for c in self.checks if c.required)

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if c.required and not c.ok]


def _probe() -> None:
    """Run as root in a throwaway process: try each kernel feature for real."""
    from nimbus.guest import libc

    results: dict[str, str] = {}

    def attempt(name: str, body: Callable[[], object]) -> None:
        pid = os.fork()
        if pid == 0:
            try:
                body()
                os._exit(0)
            except OSError as exc:
                os.write(2, f"{exc}\n".encode())
                os._exit(1)
            except BaseException:
                os._exit(2)
        _, status = os.waitpid(pid, 0)
        results[name] = "ok" if os.waitstatus_to_exitcode(status) == 0 else "failed"

    flags = {"mount": libc.CLONE_NEWNS, "pid": libc.CLONE_NEWPID, "ipc": libc.CLONE_NEWIPC,
             "uts": libc.CLONE_NEWUTS, "net": libc.CLONE_NEWNET}
    for name, flag in flags.items():
        attempt(f"ns_{name}", functools.partial(libc.unshare, flag))

    root = tempfile.mkdtemp(prefix="nimbus-probe-")

    def pivot() -> None:
        libc.unshare(libc.CLONE_NEWNS)
        libc.mount(None, "/", None, libc.MS_REC | libc.MS_PRIVATE)
        libc.mount("tmpfs", root, "tmpfs", 0, "size=1m")
        os.chdir(root)
        libc.pivot_root(".", ".")
        libc.umount2(".", libc.MNT_DETACH)

    attempt("pivot_root", pivot)
    os.rmdir(root)

    def seccomp_filter() -> None:
        from nimbus.guest import seccomp

        libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
        seccomp.install()

    attempt("seccomp", seccomp_filter)

    from nimbus.sandbox import tmpdisk

    scratch = tempfile.mkdtemp(prefix="nimbus-probe-tmp-")
    try:
        results["tmp_disk"] = "ok: " + tmpdisk.probe(Path(scratch))
    except OSError as exc:
        results["tmp_disk"] = str(exc)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(results))


def _raise_descriptor_limit(wanted: int) -> bool:
    """Raise this process's hard and soft RLIMIT_NOFILE to at least ``wanted``: as high
    as the kernel allows (the server keeps descriptors of its own per environment), else
    to ``wanted``. False when not allowed (no CAP_SYS_RESOURCE in the host's user
    namespace: a container's root often lacks it)."""
    try:
        with open("/proc/sys/fs/nr_open") as f:
            ceiling = min(int(f.read()), 1 << 20)
    except (OSError, ValueError):
        ceiling = wanted
    for hard in dict.fromkeys((max(ceiling, wanted), wanted)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return True
        except (ValueError, OSError):
            continue
    return False


def _could_raise(wanted: int) -> bool:
    """Whether ``_raise_descriptor_limit`` would succeed, tried in a child: this
    process's limits stay as they are."""
    pid = os.fork()
    if pid == 0:
        os._exit(0 if _raise_descriptor_limit(wanted) else 1)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def descriptor_limit(wanted: int, *, apply: bool) -> str | None:
    """None when environments can get ``wanted`` open files (Lambda's 1,024): this
    process's hard RLIMIT_NOFILE, which they inherit, is that high, or can be raised
    (``apply``: raised now; else tried in a child); else what to fix."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard >= wanted:
        return None
    if _raise_descriptor_limit(wanted) if apply else _could_raise(wanted):
        return None
    return (f"this process may open at most {hard} files (hard RLIMIT_NOFILE) and cannot "
            f"raise that; every environment gets Lambda's {wanted}: start nimbus with a "
            f"higher limit (ulimit -Hn {wanted}; systemd LimitNOFILE=; docker run --ulimit "
            f"nofile={wanted})")


def _run_probe() -> dict[str, str]:
    code = "from nimbus.sandbox.host import _probe; _probe()"
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=30, check=False)
        return json.loads(out.stdout)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        return {"error": str(exc)}


def report() -> HostReport:
    """Check the host (blocking: a probe subprocess, a test cgroup; well under a second)."""
    checks: list[Check] = []
    root = os.geteuid() == 0
    checks.append(Check("root", root, "running as root" if root else
                        f"running as uid {os.geteuid()}: namespace isolation needs root"))
    checks.append(Check("kernel", True, f"Linux {platform.release()} ({platform.machine()})",
                        required=False))
    try:
        fd = os.pidfd_open(os.getpid())
        os.close(fd)
        checks.append(Check("pidfd", True, "pidfd_open works (Linux 5.3+)"))
    except (OSError, AttributeError) as exc:
        checks.append(Check("pidfd", False, f"pidfd_open unavailable: {exc}"))

    probe = _run_probe() if root else {}
    for name in ("mount", "pid", "ipc", "uts", "net"):
        key = f"ns_{name}"
        ok = probe.get(key) == "ok"
        checks.append(Check(f"namespace:{name}", ok, "usable" if ok else
                            probe.get("error") or ("needs root" if not root else "unshare failed")))
    ok = probe.get("pivot_root") == "ok"
    checks.append(Check("pivot_root", ok, "tmpfs root with pivot_root works" if ok else
                        "pivot_root into a tmpfs failed (rootfs/initramfs root?)"))
    ok = probe.get("seccomp") == "ok"
    checks.append(Check("seccomp", ok, "filters load" if ok else "seccomp filters unavailable"))
    tmp = probe.get("tmp_disk", "needs root" if not root else probe.get("error", "not probed"))
    ok = tmp.startswith("ok: ")
    checks.append(Check(
        "tmp disk", ok,
        "each environment's /tmp is an ext4 of its own on a loop device, as big as "
        "EphemeralStorage (512 MB: " + tmp.removeprefix("ok: ") + ")" if ok else
        f"no disk-backed /tmp ({tmp}): functions cannot start with tmp_storage = \"disk\" "
        "(the default); tmp_storage = \"memory\" puts /tmp in a tmpfs counted against "
        "MemorySize",
    ))

    try:
        cgroups = Cgroups.detect()
        controllers = ", ".join(cgroups.controllers)
        detail = f"cgroup v{cgroups.version} ({controllers})"
        ok = root
        if root:
            try:
                cgroups.setup()
                test = cgroups.create()
                test.configure(128)
                swap = test.swap_limited()
                test.remove()
                cgroups.sweep()
                detail += "; test cgroup created and removed"
                checks.append(Check("swap accounting", swap, "swap limited to zero" if swap else
                                    "no swap control: environments may swap past MemorySize",
                                    required=False))
            except (OSError, CgroupsUnavailable) as exc:
                ok = False
                detail += f"; cannot create cgroups: {exc}"
        checks.append(Check("cgroups", ok, detail))
        checks.append(Check(
            "freezer", cgroups.can_freeze,
            "idle environments are frozen between invocations" if cgroups.can_freeze else
            "no cgroup v1 freezer: what a function leaves running keeps using CPU between "
            "its invocations", required=False))
        cpu_unlimited = cgroups.cpu_unlimited
        checks.append(Check(
            "cpu quota", cpu_unlimited is None,
            "each environment's CPU is capped in proportion to its memory"
            if cpu_unlimited is None else cpu_unlimited, required=False))
    except CgroupsUnavailable as exc:
        checks.append(Check("cgroups", False, str(exc)))

    short = descriptor_limit(NOFILE, apply=False)
    checks.append(Check("file descriptors", short is None, short or
                        f"environments get {NOFILE} open files, as on Lambda"))

    with open("/proc/filesystems") as f:
        overlay = "overlay" in f.read()
    checks.append(Check("overlayfs", overlay, "layers are merged at /opt" if overlay else
                        "no overlayfs: functions with more than one layer cannot start",
                        required=False))

    for name, runtime in sorted(catalog.available().items()):
        try:
            interp = resolve(runtime.executable)
            checks.append(Check(f"runtime:{name}", True,
                                f"{interp.executable} (prefix {interp.prefix})", required=False))
        except InterpreterNotFound as exc:
            checks.append(Check(f"runtime:{name}", False, str(exc), required=False))

    checks.append(_network_check())
    return HostReport(checks)


def _network_check() -> Check:
    """Functions' network namespaces need nft and IPv4 forwarding (nimbus turns
    forwarding on at start-up; as root it can)."""
    try:
        from nimbus.sandbox.netns import nft_problem
    except ImportError as exc:  # a broken install
        return Check("function network", False, str(exc), required=False)
    problem = nft_problem()
    if problem:
        return Check("function network", False, problem + " (function_network = \"isolated\", "
                     "the default, refuses to start functions with network without it)",
                     required=False)
    return Check("function network", True,
                 "each environment gets a network namespace of its own, NATed to the outside; "
                 "the host's addresses and private networks only if function_network_allow "
                 "or a function's nimbus:network-allow tag names them", required=False)
