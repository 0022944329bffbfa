"""SQS domain throughput, in process, as an event source mapping uses it.

Over a fresh SQLite store (WAL, as ``nimbus up`` has it) and ``Queues`` exactly as
``Engine.open`` builds it, measures in one run:

  send          messages/s sent in batches of 10 (one transaction per batch)
  receive+delete messages/s received 10 at a time and deleted in batches of 10, from
                the full queue
  end_to_end    messages/s through the whole cycle with producers and consumers running
                at once (send batch -> receive -> delete batch), first send to empty queue

    .venv/bin/python bench/sqs.py [--messages 20000] [--producers 2] [--consumers 2]
                                  [--body 256]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import json
import os
import tempfile
import time

from nimbus.sqs.messages import Outgoing
from nimbus.sqs.queues import Queues
from nimbus.store.database import Database

RESULTS = Path(__file__).parent / "results" / "sqs.json"


async def produce(queues: Queues, name: str, count: int, body: str) -> None:
    for start in range(0, count, 10):
        batch = [Outgoing(body) for _ in range(min(10, count - start))]
        await queues.send_batch(name, batch)


async def consume(queues: Queues, name: str, done: list[int], total: int) -> None:
    while sum(done) < total:
        msgs = await queues.receive(name, max_messages=10, wait_seconds=1)
        if msgs:
            await queues.delete_batch(name, [m.receipt_handle for m in msgs])
            done.append(len(msgs))


async def run(args: argparse.Namespace) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="nimbus-bench-sqs-"))
    db = Database(f"sqlite:///{tmp / 'nimbus.db'}")
    db.migrate()
    queues = Queues(db, region="us-east-1", account_id="000000000000", base_url="http://x")
    body = "x" * args.body
    per = args.messages // args.producers

    await queues.create("phases")
    t0 = time.perf_counter()
    await asyncio.gather(*(produce(queues, "phases", per, body) for _ in range(args.producers)))
    send_s = time.perf_counter() - t0
    sent = per * args.producers
    t0 = time.perf_counter()
    done: list[int] = []
    await asyncio.gather(*(consume(queues, "phases", done, sent) for _ in range(args.consumers)))
    drain_s = time.perf_counter() - t0

    await queues.create("cycle")
    done = []
    t0 = time.perf_counter()
    await asyncio.gather(
        *(produce(queues, "cycle", per, body) for _ in range(args.producers)),
        *(consume(queues, "cycle", done, sent) for _ in range(args.consumers)),
    )
    cycle_s = time.perf_counter() - t0
    db.dispose()
    return {
        "messages": sent,
        "body_bytes": args.body,
        "producers": args.producers,
        "consumers": args.consumers,
        "cpus": os.cpu_count() or 0,
        "send_per_s": round(sent / send_s),
        "receive_delete_per_s": round(sent / drain_s),
        "end_to_end_per_s": round(sent / cycle_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--producers", type=int, default=2)
    parser.add_argument("--consumers", type=int, default=2)
    parser.add_argument("--body", type=int, default=256)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(f"{'phase':<24}{'messages/s':>12}")
    for key in ("send_per_s", "receive_delete_per_s", "end_to_end_per_s"):
        print(f"{key:<24}{result[key]:>12}")
    print(
        f"({result['messages']} messages of {args.body} B, {args.producers} producers, "
        f"{args.consumers} consumers, {result['cpus']} CPUs)"
    )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
