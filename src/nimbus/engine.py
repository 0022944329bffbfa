"""The execution side of a nimbus process, built once: the stores an invocation reads,
the invoker with its pool of sandboxes, log writer and concurrency row, and the
dispatcher that runs queued events.

The server and every async worker build it the same way (``Engine.open``); they differ
only in the queue they hand it (the server owns the embedded queue, a worker reaches it
through the server) and in whether the dispatcher consumes (``start(consume=...)``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from nimbus.cluster.forward import Forwarder
from nimbus.cluster.nodes import NodeBoard
from nimbus.cluster.placement import Placement
from nimbus.config import Config
from nimbus.events.dispatcher import Dispatcher
from nimbus.invocation.concurrency import ClusterAdmission, ConcurrencyLimiter
from nimbus.invocation.invoker import Invoker
from nimbus.invocation.pool import Pool
from nimbus.invocation.targets import Targets
from nimbus.observe.hooks import Hooks
from nimbus.observe.log_files import LogFiles
from nimbus.observe.logs import LogStore
from nimbus.observe.metrics import Metrics
from nimbus.observe.otlp_export import span_export
from nimbus.observe.trace_store import SegmentLog, TraceStore
from nimbus.observe.tracing import Tracer
from nimbus.observe.xray_daemon import XRayDaemon, daemon_factory
from nimbus.queue.backend import QueueBackend
from nimbus.sandbox import SandboxManager, cgroups, uid_range
from nimbus.sns.signing import Signer
from nimbus.sns.topics import Topics
from nimbus.sqs.queues import Queues
from nimbus.store.aliases import AliasStore
from nimbus.store.archive import PackageLimits
from nimbus.store.change_feed import FUNCTIONS, ChangeFeed
from nimbus.store.cluster_slots import ClusterSlots
from nimbus.store.code import CodeStore
from nimbus.store.code_share import CodeShare
from nimbus.store.database import Database
from nimbus.store.dead_letters import DeadLetterStore
from nimbus.store.env_cipher import EnvCipher
from nimbus.store.event_configs import EventConfigStore
from nimbus.store.functions import FunctionStore
from nimbus.threads import blocking

# In the data dir: the in-flight counts the server and its async workers share.
CONCURRENCY_FILE = "concurrency"
TRACES_DIR = "traces"  # every process's trace segments (observe/trace_store.py)


@dataclass
class Engine:
    """Everything that runs invocations in one process."""

    config: Config
    db: Database
    functions: FunctionStore
    aliases: AliasStore
    code: CodeStore
    logs: LogStore
    pool: Pool
    invoker: Invoker
    event_configs: EventConfigStore
    dead_letters: DeadLetterStore
    queue: QueueBackend
    dispatcher: Dispatcher
    sqs: Queues  # SQS-compatible queues: the SQS API, destinations, DLQs, event sources
    sns: Topics  # SNS-compatible topics: the SNS API, destinations, DLQs (fan-out: Node)
    # Lifecycle hooks the invoker and dispatcher emit, and the metrics counted from them
    # (a worker's are shipped to the server's: see observe/metrics.py).
    hooks: Hooks = field(default_factory=Hooks)
    metrics: Metrics = field(default_factory=Metrics)
    # Tracing: this process's segments go to its log in the data dir (``segments``); the
    # server reads every process's logs through ``traces`` (observe/trace_store.py).
    segments: SegmentLog | None = None
    tracer: Tracer = field(default_factory=Tracer)
    traces: TraceStore | None = None
    _daemons: list[XRayDaemon] = field(default_factory=list)
    # PostgreSQL: other processes' function changes, heard (store/change_feed.py).
    feed: ChangeFeed | None = None
    # Cluster mode, on a server: the worker nodes it sends invocations to.
    nodes: NodeBoard | None = None
    forwarder: Forwarder | None = None

    @classmethod
    def open(cls, config: Config, queue: QueueBackend, process_index: int = 0) -> Engine:
        """Build the engine of the server (``process_index`` 0: it migrates the database
        first) or of async worker ``process_index`` (blocking). Each process claims its
        own range of sandbox uids, as many as the concurrency limit needs
        (sandbox/uid_range.py), and has its own row of the concurrency counts (the
        server creates the file before it starts any worker)."""
        db = Database(config.effective_database_url)
        if process_index == 0:
            db.migrate()
            if config.isolation == "namespace":
                cgroups.warn_if_cpu_unlimited()  # in the log at start, not at a first cold start
        functions = FunctionStore(db, config.function_arn, EnvCipher.load(config))
        if process_index == 0:
            functions.seal_environments()  # rows from before encryption at rest
        aliases = AliasStore(functions)
        pool = Pool(
            SandboxManager(
                config.data_dir / "sandboxes",
                isolation=config.isolation,
                stem_cells=config.stem_cells,
                stem_cells_burst=config.stem_cells_burst,
                tmp_storage=config.tmp_storage,
                uid_count=uid_range.per_process(config.concurrency_limit),
                network=config.function_network,
                network_allow=config.function_network_allow,
            ),
            idle_seconds=config.idle_seconds,
        )
        code = CodeStore(
            config.data_dir / "code",
            PackageLimits(
                max_unzipped=config.max_unzipped_size, max_entries=config.max_zip_entries
            ),
            # Several servers on one PostgreSQL: each keeps packages on its own disk and a
            # copy in the database, fetched by a server that lacks one (store/code_share.py).
            share=None if db.is_sqlite else CodeShare(db),
        )
        # Embedded: logs go to files (see observe/log_files.py); PostgreSQL: to its table,
        # which every node reads.
        logs = LogStore(db, LogFiles(config.data_dir / "logs") if db.is_sqlite else None)
        path = config.data_dir / CONCURRENCY_FILE
        if process_index == 0:
            limiter = ConcurrencyLimiter.create(
                path, config.concurrency_limit, processes=1 + config.async_workers
            )
        else:
            limiter = ConcurrencyLimiter.attach(path, config.concurrency_limit, process_index)
        hooks, metrics = Hooks(), Metrics()
        metrics.attach(hooks)
        metrics.local_in_flight = pool.busy_by_function
        traces_dir = config.data_dir / TRACES_DIR
        segments = SegmentLog(traces_dir, "server" if process_index == 0 else
                              f"worker{process_index}", export=span_export(config))
        tracer = Tracer(segments.append, account_id=config.account_id)
        invoker = Invoker(
            config, Targets(functions, aliases), code, pool, logs, limiter, hooks=hooks,
            tracer=tracer,
            cluster=ClusterAdmission(ClusterSlots(db.url), config.concurrency_limit)
            if config.cluster else None,
        )
        event_configs, dead_letters = EventConfigStore(functions), DeadLetterStore(db)
        # PostgreSQL: the server hears other servers' changes; its async workers hear
        # of them from it.
        feed = None if db.is_sqlite or process_index != 0 else ChangeFeed(db.url)
        if feed is not None:
            feed.subscribe(
                FUNCTIONS, functions.changed,
                # After a lost connection: those that exist, and those deleted meanwhile
                # that this process still holds something of.
                lambda: set(functions.names()) | invoker.targets.names()
                | pool.function_names())
        # Cluster mode, on a server: the worker nodes' announcements, followed.
        nodes = (NodeBoard(config.queue_url)
                 if config.cluster and config.role == "server" and config.queue_url else None)
        sqs = Queues(
            db,
            region=config.region,
            account_id=config.account_id,
            base_url=f"http://{config.host}:{config.port}",
        )
        sns = Topics(
            db,
            Signer.load_or_create(config.data_dir),
            region=config.region,
            account_id=config.account_id,
            base_url=f"http://{config.host}:{config.port}",
        )
        dispatcher = Dispatcher(
            config, queue, invoker, functions, event_configs, dead_letters, sqs=sqs, hooks=hooks,
            tracer=tracer, sns=sns,
        )
        return cls(
            config=config,
            db=db,
            functions=functions,
            aliases=aliases,
            code=code,
            logs=logs,
            pool=pool,
            invoker=invoker,
            event_configs=event_configs,
            dead_letters=dead_letters,
            queue=queue,
            dispatcher=dispatcher,
            sqs=sqs,
            sns=sns,
            hooks=hooks,
            metrics=metrics,
            segments=segments,
            tracer=tracer,
            traces=TraceStore(traces_dir) if process_index == 0 else None,
            nodes=nodes,
            # The server hears them; its async workers hear of them from it.
            feed=feed,
            forwarder=None if nodes is None else Forwarder(Placement(nodes), config),
        )

    async def start(self, *, consume: bool = True) -> None:
        """Start the log writer, the idle reaper and the queue; the dispatcher consumes
        events, or (``consume=False``: async workers consume) only recovers the queue's
        interrupted leases, which the queue's owner must do before any worker leases."""
        self.logs.start()
        if self.segments is not None:
            self.segments.start()
            self.tracer.daemon, self._daemons = daemon_factory(asyncio.get_running_loop())
        self.pool.start()
        if self.feed is not None:
            self.feed.start()
        await self.queue.open()
        if self.nodes is not None and self.forwarder is not None:
            await self.nodes.open()
            await self.nodes.watch()
            self.invoker.remote = self.forwarder
        if consume:
            await self.dispatcher.start()
        else:
            await self.dispatcher.recover()

    async def flush_logs(self) -> None:
        """Make what has run readable now: this process's log writer batches its writes,
        and so do the worker nodes a cluster server sent invocations to."""
        await self.logs.flush()
        if self.forwarder is not None:
            await self.forwarder.flush_logs()

    async def close(self) -> None:
        """Stop dispatching, then the queue, the sandboxes, the logs and the database."""
        await self.dispatcher.close()
        if self.forwarder is not None:
            self.invoker.remote = None
            await self.forwarder.close()
        if self.nodes is not None:
            await self.nodes.close()
        await self.queue.close()
        await self.invoker.snapshots.close()  # SnapStart templates still being made
        await self.pool.close()
        await self.pool.manager.close()
        self.invoker.limiter.close()
        if self.invoker.cluster is not None:
            await self.invoker.cluster.slots.close()
        if self.feed is not None:
            await blocking(self.feed.close)
        await self.logs.close()
        for daemon in self._daemons:
            daemon.close()
        if self.segments is not None:
            await self.segments.close()
        await blocking(self.db.dispose)
