"""S3 PUT/GET throughput of 1 MiB objects against the same disk written and read raw,
measured in one run.

Starts a real nimbus (auth off, no async workers) with its data dir on a temporary
directory, and with ``--concurrency`` client threads (httpx, one connection each, plain
path-style requests: the client does no hashing or signing that would compete with the
server for the CPU):

  nimbus PUT    PutObject of ``--objects`` objects of ``--size`` bytes (streamed to a
                temp file, MD5 computed, fsynced, renamed, row committed)
  nimbus GET    GetObject of each, read to the end
  raw write     the same bytes written by the same threads to files in the same
                filesystem, durably as nimbus does (temp file, fsync, rename)
  raw write (no fsync)  the same, without fsync: the page cache's speed
  raw read      the files read back (from the page cache, as nimbus' GETs are)

Rounds alternate nimbus and raw; the table shows medians (MB/s, objects/s, p50/p99
latency per object) and nimbus' share of the raw figures.

Then notification-to-invocation latency: a python function configured on the bucket for
``s3:ObjectCreated:*``; ``--notifications`` PUTs one after the other, each timed from
just before the PUT to the moment the handler starts (it reads the clock first thing
and returns it; its OnSuccess destination, an SQS queue, brings the figure back). Needs
a host that runs functions (root, namespaces: see ``nimbus doctor``); skipped, saying
so, where it cannot. Writes bench/results/s3.json.

    .venv/bin/python bench/s3.py [--objects 200] [--size 1048576] [--concurrency 4]
                                 [--rounds 3] [--notifications 50]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
from tests.conftest import ROLE, make_zip, python_runtime, sandbox_problem
from tests.nimbus_process import NimbusProcess

RESULTS = Path(__file__).parent / "results" / "s3.json"
MB = 1_000_000


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(jobs: int, concurrency: int, job: Callable[[int], None]) -> tuple[float, list[float]]:
    """Run ``job(i)`` for every i on ``concurrency`` threads: wall seconds, each job's ms."""
    latencies: list[float] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        start = time.perf_counter()
        job(i)
        elapsed = (time.perf_counter() - start) * 1000
        with lock:
            latencies.append(elapsed)

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(run, range(jobs)))
    return time.perf_counter() - start, latencies


def figures(seconds: float, latencies: list[float], count: int, size: int) -> dict[str, float]:
    return {
        "mb_per_s": count * size / MB / seconds,
        "objects_per_s": count / seconds,
        "p50_ms": pct(latencies, 0.50),
        "p99_ms": pct(latencies, 0.99),
    }


class Clients:
    """One httpx client (one keep-alive connection) per thread."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.all: list[httpx.Client] = []

    def get(self) -> httpx.Client:
        client = getattr(self.local, "client", None)
        if client is None:
            client = self.local.client = httpx.Client(timeout=120)
            self.all.append(client)
        return client

    def close(self) -> None:
        for client in self.all:
            client.close()


def nimbus_round(
    base: str, bucket: str, payloads: list[bytes], concurrency: int, round_no: int
) -> dict[str, dict[str, float]]:
    clients = Clients()
    host = {"host": "s3.localhost"}
    size = len(payloads[0])

    def put(i: int) -> None:
        answer = clients.get().put(
            f"{base}/{bucket}/r{round_no}/o{i}", content=payloads[i], headers=host
        )
        assert answer.status_code == 200, answer.text

    def get(i: int) -> None:
        answer = clients.get().get(f"{base}/{bucket}/r{round_no}/o{i}", headers=host)
        assert answer.status_code == 200 and len(answer.content) == size

    try:
        put_s, put_ms = timed(len(payloads), concurrency, put)
        get_s, get_ms = timed(len(payloads), concurrency, get)
    finally:
        clients.close()
    return {
        "nimbus_put": figures(put_s, put_ms, len(payloads), size),
        "nimbus_get": figures(get_s, get_ms, len(payloads), size),
    }


def raw_round(directory: Path, payloads: list[bytes], concurrency: int) -> dict[str, dict]:
    directory.mkdir(parents=True)
    size = len(payloads[0])

    def write(i: int, durable: bool) -> None:
        temp = directory / f"tmp-{i}-{durable}"
        with open(temp, "wb") as f:
            f.write(payloads[i])
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.rename(temp, directory / f"o{i}-{durable}")
        if durable:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            os.fsync(fd)
            os.close(fd)

    def read(i: int) -> None:
        with open(directory / f"o{i}-True", "rb") as f:
            assert len(f.read()) == size

    durable_s, durable_ms = timed(len(payloads), concurrency, lambda i: write(i, True))
    cached_s, cached_ms = timed(len(payloads), concurrency, lambda i: write(i, False))
    read_s, read_ms = timed(len(payloads), concurrency, read)
    return {
        "raw_write": figures(durable_s, durable_ms, len(payloads), size),
        "raw_write_no_fsync": figures(cached_s, cached_ms, len(payloads), size),
        "raw_read": figures(read_s, read_ms, len(payloads), size),
    }


TIMER = make_zip(
    {"app.py": "import time\n\ndef handler(event, context):\n    return {'started': time.time()}\n"}
)


def notification_latency(server: NimbusProcess, bucket: str, count: int) -> dict[str, float]:
    """PUT to invocation, ms, for ``count`` PUTs after one warm-up (see the docstring)."""
    lam, sqs = server.client(), server.client("sqs")
    s3 = server.client("s3")
    queue_url = sqs.create_queue(QueueName="bench-destination")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    arn = lam.create_function(
        FunctionName="bench-timer",
        Runtime=python_runtime(),
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": TIMER},
    )["FunctionArn"]
    lam.put_function_event_invoke_config(
        FunctionName="bench-timer", DestinationConfig={"OnSuccess": {"Destination": queue_arn}}
    )
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        SkipDestinationValidation=True,
        NotificationConfiguration={
            "LambdaFunctionConfigurations": [
                {
                    "LambdaFunctionArn": arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "Prefix", "Value": "n/"}]}},
                }
            ]
        },
    )
    host = {"host": "s3.localhost"}
    latencies: list[float] = []
    with httpx.Client(timeout=60) as client:
        for i in range(count + 1):
            start = time.time()
            answer = client.put(f"{server.endpoint}/{bucket}/n/{i}", content=b"x", headers=host)
            assert answer.status_code == 200, answer.text
            while True:
                got = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=20)
                if got.get("Messages"):
                    break
            message = got["Messages"][0]
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            started = json.loads(message["Body"])["responsePayload"]["started"]
            if i:  # the first one paid the cold start
                latencies.append((started - start) * 1000)
    return {"p50_ms": pct(latencies, 0.50), "p99_ms": pct(latencies, 0.99), "count": len(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=200)
    parser.add_argument("--size", type=int, default=1024 * 1024)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--notifications", type=int, default=50)
    args = parser.parse_args()
    latency: dict[str, float] | None = None
    cannot_run = sandbox_problem()
    payloads = [os.urandom(args.size) for _ in range(args.objects)]
    runs: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        server = NimbusProcess(Path(tmp) / "data", env={"NIMBUS_ASYNC_WORKERS": "0"}).start()
        try:
            bucket = "bench"
            created = httpx.put(f"{server.endpoint}/{bucket}", headers={"host": "s3.localhost"})
            assert created.status_code == 200, created.text
            for round_no in range(args.rounds):
                found = nimbus_round(server.endpoint, bucket, payloads, args.concurrency, round_no)
                found.update(raw_round(Path(tmp) / f"raw{round_no}", payloads, args.concurrency))
                for name, values in found.items():
                    runs.setdefault(name, []).append(values)
            if args.notifications and cannot_run is None:
                latency = notification_latency(server, bucket, args.notifications)
        finally:
            server.stop()
    summary = {
        name: {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
        for name, rounds in runs.items()
    }
    labels = {
        "nimbus_put": "nimbus PutObject",
        "raw_write": "raw write (temp, fsync, rename)",
        "raw_write_no_fsync": "raw write (no fsync)",
        "nimbus_get": "nimbus GetObject",
        "raw_read": "raw read",
    }
    size_text = f"{args.size / 1024 / 1024:g} MiB" if args.size >= 1024 * 1024 else f"{args.size} B"
    print(
        f"{args.objects} objects of {size_text}, {args.concurrency} client threads, "
        f"median of {args.rounds} rounds"
    )
    print(f"{'':<34}{'MB/s':>10}{'objects/s':>11}{'p50 ms':>10}{'p99 ms':>10}")
    for name, label in labels.items():
        s = summary[name]
        print(
            f"{label:<34}{s['mb_per_s']:>10.1f}{s['objects_per_s']:>11.1f}"
            f"{s['p50_ms']:>10.2f}{s['p99_ms']:>10.2f}"
        )
    put_share = summary["nimbus_put"]["mb_per_s"] / summary["raw_write"]["mb_per_s"]
    get_share = summary["nimbus_get"]["mb_per_s"] / summary["raw_read"]["mb_per_s"]
    print(f"nimbus PUT / raw durable write: {put_share:.2f}")
    print(f"nimbus GET / raw read: {get_share:.2f}")
    if latency is not None:
        print(
            f"notification to invocation ({latency['count']:.0f} PUTs, warm): "
            f"p50 {latency['p50_ms']:.1f} ms, p99 {latency['p99_ms']:.1f} ms"
        )
    else:
        print(f"notification to invocation: not measured ({cannot_run or 'not asked'})")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "objects": args.objects,
                "size": args.size,
                "concurrency": args.concurrency,
                "rounds": runs,
                "summary": summary,
                "put_share_of_raw_write": put_share,
                "get_share_of_raw_read": get_share,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
