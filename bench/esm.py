"""Event source mapping throughput: messages/s from an SQS queue of nimbus, through a
mapping, into a no-op function, end to end, beside the same run's enqueue-only rate.

Starts a real nimbus, creates a no-op function and two queues, then:

  enqueue_only   N messages sent with SendMessageBatch (10 a call) from C client
                 threads through boto3, into a queue nothing reads: the HTTP + store
                 cost of sending alone
  end_to_end     N more messages sent the same way into a queue an enabled mapping
                 (BatchSize, window 1 s, ScalingConfig.MaximumConcurrency) polls; timed
                 from the first send until the mapping reports all N succeeded
  drain_only     N more messages queued while the mapping is disabled, then drained
                 once it is enabled: the poller's own rate, without the senders
  lost           sent messages the function never succeeded on (must be 0)
  duplicates     messages received more than once by the mapping (at least once: may
                 be > 0 only if a batch outlived its visibility timeout)

    .venv/bin/python bench/esm.py [--messages 20000] [--clients 8] [--batch-size 100]
                                  [--concurrency 5] [--source sqs] [--output PATH]

``--source`` picks the row to measure; each source is one function in ``SOURCES``
(name -> runner returning the row's figures): a broker engineer adds e.g. ``redis``
(XADD from the clients, a redis:// mapping) beside ``sqs``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import io
import json
import os
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from typing import Any

import httpx
from tests.nimbus_process import NimbusProcess

ROLE = "arn:aws:iam::000000000000:role/bench"
RESULTS = Path(__file__).parent / "results" / "esm.json"


def noop_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", "def handler(event, context):\n    return None\n")
    return buf.getvalue()


def send_all(server: NimbusProcess, url: str, messages: int, clients: int) -> float:
    """Send ``messages`` with SendMessageBatch from ``clients`` threads; seconds taken."""
    per_client = messages // clients
    errors: list[str] = []

    def client(index: int) -> None:
        sqs = server.client("sqs")
        sent = 0
        while sent < per_client:
            n = min(10, per_client - sent)
            entries = [
                {"Id": str(i), "MessageBody": f'{{"c": {index}, "i": {sent + i}}}'}
                for i in range(n)
            ]
            failed = sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed")
            if failed:
                errors.append(str(failed))
            sent += n

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"sends failed: {errors[:3]}")
    return elapsed


CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat(pid: str) -> tuple[int, float, float]:
    """(parent pid, own CPU seconds, reaped children's CPU seconds) from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return int(fields[1]), own, (int(fields[13]) + int(fields[14])) / CLK_TCK


def tree_cpu(root: int) -> dict[str, float]:
    """CPU seconds used so far by the server process tree, by role: the server itself
    (with its reaped children), its async workers, and the sandboxes running functions."""
    stats: dict[int, tuple[int, float, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stats[int(entry)] = _stat(entry)
            except (OSError, IndexError, ValueError):
                continue
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    out = {"server": 0.0, "async_worker": 0.0, "sandbox": 0.0}
    todo = [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        if pid not in stats:
            continue
        _, own, reaped = stats[pid]
        if pid == root:
            out["server"] += own + reaped
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                worker = b"nimbus.workers.worker" in f.read()
        except OSError:
            worker = False
        out["async_worker" if worker else "sandbox"] += own + reaped
    return out


def machine_busy() -> float:
    """CPU seconds every process of the machine has used (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


class CpuMeter:
    """CPU seconds per message of one phase: this bench process (the boto3 senders and
    the stats polling), the server's process tree by role, and the rest of the machine
    (other users of the shared cores)."""

    def __init__(self, server: NimbusProcess) -> None:
        assert server.proc is not None
        self.root = server.proc.pid

    def __enter__(self) -> CpuMeter:
        self.t0 = time.perf_counter()
        self.bench0 = time.process_time()
        self.tree0 = tree_cpu(self.root)
        self.machine0 = machine_busy()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t0
        self.bench = time.process_time() - self.bench0
        tree1 = tree_cpu(self.root)
        self.tree = {k: tree1[k] - self.tree0[k] for k in tree1}
        self.machine = machine_busy() - self.machine0

    def figures(self, messages: int) -> dict[str, Any]:
        """Microseconds of CPU per message, and the share of both cores each took."""
        cores = os.cpu_count() or 1
        ours = self.bench + sum(self.tree.values())
        per = {
            "clients": self.bench,
            **self.tree,
            "rest_of_machine": max(0.0, self.machine - ours),
        }
        return {
            "cpu_us_per_message": {k: round(v * 1e6 / messages) for k, v in per.items()},
            "cpu_share_of_machine": {
                k: round(v / (self.wall * cores), 2) for k, v in per.items()
            },
        }


def disable(lam: Any, uuid: str) -> None:
    """Disable a mapping and wait until its poller has stopped."""
    lam.update_event_source_mapping(UUID=uuid, Enabled=False)
    while lam.get_event_source_mapping(UUID=uuid)["State"] != "Disabled":
        time.sleep(0.05)


def drain(server: Any, lam: Any, uuid: str, before: int, count: int) -> tuple[int, float]:
    """Enable a mapping over ``count`` waiting messages and time its poller draining them:
    (records it succeeded on, seconds). ``before``: its success counter beforehand."""
    lam.update_event_source_mapping(UUID=uuid, Enabled=True)
    started = time.perf_counter()
    drained = 0
    deadline = time.monotonic() + max(120.0, count / 200)
    while time.monotonic() < deadline:
        # A restarted poller starts its counters afresh in this process.
        now = mapping_stats(server, uuid).get("RecordsSucceeded", 0)
        drained = now - before if now >= before else now
        if drained >= count:
            break
        time.sleep(0.05)
    return drained, time.perf_counter() - started


def mapping_stats(server: NimbusProcess, uuid: str) -> dict[str, Any]:
    body = httpx.get(server.endpoint + "/_nimbus/event-source-mappings", timeout=30).json()
    (mine,) = [m for m in body["EventSourceMappings"] if m["UUID"] == uuid]
    return mine["Stats"] or {}


def run_sqs(server: NimbusProcess, args: argparse.Namespace) -> dict[str, Any]:
    lam, sqs = server.client(), server.client("sqs")
    lam.create_function(
        FunctionName="noop", Runtime="python3.12", Role=ROLE, Handler="app.handler",
        Code={"ZipFile": noop_zip()}, MemorySize=128,
    )
    lam.invoke(FunctionName="noop", Payload=b"{}")  # warm: a cold start is not throughput
    base_url = sqs.create_queue(QueueName="enqueue-only")["QueueUrl"]
    url = sqs.create_queue(QueueName="mapped")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    count = (args.messages // args.clients) * args.clients
    with CpuMeter(server) as enqueue_cpu:
        enqueue_s = send_all(server, base_url, count, args.clients)

    mapping = lam.create_event_source_mapping(
        FunctionName="noop", EventSourceArn=arn, BatchSize=args.batch_size,
        MaximumBatchingWindowInSeconds=1,
        ScalingConfig={"MaximumConcurrency": max(2, args.concurrency)},
    )
    while lam.get_event_source_mapping(UUID=mapping["UUID"])["State"] != "Enabled":
        time.sleep(0.05)
    with CpuMeter(server) as end_to_end_cpu:
        started = time.perf_counter()
        send_s = send_all(server, url, count, args.clients)
        deadline = time.monotonic() + max(120.0, count / 200)
        stats: dict[str, Any] = {}
        while time.monotonic() < deadline:
            stats = mapping_stats(server, mapping["UUID"])
            if stats.get("RecordsSucceeded", 0) >= count:
                break
            time.sleep(0.05)
        end_to_end_s = time.perf_counter() - started
    left = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    succeeded = stats.get("RecordsSucceeded", 0)
    received = stats.get("Received", 0)

    # Drain only: the same messages queued first, with the mapping disabled; then enabled.
    disable(lam, mapping["UUID"])
    send_all(server, url, count, args.clients)
    before = mapping_stats(server, mapping["UUID"]).get("RecordsSucceeded", 0)
    with CpuMeter(server) as drain_cpu:
        drained, drain_s = drain(server, lam, mapping["UUID"], before, count)
    return {
        "source": "sqs",
        "messages": count,
        "clients": args.clients,
        "batch_size": args.batch_size,
        "max_concurrency": args.concurrency,
        "enqueue_only_per_s": round(count / enqueue_s),
        "send_during_mapping_per_s": round(count / send_s),
        "end_to_end_per_s": round(count / end_to_end_s),
        "end_to_end_s": round(end_to_end_s, 2),
        "drain_only_per_s": round(count / drain_s),
        "drain_lost": max(0, count - drained),
        "batches": stats.get("BatchesDelivered"),
        "lost": max(0, count - succeeded),
        "duplicates": max(0, received - count),
        "left_in_queue": int(left["ApproximateNumberOfMessages"])
        + int(left["ApproximateNumberOfMessagesNotVisible"]),
        "cpu": {
            "enqueue_only": enqueue_cpu.figures(count),
            "end_to_end": end_to_end_cpu.figures(count),
            "drain_only": drain_cpu.figures(count),
        },
    }


def xadd_all(stream: str, messages: int, clients: int) -> float:
    """XADD ``messages`` to ``stream`` from ``clients`` threads (pipelines of 100);
    seconds taken."""
    import redis

    per_client = messages // clients

    def client(index: int) -> None:
        r = redis.Redis()
        for start in range(0, per_client, 100):
            pipe = r.pipeline(transaction=False)
            for i in range(start, min(per_client, start + 100)):
                pipe.xadd(stream, {"data": f'{{"c": {index}, "i": {i}}}'})
            pipe.execute()
        r.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def run_redis(server: NimbusProcess, args: argparse.Namespace) -> dict[str, Any]:
    """The same figures for a Redis stream (127.0.0.1:6379) read by a redis:// mapping:
    one ordered batch loop, as a stream mapping has."""
    import redis

    lam = server.client()
    lam.create_function(
        FunctionName="noop", Runtime="python3.12", Role=ROLE, Handler="app.handler",
        Code={"ZipFile": noop_zip()}, MemorySize=128,
    )
    lam.invoke(FunctionName="noop", Payload=b"{}")
    tag = f"{int(time.time())}"
    base, mapped = f"nimbus-bench-base-{tag}", f"nimbus-bench-mapped-{tag}"
    count = (args.messages // args.clients) * args.clients
    r = redis.Redis()
    try:
        enqueue_s = xadd_all(base, count, args.clients)
        mapping = lam.create_event_source_mapping(
            FunctionName="noop", EventSourceArn=f"redis://127.0.0.1:6379/0/{mapped}",
            BatchSize=args.batch_size, MaximumBatchingWindowInSeconds=1,
            StartingPosition="LATEST",
        )
        while lam.get_event_source_mapping(UUID=mapping["UUID"])["State"] != "Enabled":
            time.sleep(0.05)
        started = time.perf_counter()
        send_s = xadd_all(mapped, count, args.clients)
        deadline = time.monotonic() + max(120.0, count / 200)
        stats: dict[str, Any] = {}
        while time.monotonic() < deadline:
            stats = mapping_stats(server, mapping["UUID"])
            if stats.get("RecordsSucceeded", 0) >= count:
                break
            time.sleep(0.05)
        end_to_end_s = time.perf_counter() - started
        succeeded, received = stats.get("RecordsSucceeded", 0), stats.get("Received", 0)

        disable(lam, mapping["UUID"])
        xadd_all(mapped, count, args.clients)
        before = mapping_stats(server, mapping["UUID"]).get("RecordsSucceeded", 0)
        drained, drain_s = drain(server, lam, mapping["UUID"], before, count)
        group = {g["name"].decode(): g for g in r.xinfo_groups(mapped)}[
            f"nimbus-{mapping['UUID']}"
        ]
    finally:
        r.delete(base, mapped)
        r.close()
    return {
        "source": "redis",
        "messages": count,
        "clients": args.clients,
        "batch_size": args.batch_size,
        "enqueue_only_per_s": round(count / enqueue_s),
        "send_during_mapping_per_s": round(count / send_s),
        "end_to_end_per_s": round(count / end_to_end_s),
        "end_to_end_s": round(end_to_end_s, 2),
        "drain_only_per_s": round(count / drain_s),
        "drain_lost": max(0, count - drained),
        "batches": stats.get("BatchesDelivered"),
        "lost": max(0, count - succeeded),
        "duplicates": max(0, received - count),
        "left_in_stream": int(group["lag"] or 0) + int(group["pending"]),
    }


# One runner per source row; a broker engineer adds theirs here (see the docstring).
SOURCES: dict[str, Callable[[NimbusProcess, argparse.Namespace], dict[str, Any]]] = {
    "sqs": run_sqs,
    "redis": run_redis,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=5)
    parser.add_argument("--source", choices=sorted(SOURCES), default="sqs")
    parser.add_argument("--output", type=Path, help="where to write the row (default: results/)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nimbus-esm-") as tmp:
        server = NimbusProcess(Path(tmp) / "data").start()
        try:
            row = SOURCES[args.source](server, args)
        finally:
            server.stop()
    width = max(len(k) for k in row)
    print(f"{'figure':<{width}}  value")
    for key, value in row.items():
        if key != "cpu":
            print(f"{key:<{width}}  {value}")
    for phase, figures in row.get("cpu", {}).items():
        print(f"cpu us/message, {phase}: {figures['cpu_us_per_message']}")
        print(f"  share of the machine: {figures['cpu_share_of_machine']}")
    verdict = "ok" if row["end_to_end_per_s"] >= 4000 and row["lost"] == 0 else "BELOW TARGET"
    print(f"{'target':<{width}}  >= 4000 messages/s end to end, none lost: {verdict}")
    # sqs keeps esm.json; another source's row goes to esm_<source>.json beside it.
    results = RESULTS if args.source == "sqs" else RESULTS.with_name(f"esm_{args.source}.json")
    results = args.output or results
    results.parent.mkdir(exist_ok=True)
    results.write_text(json.dumps(row, indent=2) + "\n")


if __name__ == "__main__":
    main()
