"""What the cold-start benchmarks share: the fork and namespace floors, percentiles,
invocations, a loop of measured cold starts with their stage timings, and the table.

Imported by ``bench/coldstart.py`` and ``bench/snapstart.py`` once they have fixed
``sys.path`` (this directory's http.py must not shadow the standard library's).
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from nimbus.guest import libc, mounts
from nimbus.sandbox import Environment, EnvironmentSpec, Invocation, SandboxManager
from nimbus.sandbox.catalog import available
from nimbus.sandbox.interpreters import resolve

HELLO = "def handler(event, context):\n    return {'hello': event.get('name', 'world')}\n"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def fork_floor(iterations: int) -> list[float]:
    """fork + _exit + waitpid of this (running) Python process, in ms."""
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        times.append((time.perf_counter() - start) * 1000)
    return times


NAMESPACES = (libc.CLONE_NEWNS | libc.CLONE_NEWPID | libc.CLONE_NEWIPC | libc.CLONE_NEWUTS
              | libc.CLONE_NEWNET)


def namespace_floor(iterations: int) -> dict[str, list[float]]:
    """What the kernel alone charges for a namespace sandbox, in ms, from a copy of this
    process (needs root): ``clone`` into new mount, PID, IPC, UTS and network namespaces
    then exit and wait (what a stem cell does ahead of time), and ``sandbox``: the same
    plus the mounts a cold start makes (a tmpfs /tmp, a read-only bind of the code),
    ``pivot_root`` into the base, the host's tree detached and ``setresuid``. No Python
    work, no handler, no messages: the least any namespace sandbox pays. Measured in a
    forked child with a private mount namespace, so this process's mounts stay as
    they are."""
    base, code = tempfile.mkdtemp(), tempfile.mkdtemp()  # mount points, empty
    read, write = os.pipe()
    try:
        pid = os.fork()
        if pid == 0:
            os.close(read)

            def measure() -> None:
                times = _namespace_floor(iterations, base, code)
                with os.fdopen(write, "wb") as out:
                    out.write(json.dumps(times).encode())

            _exit_after(measure)
        os.close(write)
        with os.fdopen(read, "rb") as f:
            out = f.read()
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError("the namespace floor could not be measured (its error is "
                               "printed above)")
        return json.loads(out)
    finally:
        os.rmdir(base)
        os.rmdir(code)


def _namespace_floor(iterations: int, base: str, code: str) -> dict[str, list[float]]:
    libc.unshare(libc.CLONE_NEWNS)
    libc.mount(None, "/", None, libc.MS_REC | libc.MS_PRIVATE)
    libc.mount("tmpfs", base, "tmpfs", libc.MS_NOSUID, "mode=0755,size=4m")
    for rel in ("var/task", "tmp", "usr"):
        os.makedirs(f"{base}/{rel}")
    libc.mount("/usr", f"{base}/usr", None, libc.MS_BIND)

    def confine() -> None:
        # The sandbox's own mounts of a cold start (a tmpfs /tmp of 512 MB, no layers).
        mounts.enter(base, code, [], 512)
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)

    def run(body: Callable[[], None]) -> list[float]:
        times = []
        for _ in range(iterations):
            start = time.perf_counter()
            pid = libc.clone_process(NAMESPACES)
            if pid == 0:
                _exit_after(body)
            _, status = os.waitpid(pid, 0)
            times.append((time.perf_counter() - start) * 1000)
            if os.waitstatus_to_exitcode(status) != 0:  # a floor over less work is no floor
                raise RuntimeError("a namespace floor sandbox failed (printed above)")
        return times

    return {"clone": run(lambda: None), "sandbox": run(confine)}


def _exit_after(body: Callable[[], None]) -> NoReturn:
    """In a forked child: run ``body``, then exit 0, or 1 with the traceback printed."""
    status = 1
    try:
        body()
        status = 0
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(status)


def runtime_interpreter(runtime: str) -> str:
    """The interpreter nimbus runs ``runtime``'s functions with, on this host."""
    return resolve(available()[runtime].executable).executable


def write_code(directory: Path, source: str) -> Path:
    """A function package: ``directory/app.py``, world-readable, as the store leaves it."""
    directory.mkdir(mode=0o755)
    (directory / "app.py").write_text(source)
    (directory / "app.py").chmod(0o644)
    return directory


def invocation(arn: str, timeout_s: float = 3) -> Invocation:
    return Invocation(str(uuid.uuid4()), b'{"name": "bench"}',
                      int((time.time() + timeout_s) * 1000), arn)


async def cold_starts(manager: SandboxManager, spec: EnvironmentSpec, n: int,
                      timeout_s: float = 3,
                      sample: Callable[[Environment], int] | None = None) -> dict:
    """``n`` cold starts of ``spec``, one after the other, each followed by its first
    invoke and stopped: start() and start() + first invoke times (ms), init (or
    restore) durations, what served each (stem cell, zygote, ...), the p50 of each
    stage from the request on, and ``sample(env)`` after the first invoke if given.
    Each waits for the stem cell taken before it to be replaced, as a cold start
    between sporadic requests finds its pool (bursts: ``bench/workloads.py``'s curve)."""
    starts: list[float] = []
    firsts: list[float] = []
    inits: list[float] = []
    samples: list[int] = []
    origins: dict[str, int] = {}
    stages: dict[str, list[float]] = {}
    for _ in range(n):
        await manager.refilled(spec)
        t0 = time.perf_counter()
        env = await manager.start(spec)
        t1 = time.perf_counter()
        outcome = await env.invoke(invocation(spec.function_arn, timeout_s))
        t2 = time.perf_counter()
        assert outcome.function_error is None, outcome.payload
        starts.append((t1 - t0) * 1000)
        firsts.append((t2 - t0) * 1000)
        inits.append(env.init_duration_ms)
        if sample is not None:
            samples.append(sample(env))
        origins[env.origin] = origins.get(env.origin, 0) + 1
        ordered = sorted(env.stages, key=lambda s: s[1])
        names = [name for name, _ in ordered]
        if "requested" in names:
            ordered = ordered[names.index("requested"):]
            for (a, ta), (b, tb) in itertools.pairwise(ordered):
                stages.setdefault(f"{a} -> {b}", []).append((tb - ta) * 1000)
        await env.stop()
    return {"start": starts, "first": firsts, "init": inits, "samples": samples,
            "origins": origins,
            "stages": {k: round(statistics.median(v), 3) for k, v in stages.items()
                       if len(v) > n // 2}}


def table(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """Print ``rows`` under ``columns`` (with rich when installed)."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        for row in rows:
            print(f"{row[0]:<52} " + " ".join(f"{c:>10}" for c in row[1:]))
        return
    t = Table(title=title)
    for i, name in enumerate(columns):
        t.add_column(name, justify="left" if i == 0 else "right")
    for row in rows:
        t.add_row(*row)
    Console().print(t)
