"""Loop devices and detached mounts, the kernel's parts of a disk-backed ``/tmp``
(``nimbus.sandbox.tmpdisk``): attaching an image file to a free loop device that
detaches itself on its last close (``LOOP_CONFIGURE``, direct I/O), mounting an ext4
without attaching it anywhere (``fsopen``/``fsmount``: a descriptor only), and copying
the data segments of a sparse image. Blocking system calls: call them from threads."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import stat
import struct
from pathlib import Path

MB = 1024 * 1024

# The new mount API (same numbers on x86_64 and aarch64: the unified syscall table).
_SYS_FSOPEN, _SYS_FSCONFIG, _SYS_FSMOUNT = 430, 431, 432
_FSOPEN_CLOEXEC = 1
_FSCONFIG_SET_FLAG, _FSCONFIG_SET_STRING, _FSCONFIG_CMD_CREATE = 0, 1, 6
_FSMOUNT_CLOEXEC = 1
_MOUNT_ATTR_NOSUID, _MOUNT_ATTR_NODEV = 0x2, 0x4
# linux/loop.h
_LOOP_SET_FD, _LOOP_SET_STATUS64, _LOOP_SET_DIRECT_IO = 0x4C00, 0x4C04, 0x4C08
_LOOP_CONFIGURE, _LOOP_CTL_GET_FREE = 0x4C0A, 0x4C82
_LO_FLAGS_AUTOCLEAR, _LO_FLAGS_DIRECT_IO = 4, 16
_LOOP_INFO64 = struct.Struct("=5Q4I64s64s32s2Q")
LOOP_MAJOR = 7

# ctypes.CDLL releases the GIL around each call (the guest's libc binding keeps it, for
# clone): these run in the server's threads, next to its event loop.
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

# The inode tables of a fresh sparse image read as zeros already: no background zeroing.
# No cache flushes: nothing on /tmp outlives its environment, so an fsync there need not
# wait for the host's disk (nor does unmounting).
MOUNT_FLAGS = ["noinit_itable", "nobarrier"]
# Left out where the kernel does not know them: no reading ahead of the block bitmaps
# at every mount (Linux 5.9+), which a file system this young does not need.
OPTIONAL_MOUNT_FLAGS = ["no_prefetch_block_bitmaps"]


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def _loop_device(number: int, node_dir: Path) -> str:
    """The path of /dev/loopN; made in ``node_dir`` where /dev has no node for it (a
    static /dev in a container)."""
    dev = f"/dev/loop{number}"
    if os.path.exists(dev):
        return dev
    try:
        major, minor = (int(x) for x in Path(f"/sys/block/loop{number}/dev").read_text().split(":"))
    except (OSError, ValueError):
        major, minor = LOOP_MAJOR, number
    node_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    node = node_dir / f"loop{number}"
    with contextlib.suppress(FileNotFoundError):
        node.unlink()
    os.mknod(node, stat.S_IFBLK | 0o600, os.makedev(major, minor))
    return str(node)


def _configure_loop(loop_fd: int, backing_fd: int, direct_io: bool) -> None:
    flags = _LO_FLAGS_AUTOCLEAR | (_LO_FLAGS_DIRECT_IO if direct_io else 0)
    info = _LOOP_INFO64.pack(0, 0, 0, 0, 0, 0, 0, 0, flags, b"", b"", b"", 0, 0)
    try:
        # struct loop_config: fd, block_size, loop_info64, 8 reserved u64 (Linux 5.8+).
        fcntl.ioctl(loop_fd, _LOOP_CONFIGURE, struct.pack("=2I", backing_fd, 0) + info
                    + bytes(64))
        return
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTTY) or not direct_io:
            raise
    # Older kernels (no LOOP_CONFIGURE), or a backing file system without O_DIRECT.
    fcntl.ioctl(loop_fd, _LOOP_SET_FD, backing_fd)
    try:
        info = _LOOP_INFO64.pack(0, 0, 0, 0, 0, 0, 0, 0, _LO_FLAGS_AUTOCLEAR, b"", b"", b"",
                                 0, 0)
        fcntl.ioctl(loop_fd, _LOOP_SET_STATUS64, info)
    except OSError:
        with contextlib.suppress(OSError):
            fcntl.ioctl(loop_fd, 0x4C01)  # LOOP_CLR_FD
        raise
    with contextlib.suppress(OSError):
        fcntl.ioctl(loop_fd, _LOOP_SET_DIRECT_IO, 1)


def attach_loop(backing_fd: int, node_dir: Path, direct_io: bool = True) -> tuple[str, int]:
    """Attach ``backing_fd`` to a free loop device that detaches itself on its last
    close; returns (device path, open descriptor of it)."""
    ctl = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    try:
        for _ in range(64):
            number = fcntl.ioctl(ctl, _LOOP_CTL_GET_FREE)
            dev = _loop_device(number, node_dir)
            fd = os.open(dev, os.O_RDWR | os.O_CLOEXEC)
            try:
                _configure_loop(fd, backing_fd, direct_io)
            except OSError as exc:
                os.close(fd)
                if exc.errno == errno.EBUSY:  # taken by someone else in between
                    continue
                raise
            return dev, fd
    finally:
        os.close(ctl)
    raise OSError(errno.EBUSY, "no free loop device")


def mount_detached(device: str) -> int:
    """Mount the ext4 on ``device`` without attaching it anywhere (fsopen/fsmount, Linux
    5.2+): the descriptor of its root; closing the last reference unmounts it."""
    fs = _check(_libc.syscall(_SYS_FSOPEN, b"ext4", _FSOPEN_CLOEXEC), "fsopen ext4")
    try:
        _check(_libc.syscall(_SYS_FSCONFIG, fs, _FSCONFIG_SET_STRING, b"source",
                             os.fsencode(device), 0), "fsconfig source")
        for flag in MOUNT_FLAGS:
            _check(_libc.syscall(_SYS_FSCONFIG, fs, _FSCONFIG_SET_FLAG, flag.encode(), None, 0),
                   f"fsconfig {flag}")
        for flag in OPTIONAL_MOUNT_FLAGS:
            _libc.syscall(_SYS_FSCONFIG, fs, _FSCONFIG_SET_FLAG, flag.encode(), None, 0)
        _check(_libc.syscall(_SYS_FSCONFIG, fs, _FSCONFIG_CMD_CREATE, None, None, 0),
               f"mount ext4 from {device}")
        return _check(_libc.syscall(_SYS_FSMOUNT, fs, _FSMOUNT_CLOEXEC,
                                    _MOUNT_ATTR_NOSUID | _MOUNT_ATTR_NODEV), "fsmount")
    finally:
        os.close(fs)


def tmpfs_detached(size_mb: int) -> int:
    """A new tmpfs of ``size_mb`` (mode 1777, nosuid, nodev), mounted nowhere yet: the
    descriptor of its root, to be attached in a sandbox like a disk."""
    fs = _check(_libc.syscall(_SYS_FSOPEN, b"tmpfs", _FSOPEN_CLOEXEC), "fsopen tmpfs")
    try:
        for key, value in ((b"size", f"{size_mb}m"), (b"mode", "1777")):
            _check(_libc.syscall(_SYS_FSCONFIG, fs, _FSCONFIG_SET_STRING, key,
                                 value.encode(), 0), f"fsconfig {key.decode()}")
        _check(_libc.syscall(_SYS_FSCONFIG, fs, _FSCONFIG_CMD_CREATE, None, None, 0),
               "mount tmpfs")
        return _check(_libc.syscall(_SYS_FSMOUNT, fs, _FSMOUNT_CLOEXEC,
                                    _MOUNT_ATTR_NOSUID | _MOUNT_ATTR_NODEV), "fsmount")
    finally:
        os.close(fs)


def data_segments(fd: int) -> list[tuple[int, int]]:
    """(offset, length) of the parts of a sparse file that hold data."""
    segments = []
    end = os.fstat(fd).st_size
    offset = 0
    while offset < end:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole is left
                break
            raise
        offset = os.lseek(fd, start, os.SEEK_HOLE)
        segments.append((start, offset - start))
    return segments


def copy_range(src: int, dst: int, offset: int, length: int) -> None:
    done = 0
    while done < length:
        try:
            n = os.copy_file_range(src, dst, length - done, offset + done, offset + done)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
            chunk = os.pread(src, min(length - done, MB), offset + done)
            n = os.pwrite(dst, chunk, offset + done)
        if n <= 0:
            raise OSError(errno.EIO, "short copy of the /tmp template")
        done += n
