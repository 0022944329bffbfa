"""Disk-backed ``/tmp`` for execution environments: a fresh ext4 file system each.

On Lambda, ``/tmp`` is disk of EphemeralStorage size (512-10,240 MB) and does not count
against MemorySize. Here each environment gets an ext4 file system of its own on a
sparse image file in the data dir, attached to a loop device (direct I/O: the host does
not cache the image a second time) and mounted at the sandbox's ``/tmp`` with nosuid
and nodev. Its free space is EphemeralStorage, so writing past it fails with ENOSPC
inside the function. What a function writes still passes through the page cache, which
the kernel charges to the environment's memory cgroup; but that cache is reclaimable
(written back to the image, then dropped), so a 128 MB function writes 400 MB in ~0.2 s
without being OOM-killed (``nimbus.sandbox.memory`` keeps it out of Max Memory Used).

What costs time is done ahead of the cold start:

* a template image per size, made once per process with ``mkfs.ext4`` (10-80 ms): no
  journal (the file system never outlives its environment: nothing to recover), no
  blocks reserved for root (the function is not root), lazily initialised inode tables,
  no ``lost+found``, root directory mode 1777, and sized so that ``df``'s "Avail" is
  EphemeralStorage plus 64 kB (room for the extent tree of a file that big; ext4 keeps
  back another 2% or 16 MB, whichever is less, which its "Size" includes);
* a pool of ready file systems per size in demand, made by a helper process at low
  priority (``DiskHelper``; the server's threads where it is gone): the template's
  ~60-180 kB of metadata copied into a new sparse file, attached to a free loop device
  with autoclear (``LOOP_CONFIGURE``), the file unlinked at once, and the file system
  mounted *detached* with the new mount API (``fsopen``/``fsmount``): it is in no mount
  table, only a file descriptor. ~1 ms of CPU (mostly the kernel's) and ~2.5 ms in all.

A cold start sends that descriptor to the sandbox, which attaches it at ``/tmp`` with
``move_mount`` (tens of microseconds, see ``nimbus.guest.mounts``). Nothing is ever
reused: a new environment gets a new file system on a new loop device. (Handing back a
file system its environment never wrote to would save that work, but is not safe: with
network, an environment can pass a descriptor of its /tmp to another one over an
abstract unix socket, which would then reach into the next owner's /tmp.) When the
environment has ended and the last descriptor is closed (by the helper), the kernel
unmounts the file system, the loop device detaches itself and the unlinked image's
blocks are freed. Nothing needs cleaning up after a crash either (descriptors close with
their process); the only leftover possible is an image file from the instant between
creating and unlinking it, which the next start removes with the dead process's run
directory.

Needs root, ``/dev/loop-control``, ``mkfs.ext4`` (e2fsprogs) and Linux 5.8+; ``check``
says what is missing. ``TmpDisks`` blocks throughout: call it from threads.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from nimbus.sandbox.loop_devices import (
    attach_loop,
    copy_range,
    data_segments,
    mount_detached,
    tmpfs_detached,
)

MB = 1024 * 1024
BLOCK = 4096
DEFAULT_POOL = 8  # ready file systems per size in demand
SLACK_BLOCKS = 16  # free beyond EphemeralStorage: 64 kB, for extent trees

MKFS_OPTIONS = [
    "-q", "-F", "-t", "ext4", "-b", str(BLOCK), "-m", "0", "-L", "tmp",
    "-O", "^has_journal,^resize_inode", "-E", "lazy_itable_init=1,nodiscard,root_owner=0:0",
]
SBIN = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]


class TmpDisksUnavailable(OSError):
    """This host cannot give environments a disk-backed /tmp (the message says why)."""


def find_mkfs() -> str | None:
    path = os.pathsep.join([*SBIN, os.environ.get("PATH", "")])
    return shutil.which("mkfs.ext4", path=path) or shutil.which("mke2fs", path=path)


@dataclass
class Template:
    """An unmounted, empty ext4 image whose free space is ``size_mb``."""

    size_mb: int
    path: Path
    size_bytes: int
    segments: list[tuple[int, int]]


@dataclass
class TmpDisk:
    """One ready, empty file system of ``size_mb`` MB free, mounted nowhere yet.

    ``fd`` is its root (an ``fsmount`` descriptor): sent to the sandbox, which attaches
    it at /tmp. The server keeps its own copy until the environment ends, to tell
    whether /tmp holds data (``in_use``) without entering the sandbox."""

    size_mb: int
    fd: int
    device: str
    free_blocks: int  # f_bfree when made

    def in_use(self) -> bool:
        """Whether the file system holds more than when it was made (~1 us)."""
        if self.fd < 0:
            return False
        try:
            return os.fstatvfs(self.fd).f_bfree < self.free_blocks
        except OSError:
            return False

    def close(self) -> None:
        """Drop the server's reference. If it was the last one (the environment is gone,
        or the disk was never used), this unmounts the file system, and the loop device
        and the image go with it: a few ms in the kernel, so call it from a thread."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)


@dataclass
class TmpDisks:
    """Templates and pools of ready file systems, per size, under ``directory``."""

    directory: Path
    pool_size: int = DEFAULT_POOL
    direct_io: bool = True
    _templates: dict[int, Template] = field(default_factory=dict)
    _pools: dict[int, list[TmpDisk]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _template_locks: dict[int, threading.Lock] = field(default_factory=dict)
    _mkfs: str | None = None
    _closed: bool = False

    # -- checks and templates -----------------------------------------------------------

    def check(self) -> None:
        """Raise TmpDisksUnavailable when this host lacks what disks need."""
        if os.geteuid() != 0:
            raise TmpDisksUnavailable("loop devices need root")
        if not os.path.exists("/dev/loop-control"):
            raise TmpDisksUnavailable(
                "no /dev/loop-control (loop devices unavailable: the loop module is not "
                "loaded, or this container does not expose them)")
        self._mkfs = find_mkfs()
        if self._mkfs is None:
            raise TmpDisksUnavailable("mkfs.ext4 not found (install e2fsprogs)")
        with open("/proc/filesystems") as f:
            if "ext4" not in f.read().split():
                raise TmpDisksUnavailable("the kernel has no ext4")

    def _mkfs_image(self, path: Path, blocks: int) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(fd, blocks * BLOCK)
        finally:
            os.close(fd)
        mkfs = self._mkfs or find_mkfs() or "mkfs.ext4"
        out = subprocess.run([mkfs, *MKFS_OPTIONS, str(path), str(blocks)], capture_output=True,
                             text=True, check=False, env={"PATH": os.pathsep.join(SBIN)},
                             stdin=subprocess.DEVNULL, timeout=120)
        if out.returncode != 0:
            raise OSError(f"{mkfs} failed: {out.stderr.strip() or out.returncode}")

    def _finish_template(self, path: Path) -> int:
        """Mount the image once: empty the root (no lost+found: Lambda's /tmp is empty),
        make it world-writable and sticky, and return the free blocks for non-root."""
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            device, loop_fd = attach_loop(fd, self.directory / "dev", self.direct_io)
        finally:
            os.close(fd)
        try:
            root = mount_detached(device)
        finally:
            os.close(loop_fd)
        try:
            with contextlib.suppress(FileNotFoundError):
                os.rmdir("lost+found", dir_fd=root)
            os.chmod(f"/proc/self/fd/{root}", 0o1777)
            return os.fstatvfs(root).f_bavail
        finally:
            os.close(root)  # unmounts; the loop device detaches itself

    def template(self, size_mb: int) -> Template:
        """The template for ``size_mb`` (made on first use: a mkfs or two, 10-80 ms).
        The server and its helper process share them: each is renamed into place once
        finished, and either uses what the other made."""
        with self._lock:
            template = self._templates.get(size_mb)
            lock = self._template_locks.setdefault(size_mb, threading.Lock())
        if template is not None:
            return template
        with lock:
            template = self._templates.get(size_mb)
            if template is not None:
                return template
            folder = self.directory / "templates"
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = folder / f"{size_mb}.img"
            if not path.exists():
                making = folder / f".{size_mb}.{os.getpid()}.{threading.get_ident()}.img"
                try:
                    self._make_template(making, size_mb)
                    os.rename(making, path)
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        making.unlink()
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                template = Template(size_mb, path, os.fstat(fd).st_size, data_segments(fd))
            finally:
                os.close(fd)
            with self._lock:
                self._templates[size_mb] = template
            return template

    def _make_template(self, path: Path, size_mb: int) -> None:
        # A file of exactly size_mb needs a few blocks of extent tree besides its data:
        # SLACK_BLOCKS more, so that it fits.
        want = size_mb * MB // BLOCK + SLACK_BLOCKS
        # ext4 keeps back min(2%, 4096 blocks) plus its metadata (1/64 of the blocks for
        # inode tables at one inode per 16 kB, bitmaps, group descriptors): start from
        # that estimate and correct it with what the kernel reports.
        blocks = want + min(want // 49, 4096) + want // 60 + 64
        free_of: dict[int, int] = {}  # image blocks tried -> blocks free
        for _ in range(8):
            self._mkfs_image(path, blocks)
            free_of[blocks] = self._finish_template(path)
            # The reserve (2%, at most 4096 blocks) and the metadata grow in steps, so
            # one block more can free two: then the closest above ``want`` will do.
            following = blocks + want - free_of[blocks]
            if following == blocks or following in free_of:
                break
            blocks = following
        fits = [b for b, free in free_of.items() if free >= want]
        if not fits:
            raise OSError(f"cannot size a {size_mb} MB /tmp image: free blocks "
                          f"{sorted(free_of.values())}, {want} wanted")
        best = min(fits, key=lambda b: (free_of[b], b))
        if best != blocks:
            self._mkfs_image(path, best)
            self._finish_template(path)

    # -- disks --------------------------------------------------------------------------

    def make(self, size_mb: int) -> TmpDisk:
        """A new, empty file system of ``size_mb`` MB (blocking: ~2.5 ms for 512 MB,
        ~10 ms for 10 GB, plus the template on first use of a size)."""
        template = self.template(size_mb)
        images = self.directory / "images"
        images.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = images / f"{secrets.token_hex(8)}.img"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        loop_fd = -1
        try:
            os.ftruncate(fd, template.size_bytes)
            src = os.open(template.path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                for offset, length in template.segments:
                    copy_range(src, fd, offset, length)
            finally:
                os.close(src)
            device, loop_fd = attach_loop(fd, self.directory / "dev", self.direct_io)
        finally:
            # The loop device holds the file now; its blocks go when the device does.
            path.unlink()
            os.close(fd)
        try:
            root = mount_detached(device)
        finally:
            os.close(loop_fd)  # the mounted file system holds the device now
        try:
            free = os.fstatvfs(root).f_bfree
        except OSError:
            os.close(root)
            raise
        return TmpDisk(size_mb, root, device, free)

    def take(self, size_mb: int) -> TmpDisk | None:
        """A ready disk of this size, or None (never blocks)."""
        with self._lock:
            pool = self._pools.setdefault(size_mb, [])
            return pool.pop() if pool else None

    def put(self, disk: TmpDisk) -> None:
        """Add a new, never used disk to its pool."""
        with self._lock:
            if not self._closed:
                self._pools.setdefault(disk.size_mb, []).append(disk)
                return
        disk.close()

    def count(self, size_mb: int) -> int:
        with self._lock:
            return len(self._pools.get(size_mb, ()))

    def low(self, size_mb: int) -> bool:
        with self._lock:
            return len(self._pools.get(size_mb, ())) <= self.pool_size // 2

    def refill(self, size_mb: int) -> None:
        """Top up the pool of this size (blocking)."""
        while not self._closed:
            with self._lock:
                if len(self._pools.setdefault(size_mb, [])) >= self.pool_size:
                    return
            disk = self.make(size_mb)
            with self._lock:
                if not self._closed:
                    self._pools[size_mb].append(disk)
                    continue
            disk.close()

    def drain(self) -> None:
        """Unmount every pooled disk and remove the templates (blocking)."""
        with self._lock:
            self._closed = True
            pools, self._pools = self._pools, {}
            self._templates.clear()
        for pool in pools.values():
            for disk in pool:
                disk.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def memory_tmp(size_mb: int) -> TmpDisk:
    """A tmpfs of ``size_mb`` for one environment, handed over like a disk: for
    environments forked from a SnapStart template with ``tmp_storage = "memory"``,
    which cannot mount one themselves and must not keep the template's (blocking)."""
    fd = tmpfs_detached(size_mb)
    try:
        free = os.fstatvfs(fd).f_bfree
    except OSError:
        os.close(fd)
        raise
    return TmpDisk(size_mb, fd, "tmpfs", free)


def probe(directory: Path) -> str:
    """Make, mount and drop one 512 MB disk under ``directory`` (for ``nimbus doctor``);
    returns what ``df`` would show, raises TmpDisksUnavailable or OSError."""
    disks = TmpDisks(directory, pool_size=0)
    try:
        disks.check()
        disk = disks.make(512)
        try:
            st = os.fstatvfs(disk.fd)
            return (f"df: {st.f_blocks * st.f_frsize // MB} MB, "
                    f"{st.f_bavail * st.f_frsize // MB} MB available")
        finally:
            disk.close()
    finally:
        disks.drain()
