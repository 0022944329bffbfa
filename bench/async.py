"""Async invoke throughput on the embedded queue (or NATS JetStream: --queue), in one run.

Starts a real nimbus, creates a no-op function, runs a warm-up batch (so the worker's
environments are up: "sustained" throughput), then enqueues N events from concurrent
HTTP clients (raw Invoke with X-Amz-Invocation-Type: Event) and measures:

  accepted_per_s   events answered 202 per second (each durably queued first)
  enqueue p50/p99  latency of one async Invoke request
  executed_per_s   events run to completion per second, first enqueue to empty queue
  lost             accepted events that neither succeeded nor landed in a dead letter
  accept_only, drain_only  the same two halves apart (N more events accepted with the
                   async workers stopped, then drained from the full queue): per_s and
                   CPU per event of each

Baseline in the same run: the same clients against nimbus' /health (one store ping,
no queue), so the ratio shows what durable queueing costs on this machine.

    .venv/bin/python bench/async.py [--events 20000] [--clients 64] [--parallelism N]
                                    [--workers 1] [--warmup 3000]
                                    [--queue sqlite --queue nats://127.0.0.1:4222]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run from the repo root's view: this directory's http.py must not shadow the
# standard library's http package for the imports below.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import io
import json
import os
import signal
import statistics
import tempfile
import time
import zipfile

import httpx
from bench.cpu import Snapshot
from tests.nimbus_process import NimbusProcess

from nimbus.config import default_async_parallelism

ROLE = "arn:aws:iam::000000000000:role/bench"


def noop_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", "def handler(event, context):\n    return None\n")
    return buf.getvalue()


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> int:
    """One HTTP/1.1 keep-alive request; returns the status. A bare client, so that the
    load generator (sharing this machine's cores) costs far less than the server."""
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def hammer(
    host: str,
    port: int,
    path: str,
    n: int,
    clients: int,
    headers: dict[str, str],
    payload_bytes: int = 0,
) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    accepted = 0
    counter = iter(range(n))
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())

    async def worker() -> None:
        nonlocal accepted
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for i in counter:
                body = json.dumps({"i": i}).encode() if headers else b""
                if body and payload_bytes > len(body):  # padded to the payload size
                    pad = payload_bytes - len(json.dumps({"i": i, "pad": ""}))
                    body = json.dumps({"i": i, "pad": "x" * pad}).encode()
                method = "POST" if headers else "GET"
                raw = (
                    f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra}"
                    f"Content-Length: {len(body)}\r\n\r\n"
                ).encode() + body
                t0 = time.perf_counter()
                status = await _request(reader, writer, raw)
                latencies.append((time.perf_counter() - t0) * 1000)
                if status in (200, 202):
                    accepted += 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies, accepted, time.perf_counter() - start


async def finished(endpoint: str, target: int, drain: bool = False) -> int:
    """Events run to an end so far (succeeded or dead-lettered): with ``drain``, once the
    queue is empty; then until ``target`` are reported (workers report every half
    second), for at most 3 s more."""
    async with httpx.AsyncClient() as http:
        while drain:
            stats = (await http.get(f"{endpoint}/_nimbus/queue")).json()
            if stats["Queue"]["depth"] == 0:
                break
            await asyncio.sleep(0.05)
        settle_until = time.perf_counter() + 3
        while True:
            counters = (await http.get(f"{endpoint}/_nimbus/queue")).json()["Dispatcher"]
            done = counters.get("succeeded", 0) + counters.get("dead_lettered", 0)
            if done >= target or time.perf_counter() > settle_until:
                return done
            await asyncio.sleep(0.1)


async def accept_then_drain(
    server: NimbusProcess,
    path: str,
    n: int,
    clients: int,
    done_before: int,
    payload_bytes: int = 0,
) -> dict[str, dict]:
    """The two halves of the work apart: N more events accepted while the async workers
    are stopped (SIGSTOP), then drained from a full queue once they continue; events/s
    and CPU per event of each. The main figures run both at once, sharing the cores."""
    workers = [
        pid for pid, (kind, _) in Snapshot.take(server.proc.pid).seconds.items()
        if kind == "worker"
    ]  # fmt: skip
    event = {"X-Amz-Invocation-Type": "Event"}
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    try:
        cpu0 = Snapshot.take(server.proc.pid)
        _, accepted, elapsed = await hammer(
            "127.0.0.1", server.port, path, n, clients, event, payload_bytes
        )
        cpu1 = Snapshot.take(server.proc.pid)
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
    start = time.perf_counter()
    await finished(server.endpoint, 0, drain=True)
    drained = time.perf_counter() - start
    cpu2 = Snapshot.take(server.proc.pid)
    done = await finished(server.endpoint, done_before + accepted) - done_before
    return {
        "accept_only": {
            "per_s": round(accepted / elapsed, 1),
            "cpu_us_per_event": cpu0.per_event(cpu1, accepted),
        },
        "drain_only": {
            "per_s": round(done / drained, 1),
            "cpu_us_per_event": cpu1.per_event(cpu2, done),
            "lost": accepted - done,
        },
    }


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def queue_env(queue: str) -> dict[str, str]:
    return {} if queue == "sqlite" else {"NIMBUS_QUEUE_URL": queue}


async def delete_stream(queue_url: str) -> None:
    import nats

    server, stream = queue_url.rsplit("/", 1)
    nc = await nats.connect(server)
    try:
        await nc.jetstream().delete_stream(stream)
    except nats.js.errors.NotFoundError:
        pass
    finally:
        await nc.close()


async def run(args: argparse.Namespace, parallelism: int, queue: str) -> dict:
    """One nimbus on ``queue`` ("sqlite", or a nats:// URL), measured as the docstring says."""
    with tempfile.TemporaryDirectory() as tmp:
        server = NimbusProcess(
            Path(tmp) / "data",
            env={
                "NIMBUS_LOG_LEVEL": "warning",
                "NIMBUS_ASYNC_WORKERS": str(args.workers),
                "NIMBUS_ASYNC_PARALLELISM": str(parallelism),
                **queue_env(queue),
            },
        ).start()
        try:
            lam = server.client()
            lam.create_function(
                FunctionName="noop",
                Runtime="python3.12",
                Role=ROLE,
                Handler="app.handler",
                Code={"ZipFile": noop_zip()},
            )
            lam.invoke(FunctionName="noop")  # warm one environment

            host, port = "127.0.0.1", server.port
            base_lat, _, base_elapsed = await hammer(
                host, port, "/health", min(args.events, 5000), args.clients, {}
            )
            baseline_per_s = len(base_lat) / base_elapsed

            path = "/2015-03-31/functions/noop/invocations"
            event = {"X-Amz-Invocation-Type": "Event"}
            before = 0
            if args.warmup:
                # Sustained means warm: bring up the worker's environments first.
                _, warm, _ = await hammer(host, port, path, args.warmup, args.clients, event)
                before = await finished(server.endpoint, warm, drain=True)
            start = time.perf_counter()
            cpu_before = Snapshot.take(server.proc.pid)
            n, clients = args.events, args.clients
            lat, accepted, elapsed = await hammer(
                host, port, path, n, clients, event, args.payload_bytes
            )
            await finished(server.endpoint, 0, drain=True)
            drained = time.perf_counter() - start
            cpu = cpu_before.per_event(Snapshot.take(server.proc.pid), accepted)
            done = await finished(server.endpoint, before + accepted) - before
            phases: dict[str, dict] = {}
            if args.workers:
                phases = await accept_then_drain(
                    server, path, n, clients, before + done, args.payload_bytes
                )
        finally:
            server.stop()

    return {
        "queue": queue,
        "events": args.events,
        "warmup_events": args.warmup,
        "clients": args.clients,
        "payload_bytes": args.payload_bytes,
        "async_parallelism": parallelism,
        "async_workers": args.workers,
        "accepted": accepted,
        "accepted_per_s": round(accepted / elapsed, 1),
        "executed_per_s": round(done / drained, 1),
        "enqueue_p50_ms": round(statistics.median(lat), 2),
        "enqueue_p99_ms": round(pct(lat, 0.99), 2),
        "lost": accepted - done,
        "baseline_health_per_s": round(baseline_per_s, 1),
        "accepted_vs_baseline": round((accepted / elapsed) / baseline_per_s, 3),
        # From the first enqueue until the queue is empty; all processes on the machine
        # share its cores, so these say where the time per event goes.
        "cpu_us_per_event": cpu,
        **phases,
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument(
        "--parallelism", type=int, help="async_parallelism (default: nimbus' own, 8 per CPU)"
    )
    parser.add_argument("--workers", type=int, default=1, help="async_workers (0: in-process)")
    parser.add_argument(
        "--warmup", type=int, default=3000, help="events run first, unmeasured (0: cold start)"
    )
    parser.add_argument(
        "--payload-bytes", type=int, default=0, help="pad each event's JSON to this size"
    )
    parser.add_argument(
        "--queue", action="append",
        help='the queue backend: "sqlite" (embedded, the default) or a NATS URL '
        "(nats://127.0.0.1:4222, a stream of its own); repeat to compare in one run",
    )  # fmt: skip
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).parent / "results" / "async.json"
    )
    args = parser.parse_args()
    parallelism = args.parallelism or default_async_parallelism()

    results = {}
    for queue in args.queue or ["sqlite"]:
        label = "sqlite" if queue == "sqlite" else "nats"
        if queue != "sqlite":  # a stream of its own, deleted afterwards
            queue = f"{queue.rstrip('/')}/NIMBUS_BENCH_{os.getpid()}"
        try:
            results[label] = await run(args, parallelism, queue)
        finally:
            if queue != "sqlite":
                await delete_stream(queue)
    # One queue: its metrics as before; several: one column (and JSON object) each.
    result = next(iter(results.values())) if len(results) == 1 else results
    rows = {label: dict(flat(r)) for label, r in results.items()}
    keys = list(next(iter(rows.values())))
    width = max(len(k) for k in keys)
    heads = ["value"] if len(rows) == 1 else list(rows)
    col = max(12, *(len(str(v)) for row in rows.values() for k, v in row.items() if k != "queue"))
    print(f"{'metric':<{width}}  " + "  ".join(f"{h:>{col}}" for h in heads))
    for key in keys:
        cells = (f"{row.get(key)!s:>{col}}" for row in rows.values())
        print(f"{key:<{width}}  " + "  ".join(cells))
    out = args.output
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


def flat(values: dict, prefix: str = "") -> list[tuple[str, object]]:
    """``{"a": {"b": 1}}`` as ``[("a.b", 1)]``, for the table."""
    out: list[tuple[str, object]] = []
    for key, value in values.items():
        if isinstance(value, dict):
            out += flat(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out


if __name__ == "__main__":
    asyncio.run(main())
