"""SnapStart by fork against a normal cold start and the fork floor, on this host.

An import-heavy Python function: its init imports a fixed set of large standard-library
modules, a ~20 MB dependency from a layer (generated modules, byte-compiled as pip
would leave them) and builds a dict of 200k entries. Measured in one run:

* the fork floor: fork + _exit + waitpid of this (running) Python process, p50;
* the heavy function cold-started with SnapStart: a published version's environments
  forked from its template (``SandboxManager.start()`` of a ``snapstart`` spec; the
  template is made once, before the measured starts);
* the same code cold-started without SnapStart (a normal cold start: imports and init
  run in every new environment);
* a light hello function's normal cold start (stem cells), for comparison;
* unique memory per environment: the cgroup usage of an environment after its first
  invoke (for the template: its own cgroup's usage).

Each figure is ``start()`` + the first invoke, and ``start()`` alone. Prints a table
and writes ``bench/results/snapstart.json``. Needs root (namespace isolation).
Usage: ``python bench/snapstart.py [--runtime python3.12] [-n 100] [--n-cold 20]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run from the repo root's view: this directory's http.py must not shadow the
# standard library's http package for the imports below.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import dataclasses
import inspect
import json
import os
import platform
import random
import statistics
import string
import subprocess
import tempfile
import time

from bench.common import (
    HELLO,
    cold_starts,
    fork_floor,
    invocation,
    pct,
    runtime_interpreter,
    table,
    write_code,
)

from nimbus.sandbox import Environment, EnvironmentSpec, SandboxManager

RESULTS = Path(__file__).parent / "results" / "snapstart.json"
ARN = "arn:aws:lambda:us-east-1:000000000000:function:"
STDLIB = ("email", "email.mime.multipart", "email.mime.text", "http.client", "http.server",
          "decimal", "asyncio", "json", "xml.etree.ElementTree", "xml.dom.minidom", "sqlite3",
          "unittest", "unittest.mock", "multiprocessing", "concurrent.futures", "logging",
          "argparse", "urllib.request", "ssl", "csv", "zipfile", "tarfile", "pickle",
          "difflib", "statistics", "fractions", "dataclasses", "typing", "inspect",
          "ipaddress", "uuid", "hashlib", "datetime", "calendar", "textwrap", "pprint")
HEAVY = f'''
import importlib
STDLIB = {STDLIB!r}
for _name in STDLIB:
    importlib.import_module(_name)

import heavydep  # the ~20 MB layer dependency (its modules are imported by its __init__)

TABLE = {{f"key-{{i}}": (i, str(i) * 3) for i in range(200_000)}}


def handler(event, context):
    return {{"modules": len(STDLIB), "dep": heavydep.SIZE, "table": len(TABLE)}}
'''


# The heavy function's init in a plain interpreter, then this file's fork floor there.
HEAVY_FLOOR = f"""
import json, os, sys, time
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import app
{inspect.getsource(fork_floor)}
print(json.dumps(fork_floor(int(sys.argv[3]))))
"""


def heavy_fork_floor(interpreter: str, code: Path, layer: Path, iterations: int) -> list[float]:
    """The fork floor of a process the template's size: the heavy function's init run
    in a plain interpreter, then fork + _exit + waitpid of it."""
    out = subprocess.run([interpreter, "-c", HEAVY_FLOOR, str(code), str(layer / "python"),
                          str(iterations)], check=True, capture_output=True, text=True)
    return list(json.loads(out.stdout))


def build_layer(root: Path, megabytes: int, interpreter: str) -> int:
    """``root/python/heavydep``: generated modules of ``megabytes`` MB of source in all,
    byte-compiled by the runtime's interpreter. Returns the source size in bytes."""
    package = root / "python" / "heavydep"
    package.mkdir(parents=True)
    rng = random.Random(18)
    per_module = 512 * 1024
    count = max(1, megabytes * 1024 * 1024 // per_module)
    total = 0
    for m in range(count):
        lines = [f'"""Generated module {m} of heavydep."""\n']
        size = 0
        i = 0
        while size < per_module:
            # A mix of what real packages hold: functions, constants, tables of strings.
            text = "".join(rng.choices(string.ascii_letters, k=48))
            line = (f"def f{i}(x, y=2):\n    return (x * {i} + y) % 97\n"
                    f"C{i} = ({i}, {text!r}, {float(i)})\n")
            lines.append(line)
            size += len(line)
            i += 1
        body = "".join(lines)
        (package / f"mod{m:03d}.py").write_text(body)
        total += len(body)
    imports = "".join(f"from heavydep import mod{m:03d}\n" for m in range(count))
    (package / "__init__.py").write_text(imports + f"SIZE = {total}\n")
    subprocess.run([interpreter, "-m", "compileall", "-q", str(root / "python")], check=True)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    root.chmod(0o755)
    return total


def unique_bytes(env: Environment) -> int:
    """The environment's cgroup usage now: what it alone is charged for."""
    return env.cgroup.memory_sample()[0] if env.cgroup is not None else 0


async def cold(manager: SandboxManager, spec: EnvironmentSpec, n: int) -> dict:
    return await cold_starts(manager, spec, n, timeout_s=60, sample=unique_bytes)


def summary(run: dict) -> dict:
    return {
        "first_p50_ms": round(statistics.median(run["first"]), 3),
        "first_p99_ms": round(pct(run["first"], 0.99), 3),
        "start_p50_ms": round(statistics.median(run["start"]), 3),
        "start_p99_ms": round(pct(run["start"], 0.99), 3),
        "init_or_restore_p50_ms": round(statistics.median(run["init"]), 3),
        "unique_memory_p50_bytes": int(statistics.median(run["samples"])),
        "served_by": run["origins"],
        "stage_p50_ms": run["stages"],
        "n": len(run["first"]),
    }


def mib(n: int) -> str:
    return f"{n / 1048576:.1f}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", default="python3.12")
    parser.add_argument("-n", type=int, default=100, help="SnapStart and light cold starts")
    parser.add_argument("--n-cold", type=int, default=20,
                        help="cold starts of the heavy function without SnapStart")
    parser.add_argument("--floor", type=int, default=200, help="fork floor iterations")
    parser.add_argument("--layer-mb", type=int, default=20, help="size of the layer dependency")
    parser.add_argument("--memory", type=int, default=1024, help="MemorySize of the functions")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/snapstart.py needs root (namespace isolation)")

    floor = fork_floor(args.floor)
    with tempfile.TemporaryDirectory(prefix="nimbus-bench-") as tmp:
        base = Path(tmp)
        base.chmod(0o755)
        layer = base / "layer"
        interpreter = runtime_interpreter(args.runtime)
        layer_bytes = build_layer(layer, args.layer_mb, interpreter)
        heavy_code, light_code = base / "heavy", base / "light"
        write_code(heavy_code, HEAVY)
        write_code(light_code, HELLO)
        heavy_floor = heavy_fork_floor(interpreter, heavy_code, layer, args.floor)
        heavy = EnvironmentSpec(
            function_name="heavy", version="1", function_arn=ARN + "heavy",
            runtime=args.runtime, handler="app.handler", code_dir=heavy_code,
            layer_dirs=[layer], memory_mb=args.memory, timeout_s=60,
        )
        snap = dataclasses.replace(heavy, snapstart=True)
        light = EnvironmentSpec(
            function_name="light", version="$LATEST", function_arn=ARN + "light",
            runtime=args.runtime, handler="app.handler", code_dir=light_code,
        )
        manager = SandboxManager(base / "work")
        try:
            await manager.warm_up([args.runtime])
            # The template: made once per published version (init runs here), as at
            # PublishVersion; then every measured start is a fork from it.
            t0 = time.perf_counter()
            first = await manager.start(snap)
            template_ms = (time.perf_counter() - t0) * 1000
            await first.invoke(invocation(snap.function_arn, 60))
            await first.stop()
            info = next(i for i in manager.templates.infos() if i.function_name == "heavy")
            snapped = await cold(manager, snap, args.n)
            info = next(i for i in manager.templates.infos() if i.function_name == "heavy")
            plain = await cold(manager, heavy, args.n_cold)
            env = await manager.start(light)  # teach the stem-cell pool what is in demand
            await env.stop()
            await asyncio.sleep(0.5)
            hello = await cold(manager, light, args.n)
        finally:
            await manager.close()

    floor_p50 = statistics.median(floor)
    s, p, h = summary(snapped), summary(plain), summary(hello)
    result = {
        "host": {"kernel": platform.release(), "machine": platform.machine(),
                 "cpus": os.cpu_count(), "python": platform.python_version(),
                 "runtime": args.runtime, "memory_mb": args.memory},
        "function": {"stdlib_modules": list(STDLIB), "layer_source_bytes": layer_bytes,
                     "dict_entries": 200_000},
        "floor_p50_ms": round(floor_p50, 3),
        "floor_p99_ms": round(pct(floor, 0.99), 3),
        "heavy_floor_p50_ms": round(statistics.median(heavy_floor), 3),
        "heavy_floor_p99_ms": round(pct(heavy_floor, 0.99), 3),
        "snapstart": s,
        "without_snapstart": p,
        "light_cold": h,
        "template": {"create_and_first_invoke_ms": round(template_ms, 3),
                     "init_ms": info.init_ms, "memory_bytes": info.memory_bytes,
                     "forks": info.forks},
        "ratio_snapstart_p50_to_floor": round(s["first_p50_ms"] / floor_p50, 2),
        "speedup_p50_vs_without": round(p["first_p50_ms"] / s["first_p50_ms"], 1),
        "ratio_snapstart_p50_to_light_cold": round(s["first_p50_ms"] / h["first_p50_ms"], 2),
        "targets": {
            "snapstart_p50_le_3x_floor": s["first_p50_ms"] <= 3 * floor_p50,
            "snapstart_ge_20x_faster_than_without": p["first_p50_ms"] >= 20 * s["first_p50_ms"],
            "snapstart_faster_than_light_cold": s["first_p50_ms"] < h["first_p50_ms"],
        },
    }
    nn, nc = str(args.n), str(args.n_cold)
    table("SnapStart by fork vs a normal cold start and the fork floor (ms)",
          ("measurement", "p50", "p99", "unique MiB", "n"), [
        ("fork floor (fork+exit+wait of this process)", f"{floor_p50:.2f}",
         f"{pct(floor, 0.99):.2f}", "", str(args.floor)),
        ("fork floor of a process the template's size", f"{statistics.median(heavy_floor):.2f}",
         f"{pct(heavy_floor, 0.99):.2f}", "", str(args.floor)),
        ("heavy, SnapStart: start() + first invoke", f"{s['first_p50_ms']:.2f}",
         f"{s['first_p99_ms']:.2f}", mib(s["unique_memory_p50_bytes"]), nn),
        ("heavy, SnapStart: start() alone", f"{s['start_p50_ms']:.2f}",
         f"{s['start_p99_ms']:.2f}", "", nn),
        ("heavy, no SnapStart: start() + first invoke", f"{p['first_p50_ms']:.2f}",
         f"{p['first_p99_ms']:.2f}", mib(p["unique_memory_p50_bytes"]), nc),
        ("heavy, no SnapStart: init duration", f"{p['init_or_restore_p50_ms']:.2f}", "", "", nc),
        ("light hello, normal cold start + first invoke", f"{h['first_p50_ms']:.2f}",
         f"{h['first_p99_ms']:.2f}", mib(h["unique_memory_p50_bytes"]), nn),
        ("heavy template (made once: init + first invoke)", f"{template_ms:.2f}", "",
         mib(info.memory_bytes), "1"),
    ])
    print(f"SnapStart p50 / floor p50 = {result['ratio_snapstart_p50_to_floor']}x (target <= 3x); "
          f"without / with = {result['speedup_p50_vs_without']}x (target >= 20x); "
          f"SnapStart / light cold = {result['ratio_snapstart_p50_to_light_cold']}x")
    print(f"SnapStart stages (p50 ms): {s['stage_p50_ms']}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    asyncio.run(main())
