"""Reaping the zombies of an environment, in the Python runtime.

The Python runtime is PID 1 of its environment's PID namespace (in an environment forked
from a SnapStart template, a child subreaper): every process whose parent exits is handed
to it, and a child that exits stays a zombie until someone waits for it, holding one of
the environment's pids (``pids.max``) until the environment can fork no more. So the
runtime reaps, but never a child that the function itself may still wait for:

- only between invocations (``reap``, after the handler returned): a handler waiting for
  a child it forked (``os.waitpid``, ``subprocess.run``) gets its status;
- never a child that a live ``subprocess.Popen`` or ``multiprocessing`` process object
  still owns, even across invocations: ``Popen`` objects are registered when made
  (``install``; one that the function dropped while its child ran, which ``subprocess``
  itself would reap later, is not kept); while one is being made, nothing is reaped;
- the children are listed before the owners are, so a child forked meanwhile is never
  taken for an orphan.

What it reaps: orphans handed to PID 1, and children of the handler that nothing owns
(``os.fork`` without a wait, dropped ``Popen`` objects). A function that forks with
``os.fork`` and waits for that child in a later invocation finds it reaped
(``ChildProcessError``), as it would under any init that reaps.

Runs on the function's Python (3.9+): standard library only.
"""

from __future__ import annotations

import functools
import os
import sys
import weakref
from typing import Any

_POPENS: weakref.WeakSet[Any] = weakref.WeakSet()  # subprocess.Popen objects alive
_MAKING: set[int] = set()  # id() of each Popen whose __init__ runs (it may have forked)
_PEEK = os.WEXITED | os.WNOHANG | os.WNOWAIT


def install() -> None:
    """Register every ``subprocess.Popen`` as it is made (in the zygote, once)."""
    import subprocess

    popen = subprocess.Popen
    if getattr(popen.__init__, "_nimbus_registers", False):
        return
    original = popen.__init__

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        _POPENS.add(self)
        _MAKING.add(id(self))  # set operations: atomic for the function's threads
        try:
            original(self, *args, **kwargs)
        finally:
            _MAKING.discard(id(self))

    __init__._nimbus_registers = True  # type: ignore[attr-defined]
    popen.__init__ = __init__  # type: ignore[method-assign]


def reap() -> int:
    """Wait for the exited children nothing owns; returns how many. One system call when
    there is none (the usual case)."""
    try:
        if os.waitid(os.P_ALL, 0, _PEEK) is None:
            return 0  # children, none exited
    except ChildProcessError:
        return 0  # no children at all
    children = _children()
    owned = _owned()
    if owned is None:
        return 0  # a Popen is being made: its pid is not known yet
    reaped = 0
    for pid in children:
        if pid in owned:
            continue
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue
        if done:
            reaped += 1
    return reaped


def _children() -> list[int]:
    """This process's children (of all its threads; orphans come to one of them)."""
    pids: list[int] = []
    listed = False
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        tids = []
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                pids.extend(int(p) for p in f.read().split())
            listed = True
        except OSError:  # the thread ended meanwhile (or no CONFIG_PROC_CHILDREN)
            continue
    if listed:
        return pids
    me = os.getpid()  # a kernel without the children files: scan /proc
    try:
        entries = os.listdir("/proc")
    except OSError:
        return pids
    for entry in entries:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == me:
                        pids.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return pids


def _owned() -> set[int] | None:
    """Pids the function's objects still own; None while a Popen is being made."""
    if _MAKING:
        return None
    owned: set[int] = set()
    subprocess = sys.modules.get("subprocess")
    # Dropped while their child ran: subprocess reaps those itself, keeping no status.
    dropped = {id(p) for p in getattr(subprocess, "_active", None) or ()}
    for popen in list(_POPENS):
        pid = getattr(popen, "pid", None)
        if pid is not None and id(popen) not in dropped and popen.returncode is None:
            owned.add(pid)
    process = sys.modules.get("multiprocessing.process")
    for child in list(getattr(process, "_children", None) or ()):
        popen = getattr(child, "_popen", None)
        if popen is not None and getattr(popen, "returncode", None) is None:
            owned.add(popen.pid)
    return owned
