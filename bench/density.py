"""Unique memory per idle warm environment against the number of environments.

For each N (10, 100, 500 by default): N environments of a hello function are started
(cold starts, stem cells on), each invoked once, then left idle for a second; then,
for every environment's process, ``/proc/<pid>/smaps_rollup`` gives

* USS: Private_Clean + Private_Dirty, memory that process alone holds (freed when it
  stops);
* PSS: its proportional share, i.e. USS plus each shared page divided by its sharers
  (pages shared with the zygote and the other environments: the interpreter, imports);

and the host's MemAvailable before the starts and with all N idle gives the marginal
cost per environment as the kernel sees it (page tables, cgroups, kernel stacks
included; noisy on a shared host). The estimate of the most warm environments a 24 GiB
machine holds is 24 GiB less 1 GiB for the host and nimbus, divided by the larger of
the median PSS and the MemAvailable cost per environment.

``--fill`` measures the largest count instead of estimating it: environments are
started 8 at a time until the host's MemAvailable falls below ``--reserve-gib`` (2 GiB
by default, left to the host, its services and nimbus) or the uid limit is reached; the
count held then, the time it took and the memory per environment are reported, and all
are stopped. It takes minutes and brings the host near its memory limit: not part of
``make bench``; run it alone.

Writes ``bench/results/density.json`` (``--fill``: ``density_fill.json``). Needs root
(namespace isolation). Usage: ``python bench/density.py [--counts 10,100,500] [--fill]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This directory's http.py must not shadow the standard library's http package.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import json
import os
import resource
import statistics
import tempfile
import time

from bench.common import HELLO, invocation, table, write_code

from nimbus.sandbox import Environment, EnvironmentSpec, SandboxManager

RESULTS = Path(__file__).parent / "results" / "density.json"
GIB = 1024**3
# --fill stops with fewer descriptors left: a batch of 8 environments takes ~40, and
# stopping them all opens a few more.
DESCRIPTOR_ROOM = 256
MACHINE_BYTES = 24 * GIB
RESERVED_BYTES = 1 * GIB


def rollup(pid: int) -> dict[str, int]:
    """smaps_rollup of a process, in bytes."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                fields[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return fields


def meminfo(field: str) -> int:
    """A /proc/meminfo field (``MemAvailable``, ``MemTotal``...), in bytes."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/meminfo")


def mem_available() -> int:
    return meminfo("MemAvailable")


async def _started(manager: SandboxManager, spec: EnvironmentSpec) -> Environment:
    env = await manager.start(spec)
    outcome = await env.invoke(invocation(spec.function_arn))
    assert outcome.function_error is None, outcome.payload
    return env


async def measure(manager: SandboxManager, spec: EnvironmentSpec, n: int) -> dict:
    before = mem_available()
    envs: list[Environment] = []
    try:
        for _ in range(0, n, 8):  # a few at a time, as a burst of traffic would
            envs += await asyncio.gather(
                *(_started(manager, spec) for _ in range(min(8, n - len(envs)))))
        await asyncio.sleep(1)  # idle: whatever the first invoke left behind settles
        rollups = [rollup(env.pid) for env in envs]
        after = mem_available()
    finally:
        await asyncio.gather(*(env.stop() for env in envs))
    uss = [r.get("Private_Clean", 0) + r.get("Private_Dirty", 0) for r in rollups]
    pss = [r.get("Pss", 0) for r in rollups]
    rss = [r.get("Rss", 0) for r in rollups]
    marginal = max(0, before - after) / n
    per_env = max(statistics.median(pss), marginal)
    return {
        "environments": n,
        "uss_median_bytes": int(statistics.median(uss)),
        "uss_max_bytes": max(uss),
        "pss_median_bytes": int(statistics.median(pss)),
        "pss_mean_bytes": int(statistics.mean(pss)),
        "rss_median_bytes": int(statistics.median(rss)),
        "mem_available_drop_per_env_bytes": int(marginal),
        "estimated_max_on_24gib": int((MACHINE_BYTES - RESERVED_BYTES) / per_env),
    }


def _descriptors_left() -> int:
    """How many more descriptors this process may open (soft limit less those open)."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0] - len(os.listdir("/proc/self/fd"))


async def fill(manager: SandboxManager, spec: EnvironmentSpec, reserve: int,
               limit: int) -> dict:
    """Start environments until MemAvailable < ``reserve``, ``limit`` are held, or the
    process's descriptors run short (each environment holds ~5 in the server)."""
    before = mem_available()
    descriptors_before = _descriptors_left()
    started = time.monotonic()
    envs: list[Environment] = []
    stopped_by = "uid limit"
    try:
        while len(envs) < limit:
            if mem_available() < reserve:
                stopped_by = "MemAvailable reserve"
                break
            if _descriptors_left() < DESCRIPTOR_ROOM:
                stopped_by = ("descriptor limit (RLIMIT_NOFILE "
                              f"{resource.getrlimit(resource.RLIMIT_NOFILE)[0]})")
                break
            envs += await asyncio.gather(
                *(_started(manager, spec) for _ in range(min(8, limit - len(envs)))))
        took = time.monotonic() - started
        await asyncio.sleep(1)
        sample = [rollup(env.pid) for env in envs[:: max(1, len(envs) // 200)]]
        after = mem_available()
        descriptors = descriptors_before - _descriptors_left()
        # Every environment answers again, from idle (all were warm at once).
        for env in envs[:: max(1, len(envs) // 100)]:
            outcome = await env.invoke(invocation(spec.function_arn))
            assert outcome.function_error is None, outcome.payload
    finally:
        await asyncio.gather(*(env.stop() for env in envs))
    n = len(envs)
    return {
        "environments_held": n,
        "stopped_by": stopped_by,
        "descriptors_per_env": round(descriptors / max(1, n), 2),
        "reserve_bytes": reserve,
        "mem_available_before_bytes": before,
        "mem_available_after_bytes": after,
        "mem_available_drop_per_env_bytes": int(max(0, before - after) / max(1, n)),
        "uss_median_bytes": int(statistics.median(
            r.get("Private_Clean", 0) + r.get("Private_Dirty", 0) for r in sample)),
        "pss_median_bytes": int(statistics.median(r.get("Pss", 0) for r in sample)),
        "seconds_to_start": round(took, 1),
    }


def hello(base: Path, runtime: str) -> EnvironmentSpec:
    """The hello function, its code under ``base`` (made traversable for the sandboxes)."""
    base.chmod(0o755)
    return EnvironmentSpec(
        function_name="hello", version="$LATEST",
        function_arn="arn:aws:lambda:us-east-1:000000000000:function:hello",
        runtime=runtime, handler="app.handler", code_dir=write_code(base / "c", HELLO),
    )


def write(output: Path, result: dict) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {output}")


def mib(n: float) -> str:
    return f"{n / 1048576:.2f}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", default="python3.12")
    parser.add_argument("--counts", default="10,100,500")
    parser.add_argument("--output", type=Path)
    parser.add_argument("--fill", action="store_true",
                        help="start environments until memory runs short (see above)")
    parser.add_argument("--reserve-gib", type=float, default=2.0)
    parser.add_argument("--max", type=int, default=20000, help="--fill: at most this many")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/density.py needs root (namespace isolation)")
    if args.fill:
        await main_fill(args)
        return
    counts = [int(c) for c in args.counts.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="nimbus-bench-") as tmp:
        base = Path(tmp)
        spec = hello(base, args.runtime)
        manager = SandboxManager(base / "work", uid_count=max(counts) + 64)
        try:
            await manager.warm_up([args.runtime])
            for n in counts:
                rows.append(await measure(manager, spec, n))
        finally:
            await manager.close()
    result = {"runtime": args.runtime, "machine_bytes": MACHINE_BYTES,
              "reserved_bytes": RESERVED_BYTES, "by_count": rows}
    table("idle warm environments: memory per environment (MiB)",
          ("environments", "USS p50", "PSS p50", "RSS p50", "MemAvailable drop / env",
           "est. max on 24 GiB"),
          [(str(r["environments"]), mib(r["uss_median_bytes"]), mib(r["pss_median_bytes"]),
            mib(r["rss_median_bytes"]), mib(r["mem_available_drop_per_env_bytes"]),
            str(r["estimated_max_on_24gib"])) for r in rows])
    write(args.output or RESULTS, result)


async def main_fill(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="nimbus-bench-") as tmp:
        base = Path(tmp)
        spec = hello(base, args.runtime)
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # as nimbus' server does
        manager = SandboxManager(base / "work", uid_count=args.max + 64)
        try:
            await manager.warm_up([args.runtime])
            result = await fill(manager, spec, int(args.reserve_gib * GIB), args.max)
        finally:
            await manager.close()
    result = {"runtime": args.runtime, "machine_total_bytes": meminfo("MemTotal"), **result}
    table("warm environments held at once in one process",
          ("environments", "stopped by", "MemAvailable before / after (GiB)",
           "drop / env (MiB)", "USS p50", "PSS p50", "seconds to start"),
          [(str(result["environments_held"]), result["stopped_by"],
            f"{result['mem_available_before_bytes'] / GIB:.1f} / "
            f"{result['mem_available_after_bytes'] / GIB:.1f}",
            mib(result["mem_available_drop_per_env_bytes"]), mib(result["uss_median_bytes"]),
            mib(result["pss_median_bytes"]), str(result["seconds_to_start"]))])
    write(args.output or RESULTS.with_name("density_fill.json"), result)


if __name__ == "__main__":
    asyncio.run(main())
