"""Measure the SQLite queue: puts/s from N concurrent producers, then lease+ack/s, then
both at once. Not a test (no timing assertions); run it by hand:

    .venv/bin/python bench/queue_throughput.py [--events 20000] [--payload 512]

Writes bench/results/queue_throughput.json.
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
import tempfile
import time

from nimbus.queue.backend import QueueBackend, QueuedEvent
from nimbus.queue.backends.sqlite import SqliteQueue


def event(i: int, payload: bytes) -> QueuedEvent:
    return QueuedEvent("bench", None, payload, f"req-{i}", trace_id=f"Root=1-{i:08x}")


async def produce(queue: QueueBackend, total: int, producers: int, payload: bytes) -> float:
    async def producer(k: int) -> None:
        for i in range(k, total, producers):
            await queue.put(event(i, payload))

    start = time.perf_counter()
    await asyncio.gather(*(producer(k) for k in range(producers)))
    return total / (time.perf_counter() - start)


async def consume(queue: QueueBackend, total: int, parallelism: int) -> float:
    """As the dispatcher does: lease what is free, ack each as its own task."""
    done = 0
    start = time.perf_counter()
    running: set[asyncio.Task[bool]] = set()
    while done < total:
        free = parallelism - len(running)
        leases = await queue.lease(free, 60) if free > 0 else []
        for lease in leases:
            task = asyncio.create_task(queue.ack(lease))
            running.add(task)
        if not leases and not running:
            await queue.wait_for_work(1)
            continue
        if running:
            finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            running -= finished
            done += len(finished)
    return total / (time.perf_counter() - start)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--payload", type=int, default=512)
    args = parser.parse_args()
    payload = b"x" * args.payload
    result: dict[str, float] = {"events": args.events, "payload_bytes": args.payload}
    with tempfile.TemporaryDirectory() as tmp:
        queue = SqliteQueue(Path(tmp) / "queue.db")
        await queue.open()
        for producers in (1, 16, 64, 256):
            rate = await produce(queue, args.events, producers, payload)
            print(f"put            {producers:4d} producers   {rate:9,.0f} events/s")
            result[f"put_per_s_{producers}_producers"] = round(rate)
        depth = (await queue.stats()).depth
        for parallelism in (64,):
            rate = await consume(queue, depth, parallelism)
            print(f"lease+ack      parallelism {parallelism:3d}  {rate:9,.0f} events/s")
            result["lease_ack_per_s"] = round(rate)
        # Steady state: producers and a consumer at once, as in a running server.
        start = time.perf_counter()
        await asyncio.gather(
            produce(queue, args.events, 64, payload), consume(queue, args.events, 64)
        )
        rate = args.events / (time.perf_counter() - start)
        print(f"put + lease+ack  64 producers, 64 parallel  {rate:9,.0f} events/s each way")
        result["steady_per_s"] = round(rate)
        await queue.close()
    out = Path(__file__).parent / "results" / "queue_throughput.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    asyncio.run(main())
