"""The same no-op job through Dramatiq and Celery on this machine's Redis and RabbitMQ:
events/s end to end, the peers of nimbus' async invokes (bench/async.py).

For each framework and broker: a worker is started as its CLI starts it (Dramatiq: 2
processes x 8 threads; Celery: prefork pool of 8, no heartbeat, gossip or mingle), one
job is run to see it up, then ``--jobs`` jobs are enqueued from this process (the
framework's own send: ``actor.send``, ``task.delay``) and timed from the first enqueue
until the last has run. The job does nothing but mark itself done (one Redis INCR, the
end-to-end signal; nimbus' no-op is likewise recorded as succeeded); results are off,
retries off. Figures: ``enqueued_per_s`` (sending alone) and ``executed_per_s`` (first
enqueue to last done).

Queues and keys are named ``nimbus-bench-<pid>`` and deleted afterwards; the machine's
Redis and RabbitMQ are shared with others. A broker that is unreachable or a framework
that is not installed (``pip install -e '.[bench]'``) is reported as skipped.

Writes ``bench/results/brokers.json``.
Usage: ``python bench/brokers.py [--jobs 3000] [--redis URL] [--amqp URL]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This directory's http.py must not shadow the standard library's http package.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import importlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from typing import Any

from bench.common import table

RESULTS = Path(__file__).parent / "results" / "brokers.json"
NAME = f"nimbus-bench-{os.getpid()}"
DONE = f"{NAME}:done"  # the Redis counter the jobs increment
# The jobs' module, imported by the worker processes and by this one (to send).
JOBS = """
import os
import redis

BROKER = os.environ["BENCH_BROKER"]
NAME = os.environ["BENCH_NAME"]
done = redis.Redis.from_url(os.environ["BENCH_REDIS"])

if os.environ["BENCH_FRAMEWORK"] == "dramatiq":
    import dramatiq
    if BROKER.startswith("redis"):
        from dramatiq.brokers.redis import RedisBroker
        broker = RedisBroker(url=BROKER, namespace=NAME)
    else:
        from dramatiq.brokers.rabbitmq import RabbitmqBroker
        broker = RabbitmqBroker(url=BROKER)
    dramatiq.set_broker(broker)

    @dramatiq.actor(queue_name=NAME, max_retries=0)
    def noop(i):
        done.incr(os.environ["BENCH_DONE"])
else:
    from celery import Celery
    app = Celery(NAME, broker=BROKER)
    app.conf.update(task_default_queue=NAME, task_ignore_result=True,
                    worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)

    @app.task(name="noop", ignore_result=True)
    def noop(i):
        done.incr(os.environ["BENCH_DONE"])
"""
WORKERS = {
    "dramatiq": ["-m", "dramatiq", "bench_jobs", "--processes", "2", "--threads", "8",
                 "--queues", "{queue}"],
    "celery": ["-m", "celery", "-A", "bench_jobs.app", "worker", "--pool", "prefork",
               "--concurrency", "8", "--queues", "{queue}", "--without-heartbeat",
               "--without-gossip", "--without-mingle", "--loglevel", "warning"],
}


def _reachable(url: str) -> str | None:
    """None when the broker answers, else why not."""
    try:
        if url.startswith("redis"):
            import redis
            redis.Redis.from_url(url, socket_timeout=2).ping()
        else:
            import kombu
            with kombu.Connection(url, connect_timeout=2) as conn:
                conn.ensure_connection(max_retries=1)
    except Exception as e:  # any failure to connect: report it, skip the row
        return f"{type(e).__name__}: {e}"
    return None


def _wait_count(done: Any, target: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if int(done.get(DONE) or 0) >= target:
            return True
        time.sleep(0.01)
    return False


def run(framework: str, broker: str, redis_url: str, jobs: int, workdir: Path) -> dict:
    queue = f"{NAME}-{framework}"  # each declares its queue its own way on RabbitMQ
    env = {**os.environ, "BENCH_BROKER": broker, "BENCH_NAME": queue, "BENCH_REDIS": redis_url,
           "BENCH_FRAMEWORK": framework, "BENCH_DONE": DONE, "PYTHONPATH": str(workdir)}
    os.environ.update({k: v for k, v in env.items() if k.startswith("BENCH_")})
    sys.modules.pop("bench_jobs", None)
    module = importlib.import_module("bench_jobs")
    done = module.done
    done.delete(DONE)
    argv = [arg.replace("{queue}", queue) for arg in WORKERS[framework]]
    worker = subprocess.Popen([sys.executable, *argv], cwd=workdir, env=env,
                              stdout=subprocess.DEVNULL,
                              stderr=(workdir / f"{framework}.log").open("ab"))
    send = module.noop.send if framework == "dramatiq" else module.noop.delay
    try:
        send(-1)
        if not _wait_count(done, 1, 60):
            log = (workdir / f"{framework}.log").read_text()[-500:]
            raise RuntimeError(f"{framework} worker did not run a job within 60 s: {log}")
        done.delete(DONE)
        start = time.perf_counter()
        for i in range(jobs):
            send(i)
        enqueued = time.perf_counter() - start
        finished = _wait_count(done, jobs, 120)
        elapsed = time.perf_counter() - start
        ran = int(done.get(DONE) or 0)
    finally:
        worker.terminate()
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        done.delete(DONE)
    return {"jobs": jobs, "ran": ran, "finished": finished,
            "enqueued_per_s": round(jobs / enqueued, 1),
            "executed_per_s": round(ran / elapsed, 1)}


def cleanup(redis_url: str) -> None:
    """Delete this run's queues and keys (best effort: never fails the run)."""
    try:
        import redis
        r = redis.Redis.from_url(redis_url)
        keys = list(r.scan_iter(f"{NAME}*")) + list(r.scan_iter(f"*{NAME}*"))
        if keys:
            r.delete(*set(keys))
    except Exception as e:  # best effort: the run's figures stand without it
        print(f"note: could not clean Redis keys: {e}", file=sys.stderr)
    if shutil.which("rabbitmqctl") and os.geteuid() == 0:
        queues = [f"{NAME}-{framework}" for framework in WORKERS]
        for queue in queues + [f"{q}.{suffix}" for q in queues for suffix in ("DQ", "XQ")]:
            subprocess.run(["rabbitmqctl", "-q", "delete_queue", queue], capture_output=True,
                           check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--redis", default=os.environ.get("NIMBUS_BENCH_REDIS",
                                                          "redis://127.0.0.1:6379/0"))
    parser.add_argument("--amqp", default=os.environ.get("NIMBUS_BENCH_AMQP",
                                                         "amqp://guest:guest@127.0.0.1:5672/%2F"))
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    result: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="nimbus-bench-") as tmp:
        workdir = Path(tmp)
        (workdir / "bench_jobs.py").write_text(JOBS)
        sys.path.insert(0, str(workdir))
        redis_down = _reachable(args.redis)
        try:
            for framework in ("dramatiq", "celery"):
                for broker_name, url in (("redis", args.redis), ("rabbitmq", args.amqp)):
                    key = f"{framework}_{broker_name}"
                    why = None
                    try:
                        importlib.import_module(framework)
                    except ImportError:
                        why = f"{framework} not installed: pip install -e '.[bench]'"
                    why = why or redis_down or _reachable(url)
                    if why:
                        result[key] = {"skipped": why}
                        continue
                    try:
                        result[key] = run(framework, url, args.redis, args.jobs, workdir)
                    except Exception as e:  # one peer failing must not lose the others
                        result[key] = {"skipped": f"failed: {type(e).__name__}: {e}"}
        finally:
            cleanup(args.redis)
    table("no-op jobs through Dramatiq and Celery (events/s)",
          ("framework + broker", "enqueued/s", "executed/s", "ran"),
          [(key, str(r.get("enqueued_per_s", "")), str(r.get("executed_per_s", "")),
            str(r.get("ran", r.get("skipped", "")))) for key, r in result.items()])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"jobs": args.jobs, **result}, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
