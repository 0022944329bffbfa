"""The long-lived parts of a running nimbus, built once at start-up and shared by the
API handlers (through ``services(request)``)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from nimbus.api.code_location import CodeSigner
from nimbus.config import Config
from nimbus.store.aliases import AliasStore
from nimbus.store.archive import PackageLimits
from nimbus.store.code import CodeStore
from nimbus.store.database import Database
from nimbus.store.functions import FunctionStore

blocking = run_in_threadpool  # sqlite, zip and file work never runs on the event loop


@dataclass
class Services:
    config: Config
    db: Database
    code: CodeStore
    functions: FunctionStore
    aliases: AliasStore
    signer: CodeSigner

    def close(self) -> None:
        self.db.dispose()


def open_services(config: Config) -> Services:
    """Create the data dir, migrate the schema and open the stores (blocking)."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(config.effective_database_url)
    db.migrate()
    code = CodeStore(
        config.data_dir / "code",
        PackageLimits(max_unzipped=config.max_unzipped_size, max_entries=config.max_zip_entries),
    )
    functions = FunctionStore(db, config.function_arn)
    services = Services(
        config=config,
        db=db,
        code=code,
        functions=functions,
        aliases=AliasStore(functions),
        signer=CodeSigner(config.data_dir / "code-signing.key"),
    )
    code.collect_garbage(functions.code_references())
    return services


def services(request: Request) -> Services:
    return request.app.state.services
