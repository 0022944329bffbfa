"""One nimbus server against two, as the front ends of one installation on this machine.

Both layouts share what a cluster shares: one PostgreSQL schema (``--postgres``), one
NATS JetStream stream (``--nats``) and one environment key; each server has its own
data dir (its node's disk). Layouts alternate (one, two, one, two, ...: ``--pairs``), so
the noise of this shared host falls on both. Per run:

  sync_per_s, sync p50/p99   warm synchronous Invoke (RequestResponse), the clients
                             split evenly over the servers
  url_per_s, url p50/p99     the same function through its function URL (GET)
  async accepted_per_s       async Invoke answered 202 (durably in JetStream)
  async executed_per_s       first async request until every event has run, on
                             whichever server pulled it
  cpu_us_per_request         CPU of every nimbus process (servers, async workers,
                             sandboxes) and of the load generator, per request

On one machine, a second server adds processes, not cores: with 2 cores shared by the
load generator, two servers can only spread the one server's single-core bottleneck
(the front door's event loop) over both cores; the CPU per request says what a second
front end costs. Prints a table; writes JSON to bench/results/cluster.json.

``--cluster``: both layouts in cluster mode (NIMBUS_CLUSTER=1: concurrency counted in
PostgreSQL). ``--cluster-ab``: one server without and with cluster mode instead, to
measure what counting concurrency across the cluster costs each invocation.

    .venv/bin/python bench/cluster.py [--pairs 3] [--sync 4000] [--events 6000]
                                      [--clients 32] [--cluster | --cluster-ab]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run from the repo root's view: this directory's http.py must not shadow the
# standard library's http package for the imports below.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import importlib
import json
import statistics
import tempfile
import time
from urllib.parse import urlsplit

import httpx
from bench.cpu import Snapshot
from tests.cluster.servers import front_end, shared_installation
from tests.nimbus_process import NimbusProcess

_async_bench = importlib.import_module("bench.async")  # "async" is a keyword
hammer, noop_zip, pct = _async_bench.hammer, _async_bench.noop_zip, _async_bench.pct

ROLE = "arn:aws:iam::000000000000:role/bench"
PATH = "/2015-03-31/functions/noop/invocations"


def cpu_seconds(before: list[Snapshot], after: list[Snapshot]) -> dict[str, float]:
    """CPU seconds by process kind between two snapshots of each server's tree; the
    load generator (this process) once."""
    spent: dict[str, float] = {}
    for b, a in zip(before, after, strict=True):
        for pid, (kind, seconds) in a.seconds.items():
            spent[kind] = spent.get(kind, 0.0) + seconds - b.seconds.get(pid, (kind, 0.0))[1]
    spent["load_generator"] = after[0].own - before[0].own
    return spent


def per_request(spent: dict[str, float], requests: int, before: Snapshot,
                after: Snapshot) -> dict[str, float]:  # fmt: skip
    """Microseconds of CPU per request by process kind, their nimbus total, and the share
    of the machine (both cores) that stayed idle meanwhile."""
    out = {k: round(v * 1e6 / max(1, requests), 1) for k, v in sorted(spent.items())}
    out["nimbus_total"] = round(
        sum(v for k, v in spent.items() if k != "load_generator") * 1e6 / max(1, requests), 1
    )
    ticks = max(1, after.total - before.total)
    out["idle_pct"] = round(100 * (after.idle - before.idle) / ticks, 1)
    return out


def snapshots(processes: list[NimbusProcess], servers: int) -> list[Snapshot]:
    """Each process tree's CPU; the worker nodes' (after the first ``servers``) labelled
    ``node`` (their own processes) and ``node_sandbox``."""
    found = [Snapshot.take(p.proc.pid) for p in processes if p.proc is not None]
    for snap in found[servers:]:
        snap.seconds = {pid: ("node" if kind in ("server", "worker") else f"node_{kind}", t)
                        for pid, (kind, t) in snap.seconds.items()}
    return found


async def split(servers: list[NimbusProcess], n: int, clients: int,
                headers: dict[str, str], path: str = PATH,
                ) -> tuple[list[float], int, float]:  # fmt: skip
    """``n`` requests from ``clients`` connections, spread evenly over the servers (a POST
    to Invoke with ``headers``; none: a GET of ``path``, a function URL)."""
    k = len(servers)
    start = time.perf_counter()
    parts = await asyncio.gather(*(
        hammer("127.0.0.1", s.port, path, n // k, max(1, clients // k), headers)
        for s in servers
    ))  # fmt: skip
    elapsed = time.perf_counter() - start
    return [x for lat, _, _ in parts for x in lat], sum(ok for _, ok, _ in parts), elapsed


async def succeeded(servers: list[NimbusProcess]) -> int:
    """Async events run to an end, summed over the servers' dispatchers."""
    total = 0
    async with httpx.AsyncClient() as http:
        for s in servers:
            counters = (await http.get(f"{s.endpoint}/_nimbus/queue")).json()["Dispatcher"]
            total += counters.get("succeeded", 0) + counters.get("dead_lettered", 0)
    return total


async def until_done(servers: list[NimbusProcess], target: int, timeout: float = 600) -> int:
    deadline = time.perf_counter() + timeout
    while (done := await succeeded(servers)) < target and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    return done


async def run(servers_n: int, workers_n: int, cluster: bool,
              args: argparse.Namespace) -> dict:
    """One measured run with ``servers_n`` servers and ``workers_n`` worker nodes on a
    fresh installation; the load goes to the servers."""
    cluster = cluster or workers_n > 0
    extra = {"NIMBUS_LOG_LEVEL": "warning", "NIMBUS_CLUSTER": "1" if cluster else "0"}
    with tempfile.TemporaryDirectory() as tmp, shared_installation(
        Path(tmp), extra=extra
    ) as env:  # fmt: skip
        servers = [front_end(Path(tmp), f"s{i}", env) for i in range(servers_n)]
        workers = [front_end(Path(tmp), f"w{i}", env) for i in range(workers_n)]
        for worker in workers:
            worker.command = "worker"
        every = servers + workers
        try:
            for process in every:
                process.start()
            await until_announced(servers[0], workers_n)
            first = servers[0].client()
            first.create_function(FunctionName="noop", Runtime="python3.12", Role=ROLE,
                                  Handler="app.handler", Code={"ZipFile": noop_zip()})
            url = first.create_function_url_config(FunctionName="noop", AuthType="NONE")
            url_path = urlsplit(url["FunctionUrl"]).path  # the same on every server
            sync = {"X-Amz-Invocation-Type": "RequestResponse"}
            event = {"X-Amz-Invocation-Type": "Event"}
            # Warm: environments up on every node, for every path.
            await split(servers, args.clients * 4, args.clients, sync)
            await split(servers, args.clients * 4, args.clients, {}, url_path)
            _, warm, _ = await split(servers, args.clients * 20, args.clients, event)
            base = await until_done(every, warm)

            sync_result = await measured(servers, every, args, sync, PATH)
            url_result = await measured(servers, every, args, {}, url_path)

            start = time.perf_counter()
            cpu2 = snapshots(every, len(servers))
            _, accepted, accept_s = await split(servers, args.events, args.clients, event)
            done = await until_done(every, base + accepted) - base
            drained = time.perf_counter() - start
            cpu3 = snapshots(every, len(servers))
            async_result = {
                "accepted_per_s": round(accepted / accept_s, 1),
                "executed_per_s": round(done / drained, 1),
                "accepted": accepted,
                "lost": accepted - done,
                "cpu_us_per_event": per_request(
                    cpu_seconds(cpu2, cpu3), accepted, cpu2[0], cpu3[0]
                ),
            }
        finally:
            for process in every:
                process.stop()
    return {"servers": servers_n, "workers": workers_n, "cluster": cluster,
            "sync": sync_result, "url": url_result, "async": async_result}


async def measured(servers: list[NimbusProcess], every: list[NimbusProcess],
                   args: argparse.Namespace, headers: dict[str, str], path: str) -> dict:
    """``args.sync`` warm requests (see ``split``): rate, latency and CPU per request."""
    cpu0 = snapshots(every, len(servers))
    lat, ok, elapsed = await split(servers, args.sync, args.clients, headers, path)
    cpu1 = snapshots(every, len(servers))
    return {
        "per_s": round(ok / elapsed, 1),
        "p50_ms": round(statistics.median(lat), 2),
        "p99_ms": round(pct(lat, 0.99), 2),
        "ok": ok,
        "cpu_us_per_request": per_request(cpu_seconds(cpu0, cpu1), ok, cpu0[0], cpu1[0]),
    }


async def until_announced(server: NimbusProcess, workers: int, timeout: float = 60) -> None:
    """Until ``server`` sees every worker node (none: at once)."""
    deadline = time.perf_counter() + timeout
    async with httpx.AsyncClient() as http:
        while workers and time.perf_counter() < deadline:
            nodes = (await http.get(f"{server.endpoint}/_nimbus/cluster")).json()["Nodes"]
            if len(nodes) >= workers:
                return
            await asyncio.sleep(0.1)


def flat(values: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out |= flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=3, help="one/two runs, alternated")
    parser.add_argument("--sync", type=int, default=4000, help="warm sync invokes per run")
    parser.add_argument("--events", type=int, default=6000, help="async invokes per run")
    parser.add_argument("--clients", type=int, default=32)
    mode = parser.add_mutually_exclusive_group()
    parser.add_argument("--layouts", default="1:0,2:0",
                        help="SERVERS:WORKERS,...: e.g. 1:0,1:1,1:2,1:3 (workers imply "
                             "cluster mode)")
    mode.add_argument("--cluster", action="store_true", help="every layout in cluster mode")
    mode.add_argument("--cluster-ab", action="store_true",
                      help="one server, cluster mode off vs on")
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).parent / "results" / "cluster.json"
    )
    args = parser.parse_args()
    if args.cluster_ab:
        variants = [(1, 0, False), (1, 0, True)]
    else:
        variants = [(int(n), int(w), args.cluster) for n, _, w in
                    (spec.partition(":") for spec in args.layouts.split(","))]
    names = [f"{n}s{'+' + str(w) + 'w' if w else ''}{' cluster' if c or w else ''}"
             for n, w, c in variants]
    runs: list[dict] = []
    for pair in range(args.pairs):
        order = list(range(len(variants)))
        shift = pair % len(order)  # each variant first in turn: the host's drift spreads
        for index in order[shift:] + order[:shift]:
            servers_n, workers_n, cluster = variants[index]
            runs.append(await run(servers_n, workers_n, cluster, args)
                        | {"variant": names[index]})
            print(f"pair {pair + 1}: {names[index]} done", file=sys.stderr)
    rows = {name: [flat(r) for r in runs if r["variant"] == name] for name in names}
    keys = [k for k in rows[names[0]][0]
            if k not in ("servers", "workers", "cluster", "variant")]
    keys += sorted({k for got in rows.values() for k in got[0]} - set(keys)
                   - {"servers", "workers", "cluster", "variant"})
    medians = {
        name: {k: statistics.median(float(r.get(k, 0)) for r in got) for k in keys}  # type: ignore[arg-type]
        for name, got in rows.items()
    }
    width = max(len(k) for k in keys)
    print(f"{'metric (median of ' + str(args.pairs) + ')':<{width}}  "
          + "  ".join(f"{n:>16}" for n in names) + f"  {'vs 1st':>7}")
    for key in keys:
        values = [medians[n][key] for n in names]
        ratio = f"{values[-1] / values[0]:.2f}" if values[0] else "-"
        print(f"{key:<{width}}  " + "  ".join(f"{v:>16g}" for v in values) + f"  {ratio:>7}")
    out = args.output
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "args": vars(args) | {"output": str(args.output)},
        "median": medians,
        "runs": runs,
    }, indent=2) + "\n")  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    asyncio.run(main())
