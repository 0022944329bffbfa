"""The /tmp disk helper: a process that makes disk-backed ``/tmp`` file systems
(``nimbus.sandbox.tmpdisk``) and unmounts used ones at low priority, so that work does
not compete with the cold starts it is for."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from nimbus.sandbox.tmpdisk import TmpDisk, TmpDisks

if TYPE_CHECKING:
    import asyncio

log = logging.getLogger(__name__)


# Not SCHED_IDLE (as stem cells are made): making a disk waits for the disk a few times,
# and an idle-class process that wakes up from each wait behind a busy server's work
# fell so far behind that half the cold starts of bench/coldstart.py found no disk
# ready and made one on the spot (~2.5 ms). At nice 10 it has ~10% of a CPU that the
# server wants, more than the ~0.6 ms per disk it needs, and none that it does not.
HELPER_NICE = 10

# The helper runs with the server's interpreter, isolated (-I: no environment, no user
# site), finding nimbus where the server found it.
HELPER_BOOT = """
import sys
sys.path.insert(0, sys.argv[1])
from nimbus.sandbox.disk_helper import helper_main
helper_main(int(sys.argv[2]), sys.argv[3])
"""
SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds nimbus/


def helper_main(sock_fd: int, directory: str) -> None:
    """The helper's loop, at low priority: each ``{"make": size}`` is answered with a new
    disk (its descriptor attached), and descriptors sent back are closed (unmounting
    their file systems). Ends when the server closes its end (or dies)."""
    os.nice(HELPER_NICE)
    sock = socket.socket(fileno=sock_fd)
    disks = TmpDisks(Path(directory), pool_size=0)
    try:
        disks.check()
        while True:
            try:
                msg, fds, _flags, _addr = socket.recv_fds(sock, 4096, 16)
            except InterruptedError:
                continue
            if not msg:
                return
            for fd in fds:  # disks handed back: the last reference, mostly
                os.close(fd)
            size = json.loads(msg).get("make")
            if size is None:
                continue
            try:
                disk = disks.make(size)
            except OSError as exc:
                sock.send(json.dumps({"size": size, "error": str(exc)}).encode())
                continue
            try:
                reply = {"size": size, "device": disk.device, "free": disk.free_blocks}
                socket.send_fds(sock, [json.dumps(reply).encode()], [disk.fd])
            finally:
                os.close(disk.fd)
    except (BrokenPipeError, ConnectionResetError):
        return


class DiskHelper:
    """The server's end of the helper process (used on its event loop).

    Making a disk costs ~0.6 ms of CPU and unmounting one ~0.3 ms, plus waits for the
    disk; in the server's threads that work competes with the cold start it is made for
    (for the CPU, and for the GIL between system calls). The helper does both at low
    priority; the server only sends a request, or a descriptor, and receives a
    descriptor. Where it is gone, the server does the work in its threads again."""

    def __init__(self, directory: Path, on_disk: Callable[[TmpDisk], None],
                 on_error: Callable[[int, str], None]) -> None:
        self.directory = directory
        self._on_disk = on_disk
        self._on_error = on_error
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def alive(self) -> bool:
        return self._sock is not None

    def start(self) -> None:
        """Start the process (blocking: a fork and exec; call from a thread)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-c", HELPER_BOOT, str(SOURCE_ROOT),
                 str(theirs.fileno()), str(self.directory)],
                pass_fds=[theirs.fileno()], cwd="/", env={}, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL)
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._sock is not None:
            self._loop = loop
            loop.add_reader(self._sock, self._readable)

    def make(self, size_mb: int) -> bool:
        """Ask for one disk (it comes to ``on_disk`` later); False: the helper is gone,
        or busy enough that its requests are piling up."""
        return self._send(json.dumps({"make": size_mb}).encode(), [])

    def discard(self, disk: TmpDisk) -> bool:
        """Hand a disk's last reference to the helper (which unmounts it); False if it
        could not take it (then the disk is still the caller's to close)."""
        if disk.fd < 0:
            return True
        if not self._send(b"{}", [disk.fd]):
            return False
        disk.close()  # cheap: the descriptor in flight keeps the file system
        return True

    def _send(self, msg: bytes, fds: list[int]) -> bool:
        if self._sock is None:
            return False
        try:
            socket.send_fds(self._sock, [msg], fds)
            return True
        except BlockingIOError:
            return False
        except OSError as exc:
            log.warning("the /tmp disk helper is gone: %s", exc)
            self._gone()
            return False

    def _readable(self) -> None:
        while self._sock is not None:
            try:
                msg, fds, _flags, _addr = socket.recv_fds(self._sock, 4096, 1)
            except BlockingIOError:
                return
            except OSError:
                msg, fds = b"", []
            if not msg:
                for fd in fds:
                    os.close(fd)
                log.warning("the /tmp disk helper exited; disks are made in the server")
                self._gone()
                return
            reply = json.loads(msg)
            if fds:
                self._on_disk(TmpDisk(reply["size"], fds[0], reply["device"], reply["free"]))
            else:
                self._on_error(reply["size"], reply.get("error", "no disk"))

    def _gone(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            if self._loop is not None:
                self._loop.remove_reader(sock)
            sock.close()

    def close(self) -> None:
        """Close the server's end (on the event loop): the helper then closes what it
        holds (every disk handed back is unmounted) and exits."""
        self._gone()

    def wait(self) -> None:
        """Wait for the helper to exit (blocking; call from a thread after ``close``)."""
        proc = self._proc
        if proc is not None:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
