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

Writes ``bench/results/density.json``. Needs root (namespace isolation).
Usage: ``python bench/density.py [--counts 10,100,500]``.
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
import statistics
import tempfile

from bench.common import HELLO, invocation, table, write_code

from nimbus.sandbox import Environment, EnvironmentSpec, SandboxManager

RESULTS = Path(__file__).parent / "results" / "density.json"
GIB = 1024**3
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


def mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


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


def mib(n: float) -> str:
    return f"{n / 1048576:.2f}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", default="python3.12")
    parser.add_argument("--counts", default="10,100,500")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/density.py needs root (namespace isolation)")
    counts = [int(c) for c in args.counts.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="nimbus-bench-") as tmp:
        base = Path(tmp)
        base.chmod(0o755)
        spec = EnvironmentSpec(
            function_name="hello", version="$LATEST",
            function_arn="arn:aws:lambda:us-east-1:000000000000:function:hello",
            runtime=args.runtime, handler="app.handler", code_dir=write_code(base / "c", HELLO),
        )
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
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    asyncio.run(main())
