"""Finding the real interpreter behind a runtime's executable.

``shutil.which("python3.12")`` may return a pyenv shim (a bash script), which works only
for the versions pyenv currently selects; the zygote must run the interpreter itself, and
the sandbox must bind its prefix. Resolving runs it once and asks.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
from dataclasses import dataclass

_PROBE = (
    "import sys, json; print(json.dumps([getattr(sys, '_base_executable', '') or "
    "sys.executable, sys.base_prefix, list(sys.version_info[:2])]))"
)


@dataclass(frozen=True)
class Interpreter:
    executable: str  # the real binary, symlinks resolved
    prefix: str  # sys.base_prefix: stdlib and site-packages live below it
    version: tuple[int, int]


class InterpreterNotFound(OSError):
    pass


def _pyenv_env(executable: str) -> dict[str, str] | None:
    """For a pyenv shim: select every installed version, so the shim finds the binary."""
    shims = os.path.dirname(executable)
    if os.path.basename(shims) != "shims":
        return None
    versions_dir = os.path.join(os.path.dirname(shims), "versions")
    try:
        versions = sorted(os.listdir(versions_dir))
    except OSError:
        return None
    return {**os.environ, "PYENV_VERSION": ":".join(versions)}


@functools.cache
def resolve(executable: str) -> Interpreter:
    """Blocking (runs the interpreter once); cached per executable."""
    attempts: list[dict[str, str] | None] = [None]
    pyenv = _pyenv_env(executable)
    if pyenv is not None:
        attempts.append(pyenv)
    error = ""
    for env in attempts:
        try:
            out = subprocess.run(
                [executable, "-I", "-c", _PROBE], env=env, capture_output=True, text=True,
                timeout=30, check=False,
            )
        except OSError as exc:
            error = str(exc)
            continue
        if out.returncode == 0:
            exe, prefix, version = json.loads(out.stdout)
            return Interpreter(os.path.realpath(exe), os.path.realpath(prefix), tuple(version))
        first = (out.stderr or out.stdout).strip().splitlines()[0:1]
        error = first[0] if first else f"exit status {out.returncode}"
    raise InterpreterNotFound(f"cannot run {executable}: {error}")
