"""Confining a freshly cloned child, in an order that keeps it safe.

``prepare`` is what does not depend on the function (stem cells do it ahead of time):
join the cgroup first (so everything after is limited), name the host, mount /proc,
bring up loopback in an empty network namespace, empty the bounding and ambient
capability sets. ``confine`` is the function's part: its root filesystem and
pivot_root (a stem cell has entered its root ahead of time and only attaches the
function's mounts), resource limits, switching to the sandbox uid, the seccomp filter,
and a final check of what the kernel reports.

Runs in the zygote's child (Python 3.9+): standard library only.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import resource
import socket
import struct
import time

from nimbus.guest import libc, mounts, privileges, seccomp

CTL_FD = 3  # control socket to the server
LOG_FD = 4  # the log pipe, kept apart from 1/2 so a function closing stdout cannot
#             stop the runtime from writing its end-of-invocation marker
TMP_FD = 5  # the disk-backed /tmp (a detached mount), until it is attached
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def arrange_fds(ctl: int, log: int, tmp: int | None = None) -> int | None:
    """0 = /dev/null, 1 and 2 = log pipe, CTL_FD and LOG_FD close-on-exec (and TMP_FD
    when a /tmp mount came along), and nothing else: the zygote's own sockets must not
    leak into the environment. Returns TMP_FD or None."""
    high_ctl = fcntl.fcntl(ctl, fcntl.F_DUPFD_CLOEXEC, 100)
    high_log = fcntl.fcntl(log, fcntl.F_DUPFD_CLOEXEC, 100)
    high_tmp = None if tmp is None else fcntl.fcntl(tmp, fcntl.F_DUPFD_CLOEXEC, 100)
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(high_log, 1)
    os.dup2(high_log, 2)
    os.dup2(high_ctl, CTL_FD, inheritable=False)
    os.dup2(high_log, LOG_FD, inheritable=False)
    if high_tmp is None:
        libc.close_range(LOG_FD + 1)
        return None
    os.dup2(high_tmp, TMP_FD, inheritable=False)
    libc.close_range(TMP_FD + 1)
    return TMP_FD


def loopback_up() -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        req = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(s, _SIOCGIFFLAGS, req)[:18])[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | _IFF_UP))
    finally:
        s.close()


def join_cgroup(procs_files: list[str]) -> None:
    for path in procs_files:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)


def set_limits(nofile: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def prepare(req: dict, last_cap: int) -> None:
    """The part of confinement that does not depend on the function: done ahead of
    time by stem cells. File descriptors must be arranged already (``arrange_fds``),
    so that errors can be reported on CTL_FD."""
    if req["isolation"] == "namespace":
        # The child already lives in new mount/PID/IPC/UTS(/net) namespaces (clone flags).
        join_cgroup(req["cgroup_procs"])
        libc.sethostname(req["hostname"])
        mounts.mount_proc(req["root"])
        if not req["network"]:
            loopback_up()
        privileges.limit(last_cap)
    else:
        # Process isolation (explicitly chosen, no root needed): its own session so a
        # timeout can kill the whole group, and nothing more.
        os.setsid()
        if req["cgroup_procs"]:
            join_cgroup(req["cgroup_procs"])
    req["stages"].append(("prepared", time.perf_counter()))


def warm_up() -> None:
    """Run, in a stem cell, the Python paths ``confine`` will take, without their
    effect. After fork every first touch of an object copies its page (reference
    counts are writes); a cell idling anyway pays for those copies ahead of time."""
    privileges.verify(os.getuid(), os.getgid(), seccomp=False, check=False)
    mounts.warm_up()
    libc.prctl(libc.PR_GET_DUMPABLE)
    libc.read_capabilities()
    os.setresgid(os.getgid(), os.getgid(), os.getgid())
    os.setresuid(os.getuid(), os.getuid(), os.getuid())
    resource.getrlimit(resource.RLIMIT_NOFILE)


def prefault(runs: list[list[int]]) -> None:
    """In a stem cell: copy now the zygote pages a cold start would write (learned by
    ``nimbus.sandbox.hot_pages``), so that it takes no page fault for them later. Best
    effort: a run no longer mapped (or not writable) is skipped; a kernel without
    MADV_POPULATE_WRITE (before 5.14) is found out on a page of this process's own."""
    if not runs:
        return
    page = resource.getpagesize()
    own = bytearray(page)  # the heap's: private and writable
    if libc.populate_write(ctypes.addressof(ctypes.c_char.from_buffer(own)) // page * page,
                           page) == errno.EINVAL:
        return
    for address, pages in runs:
        libc.populate_write(address, pages * page)


def confine(req: dict) -> None:
    """The function's part: its root filesystem, limits, and dropping privileges."""
    stages = req["stages"]
    if req["isolation"] == "namespace":
        handed = req.get("mount_fds", {})  # a stem cell's, from the server
        if req.get("entered_root"):  # a stem cell in its root already
            mounts.attach_function(handed, req["tmp_mb"])
        else:
            mounts.enter(req["root"], req["code_dir"], req["layers"], req["tmp_mb"],
                         handed.get("tmp", req.get("tmp_fd")))
        stages.append(("mounts", time.perf_counter()))
        set_limits(req["nofile"])
        privileges.drop(req["uid"], req["gid"])
        seccomp.install()
        privileges.verify(req["uid"], req["gid"], seccomp=True)
    else:
        set_limits(req["nofile"])
        libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
    stages.append(("privileges", time.perf_counter()))
