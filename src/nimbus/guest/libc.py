"""ctypes bindings to the Linux system calls the sandbox needs and Python lacks.

This module runs in the zygote (the runtime's own interpreter, Python 3.9-3.13), so it
uses only the standard library and no syntax newer than 3.9. ``os.unshare`` and friends
exist only from 3.12, hence ctypes.

Calls go through ``ctypes.PyDLL``: the GIL stays held across each call, which is what
``os.fork`` does too, and what a raw ``clone`` needs to leave the child in a sane state.
"""

from __future__ import annotations

import ctypes
import os
import platform

_libc = ctypes.PyDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_api = ctypes.pythonapi
# Declared argument types: a cold start makes dozens of these calls, and ctypes is much
# faster when it need not guess conversions.
_prctl = _libc.prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_prctl.restype = ctypes.c_int
_mount = _libc.mount
_mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                   ctypes.c_char_p]
_mount.restype = ctypes.c_int
_madvise = _libc.madvise
_madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_madvise.restype = ctypes.c_int

# Namespaces (linux/sched.h).
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_PARENT = 0x00008000
SIGCHLD = 17

# mount(2) flags (linux/mount.h).
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MNT_DETACH = 2

# prctl(2) options.
PR_SET_PDEATHSIG = 1
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECCOMP_MODE_FILTER = 2

MACHINE = platform.machine()

# Syscall numbers for the calls glibc 2.31 (Debian 11 era) does not wrap.
_SYSCALLS = {
    "x86_64": {"clone": 56, "pivot_root": 155, "capget": 125, "capset": 126,
               "close_range": 436},
    "aarch64": {"clone": 220, "pivot_root": 41, "capget": 90, "capset": 91, "close_range": 436},
}


def _nr(name: str) -> int:
    try:
        return _SYSCALLS[MACHINE][name]
    except KeyError:
        raise OSError(f"nimbus sandbox: no syscall table for {MACHINE!r}") from None


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def _b(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    if _mount(_b(source), _b(target), _b(fstype), flags, _b(data)) < 0:
        _check(-1, "mount {} {} on {}".format(fstype or "bind", source or "", target))


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), ctypes.c_int(flags)), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_libc.syscall(_nr("pivot_root"), _b(new_root), _b(put_old)), "pivot_root")


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, ctypes.c_size_t(len(raw))), "sethostname")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    result = _prctl(option, arg2, arg3, arg4, arg5)
    if result < 0:
        _check(result, f"prctl({option})")
    return result


def drop_bounding_set(last_cap: int) -> None:
    for cap in range(last_cap + 1):
        if _prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0:
            _check(-1, f"prctl(PR_CAPBSET_DROP, {cap})")


def prctl_pointer(option: int, arg2: int, address: int) -> None:
    if _prctl(option, arg2, address, 0, 0) < 0:
        _check(-1, f"prctl({option})")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def clear_capabilities() -> None:
    """Empty the effective, permitted and inheritable sets of this thread."""
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    _check(_libc.syscall(_nr("capset"), ctypes.byref(header), ctypes.byref(data)), "capset")


def read_capabilities() -> list[int]:
    """capget(2): the effective sets (two 32-bit words), through the same call path as
    ``clear_capabilities``, which stem cells use to warm it up."""
    header = _CapHeader(0x20080522, 0)
    data = (_CapData * 2)()
    _check(_libc.syscall(_nr("capget"), ctypes.byref(header), ctypes.byref(data)), "capget")
    return [d.effective for d in data]


MADV_POPULATE_WRITE = 23  # Linux 5.14+


def populate_write(address: int, length: int) -> int:
    """Fault ``length`` bytes at ``address`` in as if written (copying shared pages),
    without changing them; 0, or the errno."""
    if _madvise(address, length, MADV_POPULATE_WRITE) == 0:
        return 0
    return ctypes.get_errno()


def close_range(first: int, last: int = 0xFFFFFFFF) -> None:
    if _libc.syscall(_nr("close_range"), ctypes.c_uint(first), ctypes.c_uint(last), 0) < 0:
        os.closerange(first, 65536)  # kernel < 5.9


def clone_process(flags: int) -> int:
    """fork(2) with clone(2) flags: new namespaces, and CLONE_PARENT so that the child
    is the caller's sibling (the server reaps it, not the zygote).

    Like ``os.fork`` this runs the interpreter's before/after fork hooks; unlike it, the
    child starts directly in its namespaces (PID 1 of a new PID namespace), saving the
    second fork that ``unshare`` would need. The caller must be single-threaded.
    """
    _api.PyOS_BeforeFork()
    # A NULL stack makes clone behave like fork: the child resumes here on a copy.
    pid = _libc.syscall(_nr("clone"), ctypes.c_ulong(flags | SIGCHLD), None, None, None, None)
    if pid == 0:
        _api.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    _api.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(err, f"clone: {os.strerror(err)}")
    return pid
