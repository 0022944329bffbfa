"""Warm and cold invokes of fixed workloads beyond hello, each beside the same work done
in-process, and cold start latency against the number of cold starts at once.

The workloads (handlers in ``WORKLOADS``; their events in ``event()``):

* ``hello``  returns a small dict (no work): the invoke path's own cost;
* ``json``   the event is a 100 KB JSON document (500 records); the handler adds a field
             to every record and returns it: 100 KB parsed and re-serialised each way;
* ``cpu``    10,000 chained SHA-256 rounds over 32 bytes;
* ``memory`` allocates 64 MiB (a bytearray) and writes one byte in every 4 KiB page.

Functions get MemorySize 1769 MB: one full vCPU, so no CPU cap slows the work.

Measured in one run, in this process (``SandboxManager`` directly, as coldstart.py):

* warm invokes of each workload in one environment: p50/p99, beside the baseline: the
  same handler called in a plain interpreter of the same runtime, with the event parsed
  and the result serialised as the runtime does (so the ratio is what the sandboxed
  invoke path adds to the work itself); the two run in interleaved chunks;
* cold starts (``start()`` + first invoke, stem cells on) of each workload, beside the
  fork floor (fork + exit + wait of this process);
* the concurrency curve: k cold starts of hello at once (k = 1, 2, 4, 8, 16), p50/p99
  of each start's latency, repeated until at least ``--curve-samples`` starts per k,
  each burst once the stem-cell pool has been refilled (with the server's settings: 2
  cells, grown after a burst to what it took, up to 8).

Writes ``bench/results/workloads.json``. Needs root (namespace isolation).
Usage: ``python bench/workloads.py [--warm 300] [--cold 30] [--curve-samples 48]``.
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
import subprocess
import tempfile
import time
import uuid

from bench.common import fork_floor, pct, runtime_interpreter, table, write_code

from nimbus.config import Config
from nimbus.sandbox import EnvironmentSpec, Invocation, SandboxManager

RESULTS = Path(__file__).parent / "results" / "workloads.json"
ARN = "arn:aws:lambda:us-east-1:000000000000:function:"
SHA_ROUNDS = 10_000
MEMORY_BYTES = 64 * 1024 * 1024
# One full vCPU (nimbus caps CPU by MemorySize, as Lambda does: 1769 MB per vCPU), so the
# ratios to the in-process baseline are the invoke path's cost, not a CPU cap.
MEMORY_MB = 1769
WORKLOADS = {
    "hello": "def handler(event, context):\n    return {'hello': event.get('name')}\n",
    "json": (
        "def handler(event, context):\n"
        "    for record in event['records']:\n"
        "        record['seen'] = True\n"
        "    return event\n"
    ),
    "cpu": (
        "import hashlib\n"
        "def handler(event, context):\n"
        "    digest = b'nimbus' * 5 + b'!!'\n"
        f"    for _ in range({SHA_ROUNDS}):\n"
        "        digest = hashlib.sha256(digest).digest()\n"
        "    return {'digest': digest.hex()}\n"
    ),
    "memory": (
        "def handler(event, context):\n"
        f"    block = bytearray({MEMORY_BYTES})\n"
        f"    for i in range(0, {MEMORY_BYTES}, 4096):\n"
        "        block[i] = 1\n"
        "    return {'bytes': len(block)}\n"
    ),
}
# The in-process baseline: the handler called in a plain interpreter, event parsed and
# result serialised per call (what the runtime does around the handler), in ms.
IN_PROCESS = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import app
payload, n = sys.stdin.buffer.read(), int(sys.argv[2])
times = []
for _ in range(n):
    t0 = time.perf_counter()
    json.dumps(app.handler(json.loads(payload), None)).encode()
    times.append((time.perf_counter() - t0) * 1000)
print(json.dumps(times))
"""


def event(workload: str) -> bytes:
    """The fixed event of a workload: 100 KB of records for json, a name otherwise."""
    if workload != "json":
        return b'{"name": "bench"}'
    records = [{"id": i, "name": f"item-{i:05d}", "tags": ["a", "b", "c"], "price": i * 1.25,
                "text": "x" * 120} for i in range(500)]
    return json.dumps({"records": records}).encode()


def _invocation(workload: str, arn: str) -> Invocation:
    return Invocation(str(uuid.uuid4()), event(workload), int((time.time() + 30) * 1000), arn)


def _spec(workload: str, code: Path, runtime: str) -> EnvironmentSpec:
    return EnvironmentSpec(function_name=workload, version="$LATEST",
                           function_arn=ARN + workload, runtime=runtime,
                           handler="app.handler", code_dir=code, memory_mb=MEMORY_MB, timeout_s=30)


async def _first(manager: SandboxManager, spec: EnvironmentSpec) -> float:
    """One cold start (start() + first invoke), stopped afterwards; ms."""
    t0 = time.perf_counter()
    env = await manager.start(spec)
    outcome = await env.invoke(_invocation(spec.function_name, spec.function_arn))
    elapsed = (time.perf_counter() - t0) * 1000
    assert outcome.function_error is None, outcome.payload
    await env.stop()
    return elapsed


async def warm(manager: SandboxManager, spec: EnvironmentSpec, interpreter: str, n: int,
               chunks: int = 5) -> tuple[list[float], list[float]]:
    """``n`` warm invokes of one environment and ``n`` in-process calls, in interleaved
    chunks (the host's load changes by the second): (warm ms, in-process ms)."""
    env = await manager.start(spec)
    times: list[float] = []
    baseline: list[float] = []
    try:
        for chunk in range(chunks):
            baseline += in_process(interpreter, spec.code_dir, spec.function_name,
                                   n // chunks)
            for i in range(n // chunks + (5 if chunk == 0 else 0)):
                inv = _invocation(spec.function_name, spec.function_arn)
                t0 = time.perf_counter()
                outcome = await env.invoke(inv)
                if chunk or i >= 5:  # the very first few are not counted
                    times.append((time.perf_counter() - t0) * 1000)
                assert outcome.function_error is None, outcome.payload
    finally:
        await env.stop()
    return times, baseline


def in_process(interpreter: str, code: Path, workload: str, n: int) -> list[float]:
    out = subprocess.run([interpreter, "-c", IN_PROCESS, str(code), str(n + 5)],
                         input=event(workload), capture_output=True, check=True).stdout
    return list(json.loads(out))[5:]


async def concurrent_cold(manager: SandboxManager, spec: EnvironmentSpec, k: int,
                          samples: int) -> list[float]:
    """Latencies of cold starts made k at a time, at least ``samples`` of them."""
    times: list[float] = []
    while len(times) < samples:
        # The pool as a burst after a quiet spell finds it: refilled, and its new cells
        # through their idle-priority preparation (nothing announces its end).
        await manager.refilled(spec)
        await asyncio.sleep(0.5)
        times += await asyncio.gather(*(_first(manager, spec) for _ in range(k)))
    return times


def _stats(times: list[float]) -> dict[str, float]:
    return {"p50_ms": round(statistics.median(times), 3), "p99_ms": round(pct(times, 0.99), 3),
            "n": len(times)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", default="python3.12")
    parser.add_argument("--warm", type=int, default=300, help="warm invokes per workload")
    parser.add_argument("--cold", type=int, default=30, help="cold starts per workload")
    parser.add_argument("--curve-samples", type=int, default=48,
                        help="cold starts per concurrency level")
    parser.add_argument("--levels", default="1,2,4,8,16", help="cold starts at once")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/workloads.py needs root (namespace isolation)")
    interpreter = runtime_interpreter(args.runtime)
    floor = fork_floor(200)
    result: dict = {"runtime": args.runtime, "sha256_rounds": SHA_ROUNDS,
                    "memory_bytes": MEMORY_BYTES, "json_event_bytes": len(event("json")),
                    "fork_floor": _stats(floor), "workloads": {}, "concurrent_cold": {}}
    with tempfile.TemporaryDirectory(prefix="nimbus-bench-") as tmp:
        base = Path(tmp)
        base.chmod(0o755)
        # The server's stem-cell settings (a pool grows after a burst of cold starts).
        defaults = Config()
        manager = SandboxManager(base / "work", uid_count=256, stem_cells=defaults.stem_cells,
                                 stem_cells_burst=defaults.stem_cells_burst)
        try:
            await manager.warm_up([args.runtime])
            for name, source in WORKLOADS.items():
                code = write_code(base / name, source)
                spec = _spec(name, code, args.runtime)
                warm_times, baseline = await warm(manager, spec, interpreter, args.warm)
                await _first(manager, spec)  # teach the stem-cell pool what is in demand
                await asyncio.sleep(0.3)
                cold_times = []
                for _ in range(args.cold):  # each finding its stem cells refilled
                    await manager.refilled(spec)
                    cold_times.append(await _first(manager, spec))
                w, b, c = _stats(warm_times), _stats(baseline), _stats(cold_times)
                result["workloads"][name] = {
                    "warm": w, "in_process": b, "cold": c,
                    "warm_p50_vs_in_process": round(w["p50_ms"] / b["p50_ms"], 2),
                    "warm_overhead_p50_ms": round(w["p50_ms"] - b["p50_ms"], 3),
                    "cold_p50_vs_fork_floor": round(c["p50_ms"] / result["fork_floor"]["p50_ms"],
                                                    2),
                }
            hello = _spec("hello", base / "hello", args.runtime)
            for k in (int(v) for v in args.levels.split(",")):
                times = await concurrent_cold(manager, hello, k, max(k, args.curve_samples))
                result["concurrent_cold"][str(k)] = _stats(times)
        finally:
            await manager.close()

    rows: list[tuple[str, ...]] = [("fork floor", f"{result['fork_floor']['p50_ms']:.2f}",
             f"{result['fork_floor']['p99_ms']:.2f}", "", "")]
    for name, r in result["workloads"].items():
        rows.append((f"{name}: warm invoke", f"{r['warm']['p50_ms']:.3f}",
                     f"{r['warm']['p99_ms']:.3f}", f"{r['in_process']['p50_ms']:.3f}",
                     f"{r['warm_p50_vs_in_process']}x"))
        rows.append((f"{name}: cold start + first invoke", f"{r['cold']['p50_ms']:.2f}",
                     f"{r['cold']['p99_ms']:.2f}", f"{result['fork_floor']['p50_ms']:.2f}",
                     f"{r['cold_p50_vs_fork_floor']}x"))
    for k, r in result["concurrent_cold"].items():
        rows.append((f"hello: {k} cold starts at once", f"{r['p50_ms']:.2f}",
                     f"{r['p99_ms']:.2f}", "", ""))
    table("workloads: warm and cold invokes (ms)",
          ("measurement", "p50", "p99", "baseline p50", "ratio"), rows)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    asyncio.run(main())
