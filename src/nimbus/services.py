"""The long-lived parts of a running nimbus, built once at start-up and shared by the
API handlers (through ``services(request)``)."""

from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request

from nimbus.api.code_location import CodeSigner
from nimbus.config import Config
from nimbus.dispatcher import Dispatcher
from nimbus.gateway.apis import HttpApis
from nimbus.gateway.credentials import Credentials, load_credentials
from nimbus.gateway.limits import UsageGate
from nimbus.gateway.urls import FunctionUrls
from nimbus.invoker import Invoker
from nimbus.observe.logs import LogStore
from nimbus.pool import Pool
from nimbus.provisioner import Provisioner
from nimbus.queue.backend import QueueBackend
from nimbus.queue.backends.sqlite import SqliteQueue
from nimbus.queue.server import QueueServer
from nimbus.runtimes import catalog
from nimbus.store.aliases import AliasStore
from nimbus.store.api_keys import ApiKeyStore
from nimbus.store.code import CodeStore
from nimbus.store.database import Database
from nimbus.store.dead_letters import DeadLetterStore
from nimbus.store.event_configs import EventConfigStore
from nimbus.store.function_urls import FunctionUrlStore
from nimbus.store.functions import FunctionStore
from nimbus.store.http_apis import HttpApiStore
from nimbus.store.layers import LayerStore
from nimbus.store.policies import PolicyStore
from nimbus.store.provisioned import ProvisionedStore
from nimbus.supervisor import Supervisor
from nimbus.threads import blocking

__all__ = ["Services", "blocking", "open_services", "services"]


@dataclass
class Services:
    config: Config
    db: Database
    code: CodeStore
    functions: FunctionStore
    aliases: AliasStore
    signer: CodeSigner
    logs: LogStore
    pool: Pool
    invoker: Invoker
    event_configs: EventConfigStore
    dead_letters: DeadLetterStore
    provisioned: ProvisionedStore
    function_urls: FunctionUrlStore
    http_apis: HttpApiStore
    api_keys: ApiKeyStore
    policies: PolicyStore  # resource-based policies: stored and reported, not enforced
    layers: LayerStore
    credentials: Credentials  # what SigV4-signed requests are checked against
    usage_gate: UsageGate  # rate limits, API keys and quotas of HTTP triggers
    url_gateway: FunctionUrls  # serves /lambda-url/...
    api_gateway: HttpApis  # serves /execute-api/...
    provisioner: Provisioner
    queue: QueueBackend
    # Enqueues and re-drives here; consumes only when there are no async workers.
    dispatcher: Dispatcher
    queue_server: QueueServer | None = None  # with async workers: their way to the queue
    supervisor: Supervisor | None = None

    async def start(self) -> None:
        """Start the background parts (log writer, reaper, queue, dispatcher or async
        workers)."""
        self.logs.start()
        self.logs.start_pruning(self.config.log_retention_days)
        self.pool.start()
        await self.usage_gate.start()
        await self.queue.open()
        if self.supervisor is None or self.queue_server is None:
            await self.dispatcher.start()
        else:
            # This process owns the queue, so it recovers before any worker leases.
            await self.dispatcher.recover()
            await self.queue_server.start()
            self.functions.on_change(self.queue_server.changed)
            await self.supervisor.start()
        await self.provisioner.start()

    def dispatcher_counters(self) -> dict[str, int]:
        """The dispatcher counters since start, wherever the dispatching happens."""
        counters = Counter(self.dispatcher.counters)
        if self.queue_server is not None:
            counters.update(self.queue_server.counters)
        return dict(counters)

    async def aclose(self) -> None:
        # Workers first, so their leases are settled or handed back before the queue shuts.
        if self.supervisor is not None:
            await self.supervisor.close()
        if self.queue_server is not None:
            await self.queue_server.close()
        await self.dispatcher.close()
        await self.queue.close()
        await self.provisioner.close()
        await self.pool.close()
        await self.pool.manager.close()
        self.invoker.limiter.close()
        await self.usage_gate.close()
        await self.logs.close()
        await blocking(self.db.dispose)


def open_services(config: Config) -> Services:
    """Create the data dir, migrate the schema and open the stores (blocking)."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    catalog.available()  # probe the host's interpreters now, not in the first request
    db = Database(config.effective_database_url)
    db.migrate()
    functions = FunctionStore(db, config.function_arn)
    aliases = AliasStore(functions)
    invoker = Invoker.open(config, db, functions, aliases, process_index=0)
    code, logs, pool = invoker.code, invoker.logs, invoker.pool
    event_configs = EventConfigStore(functions)
    dead_letters = DeadLetterStore(db)
    provisioned = ProvisionedStore(functions)
    queue = SqliteQueue(config.data_dir / "queue.db")
    workers = config.async_workers > 0
    socket_path = config.data_dir / "queue.sock"
    function_urls, http_apis = FunctionUrlStore(functions), HttpApiStore(db, config.account_id)
    api_keys = ApiKeyStore(db)
    layers = LayerStore(db, f"arn:aws:lambda:{config.region}:{config.account_id}:layer:")
    usage_gate = UsageGate(api_keys, config)
    credentials = load_credentials(config)
    if len(str(socket_path)) > 100:  # unix socket paths are limited to 107 bytes
        socket_path = Path(tempfile.mkdtemp(prefix="nimbus-")) / "queue.sock"
    services = Services(
        config=config,
        db=db,
        code=code,
        functions=functions,
        aliases=aliases,
        signer=CodeSigner(config.data_dir / "code-signing.key"),
        logs=logs,
        pool=pool,
        invoker=invoker,
        event_configs=event_configs,
        dead_letters=dead_letters,
        provisioned=provisioned,
        function_urls=function_urls,
        http_apis=http_apis,
        api_keys=api_keys,
        policies=PolicyStore(functions),
        layers=layers,
        credentials=credentials,
        usage_gate=usage_gate,
        url_gateway=FunctionUrls(function_urls, invoker, usage_gate, credentials, config),
        api_gateway=HttpApis(http_apis, invoker, usage_gate, credentials, config),
        provisioner=Provisioner(provisioned, invoker),
        queue=queue,
        dispatcher=Dispatcher(config, queue, invoker, functions, event_configs, dead_letters),
        queue_server=QueueServer(queue, socket_path) if workers else None,
        # A worker that dies leaves invocations counted in its row of the limiter.
        supervisor=Supervisor(config, socket_path, invoker.limiter.clear_row) if workers else None,
    )
    code.collect_garbage(functions.code_references() | layers.code_references())
    return services


def services(request: Request) -> Services:
    return request.app.state.services
