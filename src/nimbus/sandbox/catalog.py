"""The runtimes this host can offer: ``python3.X`` for each interpreter found on PATH
that really runs (a pyenv shim may name a version that is not installed), and
``provided.al2023`` / ``provided.al2`` (a ``bootstrap`` speaking the Runtime API).

Finding them runs each interpreter once (blocking, ~50 ms each): the server does it at
start-up, off the event loop, so CreateFunction only reads the cached answer."""

from __future__ import annotations

import functools
import shutil
from dataclasses import dataclass

from nimbus.sandbox.interpreters import InterpreterNotFound, resolve

PROVIDED = ("provided.al2023", "provided.al2")
_PYTHON_MINORS = range(9, 16)


@dataclass(frozen=True)
class Runtime:
    name: str
    # The interpreter that runs the runtime loop; for provided runtimes, the host's
    # Python that serves the Runtime API to the bootstrap.
    executable: str
    python: bool


@functools.cache
def available() -> dict[str, Runtime]:
    found: dict[str, Runtime] = {}
    for minor in _PYTHON_MINORS:
        exe = shutil.which(f"python3.{minor}")
        if exe and _runs(exe, (3, minor)):
            found[f"python3.{minor}"] = Runtime(f"python3.{minor}", exe, True)
    host_python = shutil.which("python3") or "python3"
    for name in PROVIDED:
        found[name] = Runtime(name, host_python, False)
    return found


def _runs(executable: str, version: tuple[int, int]) -> bool:
    try:
        return resolve(executable).version == version
    except InterpreterNotFound:
        return False


def names() -> list[str]:
    return sorted(available(), key=_order)


def _order(name: str) -> tuple[int, int]:
    if name.startswith("python3."):
        return (0, int(name.split(".")[1]))
    return (1, PROVIDED.index(name))
