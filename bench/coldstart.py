"""Cold starts against the fork floor, on this host.

Measures, in one run:

* the fork floor: fork + _exit + waitpid of this (running) Python process, p50;
* nimbus cold starts of a sandboxed hello function (python3.12 by default), each a new
  environment: ``SandboxManager.start()`` alone, and ``start()`` + the first invoke;
  served by pre-forked stem cells (the default), and again with stem cells off (every
  cold start forks from the zygote);
* warm invokes, p50.

Prints a table and writes ``bench/results/coldstart.json``. Needs root (namespace
isolation). Usage: ``python bench/coldstart.py [--runtime python3.12] [-n 100]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run from the repo root's view: this directory's http.py must not shadow the
# standard library's http package for the imports below.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time

from bench.common import (
    HELLO,
    cold_starts,
    fork_floor,
    invocation,
    namespace_floor,
    pct,
    runtime_interpreter,
    table,
    write_code,
)

from nimbus.sandbox import EnvironmentSpec, SandboxManager

RESULTS = Path(__file__).parent / "results" / "coldstart.json"
PREFORK = Path(__file__).parent / "prefork.py"


def prefork_floor(runtime: str, samples: int) -> list[float]:
    """``bench/prefork.py`` in the runtime's interpreter: a pre-forked Python process's
    cold start without any isolation, in ms."""
    interpreter = runtime_interpreter(runtime)
    done = subprocess.run([interpreter, str(PREFORK), str(samples)], capture_output=True,
                          text=True, check=True, timeout=300)
    return json.loads(done.stdout)


async def cold(work: Path, spec: EnvironmentSpec, n: int, stem_cells: int,
               tmp_storage: str, network: str = "isolated") -> dict:
    manager = SandboxManager(work, stem_cells=stem_cells, tmp_storage=tmp_storage,
                             network=network)
    try:
        await manager.warm_up([spec.runtime])
        env = await manager.start(spec)  # teach the stem-cell pool what is in demand
        await env.stop()
        await asyncio.sleep(0.5)
        return await cold_starts(manager, spec, n)
    finally:
        await manager.close()


async def warm(work: Path, spec: EnvironmentSpec, n: int, tmp_storage: str,
               network: str = "isolated") -> list[float]:
    manager = SandboxManager(work, stem_cells=0, tmp_storage=tmp_storage, network=network)
    times = []
    try:
        env = await manager.start(spec)
        for _ in range(n):
            t0 = time.perf_counter()
            outcome = await env.invoke(invocation(spec.function_arn))
            times.append((time.perf_counter() - t0) * 1000)
            assert outcome.function_error is None
        await env.stop()
    finally:
        await manager.close()
    return times


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", default="python3.12")
    parser.add_argument("-n", type=int, default=100, help="cold starts per configuration")
    parser.add_argument("--warm", type=int, default=1000, help="warm invokes")
    parser.add_argument("--floor", type=int, default=200, help="fork floor iterations")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--tmp-storage", choices=["disk", "memory"], default="disk",
                        help="where /tmp lives (nimbus' tmp_storage setting)")
    parser.add_argument("--network", choices=["isolated", "host"], default="isolated",
                        help="functions' network (nimbus' function_network setting)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/coldstart.py needs root (namespace isolation)")

    floor = fork_floor(args.floor)
    ns_floor = namespace_floor(args.floor)
    prefork = prefork_floor(args.runtime, args.n)
    with tempfile.TemporaryDirectory(prefix="nimbus-bench-") as tmp:
        base = Path(tmp)
        code = write_code(base / "code", HELLO)
        spec = EnvironmentSpec(
            function_name="hello", version="$LATEST",
            function_arn="arn:aws:lambda:us-east-1:000000000000:function:hello",
            runtime=args.runtime, handler="app.handler", code_dir=code,
        )
        stem = await cold(base / "stem", spec, args.n, 2, args.tmp_storage, args.network)
        direct = await cold(base / "direct", spec, args.n, 0, args.tmp_storage, args.network)
        warm_times = await warm(base / "warm", spec, args.warm, args.tmp_storage,
                                args.network)

    floor_p50 = statistics.median(floor)
    result = {
        "host": {"kernel": platform.release(), "machine": platform.machine(),
                 "cpus": os.cpu_count(), "python": platform.python_version(),
                 "runtime": args.runtime, "tmp_storage": args.tmp_storage,
                 "network": args.network},
        "floor_p50_ms": round(floor_p50, 3),
        "namespace_clone_p50_ms": round(statistics.median(ns_floor["clone"]), 3),
        "namespace_floor_p50_ms": round(statistics.median(ns_floor["sandbox"]), 3),
        "prefork_floor_p50_ms": round(statistics.median(prefork), 3),
        "prefork_floor_p99_ms": round(pct(prefork, 0.99), 3),
        "cold_p50_ms": round(statistics.median(stem["first"]), 3),
        "cold_p99_ms": round(pct(stem["first"], 0.99), 3),
        "cold_start_only_p50_ms": round(statistics.median(stem["start"]), 3),
        "cold_start_only_p99_ms": round(pct(stem["start"], 0.99), 3),
        "cold_zygote_p50_ms": round(statistics.median(direct["first"]), 3),
        "cold_zygote_p99_ms": round(pct(direct["first"], 0.99), 3),
        "cold_zygote_start_only_p50_ms": round(statistics.median(direct["start"]), 3),
        "warm_p50_ms": round(statistics.median(warm_times), 3),
        "warm_p99_ms": round(pct(warm_times, 0.99), 3),
        "init_duration_p50_ms": round(statistics.median(stem["init"]), 3),
        "ratio_cold_p50_to_floor": round(statistics.median(stem["first"]) / floor_p50, 2),
        "ratio_cold_zygote_p50_to_floor": round(statistics.median(direct["first"]) / floor_p50, 2),
        "served_by": {"stem cells run": stem["origins"], "zygote run": direct["origins"]},
        "stage_p50_ms": {"stem cells": stem["stages"], "zygote": direct["stages"]},
        "iterations": {"floor": args.floor, "cold": args.n, "warm": args.warm},
    }
    n, w = str(args.n), str(args.warm)
    table("nimbus cold starts vs the fork floor (ms)", ("measurement", "p50", "p99", "n"), [
        ("fork floor (fork+exit+wait of this process)", f"{floor_p50:.2f}",
         f"{pct(floor, 0.99):.2f}", str(args.floor)),
        ("namespace floor: clone into namespaces + exit",
         f"{result['namespace_clone_p50_ms']:.2f}", f"{pct(ns_floor['clone'], 0.99):.2f}",
         str(args.floor)),
        ("namespace floor: ... + mounts, pivot_root, setuid",
         f"{result['namespace_floor_p50_ms']:.2f}", f"{pct(ns_floor['sandbox'], 0.99):.2f}",
         str(args.floor)),
        ("pre-forked Python floor: wake, import, reply (no isolation)",
         f"{result['prefork_floor_p50_ms']:.2f}", f"{result['prefork_floor_p99_ms']:.2f}",
         n),
        ("cold: start() + first invoke (stem cells)", f"{result['cold_p50_ms']:.2f}",
         f"{result['cold_p99_ms']:.2f}", n),
        ("cold: start() alone (stem cells)", f"{result['cold_start_only_p50_ms']:.2f}",
         f"{result['cold_start_only_p99_ms']:.2f}", n),
        ("cold: start() + first invoke (zygote fork)", f"{result['cold_zygote_p50_ms']:.2f}",
         f"{result['cold_zygote_p99_ms']:.2f}", n),
        ("cold: start() alone (zygote fork)", f"{result['cold_zygote_start_only_p50_ms']:.2f}",
         f"{pct(direct['start'], 0.99):.2f}", n),
        ("warm invoke", f"{result['warm_p50_ms']:.3f}", f"{result['warm_p99_ms']:.3f}", w),
        ("init duration (handler import)", f"{result['init_duration_p50_ms']:.3f}", "", n),
    ])
    print(f"cold p50 / floor p50 = {result['ratio_cold_p50_to_floor']}x "
          f"(zygote fork only: {result['ratio_cold_zygote_p50_to_floor']}x); "
          f"served by: {result['served_by']}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    asyncio.run(main())
