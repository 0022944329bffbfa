"""A function's code and layers as detached mounts, for a stem cell to attach.

A stem cell enters its root (``pivot_root`` into the base, the host's tree detached)
while it idles, because ``pivot_root`` walks every task on the host: with 1,000
environments held it took 1.5 ms of a cold start instead of 0.1. From then on no host
path is reachable from the cell, so the server hands it the function's files as mounts
made here, attached nowhere yet (the new mount API, Linux 5.12+ for ``mount_setattr``;
``supported`` says whether the host allows it):

* the code: a clone of the code directory (``open_tree``), read-only, nosuid, nodev;
* the layers: one layer the same way, several as an overlayfs of them (read-only by
  construction: lower layers only), the leftmost lower layer winning, so later Lambda
  layers win, as ``nimbus.guest.mounts.enter`` mounts them by path.

The cell attaches each with one ``move_mount`` (``nimbus.guest.mounts.attach``), as it
attaches its disk-backed /tmp. The descriptors are the caller's to close once sent.
"""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Sequence

# Same numbers on x86_64 and aarch64 (the unified syscall table).
_SYS_OPEN_TREE, _SYS_FSOPEN, _SYS_FSCONFIG, _SYS_FSMOUNT = 428, 430, 431, 432
_SYS_MOUNT_SETATTR = 442
_OPEN_TREE_CLONE = 1
_AT_EMPTY_PATH = 0x1000
_AT_FDCWD = -100
_CLOEXEC = 1  # FSOPEN_CLOEXEC, FSMOUNT_CLOEXEC
_FSCONFIG_SET_STRING, _FSCONFIG_CMD_CREATE = 1, 6
_MOUNT_ATTR_RDONLY, _MOUNT_ATTR_NOSUID, _MOUNT_ATTR_NODEV = 0x1, 0x2, 0x4
_MOUNT_ATTR_NOEXEC, _MOUNT_ATTR_NOSYMFOLLOW = 0x8, 0x200000
READ_ONLY = _MOUNT_ATTR_RDONLY | _MOUNT_ATTR_NOSUID | _MOUNT_ATTR_NODEV
# What a path-mounted bind (MS_BIND, then a remount with RO flags) clears of its source
# mount's flags: a bootstrap on a data_dir mounted noexec must still run.
_CLEARED = _MOUNT_ATTR_NOEXEC | _MOUNT_ATTR_NOSYMFOLLOW
_MS_PRIVATE = 1 << 18
# struct mount_attr: attr_set, attr_clr, propagation, userns_fd
_MOUNT_ATTR = struct.Struct("=4Q")

# PyDLL keeps the GIL through each call: these run on the event loop, where a released
# GIL could go to another thread for a whole switch interval.
_libc = ctypes.PyDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def bind_read_only(path: str) -> int:
    """A detached read-only clone of the directory ``path`` (not of mounts below it),
    private: the server's mounts are often shared (systemd), and a clone keeps its
    source's peer group, which would let host mounts under the code show up in the
    sandbox and make every mount on that file system walk every environment."""
    fd = _check(_libc.syscall(_SYS_OPEN_TREE, _AT_FDCWD, os.fsencode(path),
                              _OPEN_TREE_CLONE | os.O_CLOEXEC), f"open_tree {path}")
    try:
        attr = ctypes.create_string_buffer(
            _MOUNT_ATTR.pack(READ_ONLY, _CLEARED, _MS_PRIVATE, 0))
        _check(_libc.syscall(_SYS_MOUNT_SETATTR, fd, b"", _AT_EMPTY_PATH, attr,
                             _MOUNT_ATTR.size), f"mount_setattr {path}")
    except BaseException:
        os.close(fd)
        raise
    return fd


def overlay_read_only(lower_dirs: Sequence[str]) -> int:
    """A detached overlayfs of ``lower_dirs`` (the first wins), read-only. The layers
    are named by ``/proc/self/fd`` paths of descriptors opened here: fsconfig takes at
    most 256 bytes of option (three data-dir paths exceed it), and the sandbox's
    mountinfo then shows no host path."""
    held = [os.open(d, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) for d in lower_dirs]
    try:
        lower = ":".join(f"/proc/self/fd/{fd}" for fd in held)
        fs = _check(_libc.syscall(_SYS_FSOPEN, b"overlay", _CLOEXEC), "fsopen overlay")
        try:
            _check(_libc.syscall(_SYS_FSCONFIG, fs, _FSCONFIG_SET_STRING, b"lowerdir",
                                 lower.encode(), 0), "fsconfig lowerdir")
            _check(_libc.syscall(_SYS_FSCONFIG, fs, _FSCONFIG_CMD_CREATE, None, None, 0),
                   "mount overlay")
            return _check(_libc.syscall(_SYS_FSMOUNT, fs, _CLOEXEC, READ_ONLY),
                          "fsmount overlay")
        finally:
            os.close(fs)
    finally:
        for fd in held:
            os.close(fd)


def supported(probe_dir: str) -> bool:
    """Whether this kernel (and any seccomp profile around nimbus) lets the server make
    these mounts: ``mount_setattr`` is Linux 5.12+. Without it stem cells mount the
    function by path, as environments forked from the zygote do."""
    try:
        os.close(bind_read_only(probe_dir))
    except OSError:
        return False
    return True


def layers(layer_dirs: Sequence[str]) -> int | None:
    """What a function sees at /opt: None without layers."""
    if not layer_dirs:
        return None
    if len(layer_dirs) == 1:
        return bind_read_only(layer_dirs[0])
    # Later Lambda layers win: they go first among overlayfs' lower layers.
    return overlay_read_only(list(reversed(layer_dirs)))
