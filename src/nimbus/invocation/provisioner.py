"""Provisioned concurrency: keeps the configured number of environments initialised for
a published version or alias, and says how far along they are."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from nimbus.errors import NimbusError, ResourceNotFound
from nimbus.invocation.invoker import Invoker
from nimbus.invocation.pool import PoolKey
from nimbus.models import ProvisionedConfig
from nimbus.store.provisioned import ProvisionedStore
from nimbus.threads import blocking

log = logging.getLogger("nimbus.invocation.provisioner")


@dataclass(frozen=True)
class ProvisionedStatus:
    """How far a config's environments are from what it asks for."""

    requested: int
    allocated: int  # initialised and ready (Lambda's Allocated and Available)
    status: str  # READY, IN_PROGRESS or FAILED
    reason: str | None  # why environments failed to start, if they did


class Provisioner:
    """Reconciles stored configs with the pool (at start, on change, and on put)."""

    def __init__(self, store: ProvisionedStore, invoker: Invoker) -> None:
        self.store = store
        self.invoker = invoker
        self.pool = invoker.pool
        self._keys: dict[tuple[str, str], PoolKey] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # Alias moves and deletions change what should be warm: look again on any change.
        self.store.functions.on_change(lambda name: loop.call_soon_threadsafe(self._changed, name))
        for config in await blocking(self.store.all):
            self.reconcile_soon(config.function_name, config.qualifier)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def _changed(self, function: str) -> None:
        for name, qualifier in list(self._keys):
            if name == function:
                self.reconcile_soon(name, qualifier)

    def reconcile_soon(self, function: str, qualifier: str) -> None:
        task = asyncio.get_running_loop().create_task(self._reconcile(function, qualifier))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reconcile(self, function: str, qualifier: str) -> None:
        try:
            config = await blocking(self.store.get, function, qualifier)
        except NimbusError:  # deleted, or the function is gone
            self.release(function, qualifier)
            return
        await self._keep(config, config.requested)

    async def _keep(self, config: ProvisionedConfig, count: int) -> None:
        """Keep ``count`` (>= 1) environments of what ``config`` names now (an alias
        moved: the old version's go back to the ordinary pool)."""
        try:
            resolution = await self.invoker.targets.resolve(config.function_name, config.qualifier)
        except ResourceNotFound:
            return
        version = resolution.versions[
            resolution.alias.function_version if resolution.alias else config.qualifier
        ]
        key = PoolKey(version.function_name, version.version, version.deployment)
        old = self._keys.get((config.function_name, config.qualifier))
        if old is not None and old != key:
            self.pool.unprovision(old)
        self._keys[(config.function_name, config.qualifier)] = key
        record = resolution.record
        await self.invoker.ensure_code(version)
        await self.pool.provision(key, lambda: self.invoker.spec(version, record), count)

    def release(self, function: str, qualifier: str) -> None:
        key = self._keys.pop((function, qualifier), None)
        if key is not None:
            self.pool.unprovision(key)

    def allocated(self, function: str, qualifier: str) -> tuple[int, str | None]:
        """(environments this node keeps initialised for the config, the last error
        starting one)."""
        key = self._keys.get((function, qualifier))
        return self.pool.provisioned(key) if key else (0, None)

    async def status(self, config: ProvisionedConfig) -> ProvisionedStatus:
        allocated, error = self.allocated(config.function_name, config.qualifier)
        return status_of(config, allocated, error)


def status_of(config: ProvisionedConfig, allocated: int, error: str | None) -> ProvisionedStatus:
    """A config's status with ``allocated`` environments initialised and ``error`` the
    last failure to start one, if any."""
    allocated = min(allocated, config.requested)
    status = "READY" if allocated >= config.requested else "IN_PROGRESS"
    if error and allocated < config.requested:
        status = "FAILED"
    return ProvisionedStatus(config.requested, allocated, status, error)
