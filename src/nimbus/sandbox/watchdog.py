"""A sandboxing process's watchdog: when that process dies, its frozen environments die.

An environment idle between invocations is frozen (cgroup freezer), and a frozen
process keeps a SIGKILL pending until it is thawed: when its server is killed with -9,
its parent-death signal waits too, and the environment would keep its memory, its /tmp
disk and loop device and its network namespace until the next start sweeps them. So each
sandbox manager starts this watchdog, a bare interpreter (``-I -S``, no nimbus imported:
a few MB) reading a pipe whose write end only the manager's process holds. The pipe ends
when that process ends, however it ends; the watchdog then kills every member of the
manager's cgroups and thaws them, so they die at once, and exits. After a clean close
the cgroups are gone already and it has nothing to do.
"""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
import os, signal, sys
while os.read(0, 4096):
    pass
for parent in sys.argv[1:]:
    try:
        children = [os.path.join(parent, c) for c in os.listdir(parent)]
    except OSError:
        continue
    for child in children:
        if not os.path.isdir(child):
            continue
        try:
            with open(os.path.join(child, "cgroup.procs")) as f:
                pids = [int(p) for p in f.read().split()]
        except (OSError, ValueError):
            pids = []
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for name, value in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
            try:
                with open(os.path.join(child, name), "w") as f:
                    f.write(value)
            except OSError:
                pass
"""


def start(parents: list[str]) -> subprocess.Popen[bytes]:
    """The watchdog of this process's cgroups ``parents``; keep the returned process
    (its stdin is the pipe) for as long as the cgroups live, and ``stop`` it after."""
    return subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", SCRIPT, *parents],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True,
    )


def stop(watchdog: subprocess.Popen[bytes]) -> None:
    """End it after a clean close (its cgroups are gone: it finds nothing to kill)."""
    if watchdog.stdin is not None:
        watchdog.stdin.close()
    try:
        watchdog.wait(timeout=5)
    except subprocess.TimeoutExpired:
        watchdog.kill()
        watchdog.wait()
