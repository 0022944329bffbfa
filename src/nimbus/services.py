"""The long-lived parts of a running nimbus, built once at start-up and shared by the
API handlers (through ``services(request)``)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from nimbus.api.code_location import CodeSigner
from nimbus.config import Config
from nimbus.dispatcher import Dispatcher
from nimbus.invoker import Invoker
from nimbus.observe.logs import LogStore
from nimbus.pool import Pool
from nimbus.provisioner import Provisioner
from nimbus.queue.backend import QueueBackend
from nimbus.queue.backends.sqlite import SqliteQueue
from nimbus.runtimes import catalog
from nimbus.sandbox import SandboxManager
from nimbus.store.aliases import AliasStore
from nimbus.store.archive import PackageLimits
from nimbus.store.code import CodeStore
from nimbus.store.database import Database
from nimbus.store.dead_letters import DeadLetterStore
from nimbus.store.event_configs import EventConfigStore
from nimbus.store.functions import FunctionStore
from nimbus.store.provisioned import ProvisionedStore
from nimbus.targets import Targets
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
    provisioner: Provisioner
    queue: QueueBackend
    dispatcher: Dispatcher

    async def start(self) -> None:
        """Start the background parts (log writer, reaper, queue, dispatcher)."""
        self.logs.start()
        self.pool.start()
        await self.queue.open()
        await self.dispatcher.start()
        await self.provisioner.start()

    async def aclose(self) -> None:
        await self.dispatcher.close()
        await self.queue.close()
        await self.provisioner.close()
        await self.pool.close()
        await self.pool.manager.close()
        await self.logs.close()
        await blocking(self.db.dispose)


def open_services(config: Config) -> Services:
    """Create the data dir, migrate the schema and open the stores (blocking)."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    catalog.available()  # probe the host's interpreters now, not in the first request
    db = Database(config.effective_database_url)
    db.migrate()
    code = CodeStore(
        config.data_dir / "code",
        PackageLimits(max_unzipped=config.max_unzipped_size, max_entries=config.max_zip_entries),
    )
    functions = FunctionStore(db, config.function_arn)
    aliases = AliasStore(functions)
    logs = LogStore(db)
    pool = Pool(
        SandboxManager(
            config.data_dir / "sandboxes",
            isolation=config.isolation,
            stem_cells=config.stem_cells,
        ),
        idle_seconds=config.idle_seconds,
    )
    invoker = Invoker(config, Targets(functions, aliases), code, pool, logs)
    event_configs = EventConfigStore(functions)
    dead_letters = DeadLetterStore(db)
    provisioned = ProvisionedStore(functions)
    queue = SqliteQueue(config.data_dir / "queue.db")
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
        provisioner=Provisioner(provisioned, invoker),
        queue=queue,
        dispatcher=Dispatcher(config, queue, invoker, functions, event_configs, dead_letters),
    )
    code.collect_garbage(functions.code_references())
    return services


def services(request: Request) -> Services:
    return request.app.state.services
