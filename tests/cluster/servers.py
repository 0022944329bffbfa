"""Two (or more) nimbus servers as the front ends of one installation, on this machine:
one PostgreSQL schema and one JetStream stream of their own, the same environment key,
a data dir each (as two hosts would have), every server started as a user would."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import nats
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import POSTGRES_URL
from tests.nimbus_process import NimbusProcess
from tests.sink import LOCAL_WEBHOOKS

NATS_URL = "nats://127.0.0.1:4222"


async def _delete_stream(stream: str) -> None:
    nc = await nats.connect(NATS_URL)
    for name in (stream, f"KV_{stream}_nodes"):  # the queue, the workers' announcements
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await nc.jetstream().delete_stream(name)
    await nc.close()


@contextlib.contextmanager
def shared_installation(
    root: Path, *, ack_wait: float | None = None, extra: dict[str, str] | None = None
) -> Iterator[dict[str, str]]:
    """The settings every server of one fresh installation shares (NIMBUS_* variables);
    the schema and the stream are dropped afterwards. ``ack_wait``: how soon JetStream
    hands a dead server's in-flight events to another (the queue URL's option)."""
    admin = sa.create_engine(POSTGRES_URL)
    schema = f"nimbus_cluster_{uuid.uuid4().hex[:12]}"
    stream = f"NIMBUS_CLUSTER_{uuid.uuid4().hex[:12]}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    key = root / "env.key"
    root.mkdir(parents=True, exist_ok=True)
    key.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    key.chmod(0o600)
    sep = "&" if "?" in POSTGRES_URL else "?"
    queue_url = f"{NATS_URL}/{stream}" + (f"?ack_wait={ack_wait:g}" if ack_wait else "")
    try:
        yield {
            "NIMBUS_DATABASE_URL": f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}",
            "NIMBUS_QUEUE_URL": queue_url,
            "NIMBUS_ENV_KEY_FILE": str(key),
            **LOCAL_WEBHOOKS,
            **(extra or {}),
        }
    finally:
        # In a thread of its own: the caller may be inside an event loop (bench/cluster.py).
        with contextlib.suppress(OSError), ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, _delete_stream(stream)).result()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextlib.contextmanager
def serving(processes: list[NimbusProcess]) -> Iterator[list[NimbusProcess]]:
    """Start the processes in order; stop every one of them on leaving, however it ends."""
    try:
        for process in processes:
            process.start()
        yield processes
    finally:
        for process in processes:
            process.stop()


def front_end(root: Path, name: str, env: dict[str, str]) -> NimbusProcess:
    """One server of the installation, with its own data dir ``root/name`` (not started)."""
    return NimbusProcess(root / name, env=env)


class Cluster:
    """A running server and its worker nodes (the ``cluster`` fixture)."""

    def __init__(self, server: NimbusProcess, workers: list[NimbusProcess]) -> None:
        self.server, self.workers = server, workers

    def nodes(self) -> list[dict]:
        return httpx.get(f"{self.server.endpoint}/_nimbus/cluster", timeout=10).json()["Nodes"]

    def until(self, predicate, what: str, timeout: float = 30) -> list[dict]:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while not predicate(nodes := self.nodes()):
            assert time.monotonic() < deadline, f"{what}: {nodes}"
            time.sleep(0.1)
        return nodes


def ran(process: NimbusProcess, function: str) -> float:
    """Invocations of ``function`` ``process`` ran itself (its /metrics)."""
    text = httpx.get(f"{process.endpoint}/metrics", timeout=10).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "nimbus_invocations_total"
               and s.labels.get("function_name") == function)
