"""Dropping root for good: an unprivileged uid/gid, no supplementary groups, no
capabilities in any set (bounding and ambient included), no_new_privs, then a check of
what the kernel reports, because a sandbox must never be silently weaker than asked.

Runs in the zygote's child (Python 3.9+): standard library only.
"""

from __future__ import annotations

import os

from nimbus.guest import libc


def last_capability() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return 40


def limit(last_cap: int) -> None:
    """The first half, done before the function is known: empty the bounding and
    ambient sets (no exec can ever gain a capability) and the supplementary groups.
    The effective set is untouched, so mounting and switching uid still work."""
    libc.drop_bounding_set(last_cap)
    libc.prctl(libc.PR_CAP_AMBIENT, libc.PR_CAP_AMBIENT_CLEAR_ALL)
    os.setgroups([])


def drop(uid: int, gid: int) -> None:
    """The second half: become ``uid``/``gid``, which empties the permitted and effective
    sets; clear the inheritable set; no_new_privs."""
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    libc.clear_capabilities()
    libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
    # setuid cleared "dumpable", which makes /proc/self root-owned and unreadable to the
    # function itself; the PID namespace keeps everyone else out anyway.
    libc.prctl(libc.PR_SET_DUMPABLE, 1)


def status() -> dict[str, str]:
    fd = os.open("/proc/self/status", os.O_RDONLY)
    try:
        raw = os.read(fd, 1 << 16).decode()
    finally:
        os.close(fd)
    fields = {}
    for line in raw.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def verify(uid: int, gid: int, seccomp: bool, check: bool = True) -> None:
    """Raise unless the kernel confirms every part of the drop (``check=False``: only
    exercise the code, for stem cells warming up)."""
    s = status()
    problems = []
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        if key in s and int(s[key], 16) != 0:
            problems.append(f"{key}={s[key]}")
    if s.get("Uid", "").split() != [str(uid)] * 4:
        problems.append(f"Uid={s.get('Uid')}")
    if s.get("Gid", "").split() != [str(gid)] * 4:
        problems.append(f"Gid={s.get('Gid')}")
    if s.get("Groups", "") not in ("", str(gid)):
        problems.append(f"Groups={s.get('Groups')}")
    if s.get("NoNewPrivs") != "1":
        problems.append(f"NoNewPrivs={s.get('NoNewPrivs')}")
    if seccomp and s.get("Seccomp") != "2":
        problems.append(f"Seccomp={s.get('Seccomp')}")
    if problems and check:
        raise PermissionError("privileges not fully dropped: " + ", ".join(problems))
