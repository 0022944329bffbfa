"""The long-lived parts of a running nimbus, built once at start-up and shared by the
API handlers (through ``services(request)``)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from nimbus.api.code_location import CodeSigner
from nimbus.config import Config
from nimbus.invoker import Invoker
from nimbus.observe.logs import LogStore
from nimbus.pool import Pool
from nimbus.runtimes import catalog
from nimbus.sandbox import SandboxManager
from nimbus.store.aliases import AliasStore
from nimbus.store.archive import PackageLimits
from nimbus.store.code import CodeStore
from nimbus.store.database import Database
from nimbus.store.functions import FunctionStore
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

    async def start(self) -> None:
        """Start the background parts (log writer, idle reaper)."""
        self.logs.start()
        self.pool.start()

    async def aclose(self) -> None:
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
    )
    code.collect_garbage(functions.code_references())
    return services


def services(request: Request) -> Services:
    return request.app.state.services
