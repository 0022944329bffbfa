"""Everything one ``nimbus up`` process owns, opened and closed in order: the engine
over the embedded queue, the control plane's services, the data plane, and (with
``async_workers``) the queue server and the supervisor of the async workers."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from nimbus.api.services import Services
from nimbus.cluster.announcer import Announcer
from nimbus.cluster.nodes import NodeBoard
from nimbus.config import Config
from nimbus.engine import Engine
from nimbus.events.sources.buckets import BucketNotifier
from nimbus.events.sources.scheduler import ScheduleRunner, open_runner
from nimbus.events.sources.supervisor import MappingSupervisor
from nimbus.gateway.apis import HttpApis
from nimbus.gateway.serve import DataPlane
from nimbus.gateway.urls import FunctionUrls
from nimbus.net_policy import EgressPolicy
from nimbus.private_files import secure_data_dir
from nimbus.queue.backend import QueueBackend
from nimbus.queue.backends.nats_jetstream import NatsQueue
from nimbus.queue.backends.sqlite import SqliteQueue
from nimbus.sandbox import catalog
from nimbus.sns.fanout import Fanout
from nimbus.store.change_feed import HTTP_APIS
from nimbus.workers.queue_server import QueueServer
from nimbus.workers.supervisor import Supervisor


@dataclass
class Node:
    engine: Engine
    services: Services
    data_plane: DataPlane
    queue_server: QueueServer | None = None  # with async workers: their way to the queue
    supervisor: Supervisor | None = None
    # Event source mappings' pollers: only the server runs them (workers never do).
    mappings: MappingSupervisor | None = None
    # EventBridge Scheduler schedules: fired here while this process holds their lease.
    schedules: ScheduleRunner | None = None
    # SNS fan-out: what topics owe their subscribers, delivered from this process.
    sns_fanout: Fanout | None = None
    # S3 bucket notifications: the outbox the S3 store fills, handed on from here.
    buckets: BucketNotifier | None = None
    # A worker node of a cluster: its heartbeat to the servers.
    announcer: Announcer | None = None

    @classmethod
    def open(cls, config: Config) -> Node:
        """Create the data dir, migrate the schema and open everything (blocking)."""
        secure_data_dir(config.data_dir)  # 0700, its databases 0600 (private_files.py)
        catalog.available()  # probe the host's interpreters now, not in the first request
        # The server owns the queue either way; async workers reach it over its socket.
        queue: QueueBackend = (
            NatsQueue.from_url(config.queue_url) if config.queue_url
            else SqliteQueue(config.data_dir / "queue.db")
        )  # fmt: skip
        engine = Engine.open(config, queue)
        services = Services.open(config, engine)
        urls = FunctionUrls(
            services.function_urls, engine.invoker, services.usage_gate, services.credentials,
            config,
        )
        apis = HttpApis(
            services.http_apis, engine.invoker, services.usage_gate, services.credentials,
            config,
        )
        node = cls(engine, services, DataPlane(urls, apis))
        if engine.feed is not None:  # routes changed through another server
            engine.feed.subscribe(HTTP_APIS, services.http_apis.changed, apis.cached_ids)
        node.buckets = BucketNotifier(
            engine.db, engine.invoker, engine.dispatcher, engine.sqs, engine.dead_letters,
            region=config.region, account_id=config.account_id, topics=engine.sns,
        )
        services.s3.events.subscribe(node.buckets)
        node.schedules = open_runner(
            config, engine.db, engine.invoker, engine.dispatcher, engine.sqs
        )
        if config.async_workers > 0:
            socket_path = config.data_dir / "queue.sock"
            if len(str(socket_path)) > 100:  # unix socket paths are limited to 107 bytes
                socket_path = Path(tempfile.mkdtemp(prefix="nimbus-")) / "queue.sock"
            queue_server = node.queue_server = QueueServer(
                queue, socket_path, on_metrics=engine.metrics.absorb
            )
            engine.metrics.remote_in_flight = lambda: queue_server.in_flight
            # A worker that dies leaves invocations counted in its row of the limiter.
            node.supervisor = Supervisor(config, socket_path, engine.invoker.limiter.clear_row)
            services.remote_counters = lambda: queue_server.counters
        engine.code.collect_garbage(
            engine.functions.code_references() | services.layers.code_references()
        )
        return node

    async def start(self) -> None:
        """Start the background parts (log writer and pruning, reaper, queue, dispatcher
        or async workers, provisioned concurrency)."""
        engine, config = self.engine, self.engine.config
        await engine.start(consume=self.supervisor is None)
        engine.logs.start_pruning(config.log_retention_days)
        await self.services.usage_gate.start()
        if self.supervisor is not None and self.queue_server is not None:
            # This process owns the queue, so it recovered before any worker leases.
            await self.queue_server.start()
            engine.functions.on_change(self.queue_server.changed)
            await self.supervisor.start()
        await self.services.provisioner.start()
        self.mappings = MappingSupervisor.for_engine(engine)
        await self.mappings.start()
        if self.schedules is not None:
            await self.schedules.start()
        self.sns_fanout = sns_fanout(engine)
        await self.sns_fanout.start()
        if self.buckets is not None:
            await self.buckets.start()
        if config.role == "worker" and config.queue_url:
            board = NodeBoard(config.queue_url)
            await board.open()
            pool = engine.pool
            self.announcer = Announcer(board, config.node_url, pool.idle_by_version,
                                       lambda: pool.stats()["busy"])
            await self.announcer.start()

    async def close(self) -> None:
        if self.announcer is not None:  # the servers stop sending work here first
            await self.announcer.close()
            await self.announcer.board.close()
        # Provisioned slots go back now, for the other nodes to take while this one drains.
        await self.services.provisioner.close()
        if self.schedules is not None:  # no new fires while the rest shuts down
            await self.schedules.close()
        if self.sns_fanout is not None:
            await self.sns_fanout.close()
        if self.buckets is not None:
            await self.buckets.close()
        # Pollers first: their batches in flight finish (or go back) while all still runs.
        if self.mappings is not None:
            await self.mappings.close()
        # Workers first, so their leases are settled or handed back before the queue shuts.
        if self.supervisor is not None:
            await self.supervisor.close()
        if self.queue_server is not None:
            await self.queue_server.close()
        await self.services.usage_gate.close()
        await self.engine.close()


def sns_fanout(engine: Engine) -> Fanout:
    """The SNS fan-out over ``engine``: a function's events go through its async queue
    (a function that does not exist is the endpoint's, not the queue's, failure)."""

    async def to_lambda(name: str, qualifier: str | None, payload: bytes,
                        trace: str | None) -> str:  # fmt: skip
        await engine.invoker.targets.resolve(name, qualifier)  # ResourceNotFound if none
        return await engine.dispatcher.enqueue(name, qualifier, payload, trace_id=trace)

    return Fanout(
        engine.sns, engine.sqs, to_lambda, engine.dead_letters, recover=engine.db.is_sqlite,
        egress=EgressPolicy.of(engine.config.webhook_allow),
    )
