"""Sandbox uids: how many one process needs, and a range of host uids no other nimbus
on this host uses.

Every execution environment runs as a host uid of its own, so two environments, or two
nimbus installations on one host, must never share one (a function could signal the
other's processes or read what it leaves in /proc). Each process that runs sandboxes
(the server and every async worker) claims its own range:

- The region: uids 0x78000000-0x7FFDFFFF (2,013,265,920-2,147,352,575), cut in slots of
  65,536. systemd's uid assignments (https://systemd.io/UIDS-GIDS/) leave it unused:
  regular users stop at 60,000, DynamicUser= and systemd-homed live below 65,536,
  container ranges end at 0x6FFFFFFF and the "foreign" range starts at 0x7FFE0000;
  /etc/subuid ranges are handed out from 100,000 up.
- A process claims as many consecutive slots as its uids need, starting at a slot
  picked from a hash of its work dir (inside the data dir), by holding an exclusive
  ``flock`` on ``/run/nimbus/uid-slots/<slot>.lock`` for each while it runs; a slot
  another process holds is skipped, so no two processes on the host ever share a
  slot. The kernel drops the locks of a process that dies; the files say who held them
  last (pid and work dir), for an operator who wonders.

How many uids: one per environment a process may hold at once (busy, idle, provisioned,
being stopped, and a block of 32 per SnapStart template). Every invocation the account
concurrency limit admits may run in one process, so a process gets the limit plus a
quarter (at least 64) of headroom; when all are held, the pool evicts idle environments
of other functions (invocation/pool.py), and only when none is idle is a cold start
refused with 429.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from nimbus.sandbox.errors import SandboxError

log = logging.getLogger(__name__)

SLOT_SIZE = 1 << 16
REGION_FIRST = 0x7800_0000
REGION_END = 0x7FFE_0000  # systemd's foreign uid range starts here
SLOTS = (REGION_END - REGION_FIRST) // SLOT_SIZE
LOCK_DIR = Path("/run/nimbus/uid-slots")
MIN_HEADROOM = 64  # two SnapStart templates' blocks


def per_process(concurrency_limit: int) -> int:
    """Uids one process needs: the account limit plus a quarter, at least 64, of
    headroom for provisioned environments, templates and environments being stopped."""
    return concurrency_limit + max(MIN_HEADROOM, concurrency_limit // 4)


@dataclass
class UidClaim:
    """``count`` uids from ``first`` on, this process's while the claim is open."""

    first: int
    count: int
    slots: range
    lock_dir: Path
    _fds: list[int] = field(default_factory=list, repr=False)

    @property
    def last(self) -> int:
        return self.first + self.count - 1

    def close(self) -> None:
        """Give the slots back (closing the descriptors drops the locks)."""
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()


def preferred_slot(work_dir: Path) -> int:
    """Where a claim for ``work_dir`` starts looking: the same place every time."""
    digest = hashlib.sha256(str(Path(work_dir).absolute()).encode()).digest()
    return int.from_bytes(digest[:8], "big") % SLOTS


def claim(work_dir: Path, count: int, lock_dir: Path = LOCK_DIR) -> UidClaim:
    """Claim a range of ``count`` uids for this process (blocking: a few file opens).
    Raises SandboxError if the lock directory cannot be used or every slot is held."""
    if count < 1:
        raise ValueError("count must be at least 1")
    need = -(-count // SLOT_SIZE)
    if need > SLOTS:
        raise SandboxError(
            f"{count} sandbox uids are more than the {SLOTS * SLOT_SIZE} "
            "nimbus's uid region holds; lower concurrency_limit"
        )
    try:
        lock_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    except OSError as exc:
        raise SandboxError(
            f"cannot create {lock_dir}, where nimbus claims its range of sandbox uids: {exc}"
        ) from exc
    start = preferred_slot(work_dir)
    for step in range(SLOTS):
        first_slot = (start + step) % SLOTS
        if first_slot + need > SLOTS:
            continue  # a range never wraps around the region's end
        fds = _lock_slots(lock_dir, range(first_slot, first_slot + need))
        if fds is None:
            continue
        note = f"pid {os.getpid()} {Path(work_dir).absolute()}\n".encode()
        with contextlib.suppress(OSError):
            os.ftruncate(fds[0], 0)
            os.pwrite(fds[0], note, 0)
        first = REGION_FIRST + first_slot * SLOT_SIZE
        slots = range(first_slot, first_slot + need)
        log.info(
            "sandbox uids %d-%d (slot %d of %s)", first, first + count - 1, first_slot, lock_dir
        )
        return UidClaim(first, count, slots, lock_dir, fds)
    raise SandboxError(
        f"every range of sandbox uids under {lock_dir} is held by another running nimbus process"
    )


def _lock_slots(lock_dir: Path, slots: range) -> list[int] | None:
    """Exclusive locks on every slot's file, or None (and no lock kept) if one is held."""
    fds: list[int] = []
    try:
        for slot in slots:
            fd = os.open(lock_dir / f"{slot}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            fds.append(fd)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        for fd in fds:
            os.close(fd)
        return None
    except OSError as exc:
        for fd in fds:
            os.close(fd)
        raise SandboxError(f"cannot lock a slot of sandbox uids in {lock_dir}: {exc}") from exc
    return fds
