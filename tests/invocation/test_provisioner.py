"""Provisioned concurrency (``Provisioner``) on real stores and the fake sandbox manager.

Covers: configs stored before start are reconciled at start, and a put afterwards when
``reconcile_soon`` is called (as the API does); ``ProvisionedStatus`` READY,
IN_PROGRESS (starts held by the test) and FAILED (init errors, with the reason) and its
recovery; invocations of a provisioned version run warm; release on delete (called
directly, or through the store's change listener) and when the function is deleted;
an alias move re-provisions the new version and releases the old one; changes to other
versions leave the provisioned environments alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nimbus.invocation import pool as pool_module
from nimbus.invocation.pool import PoolKey
from nimbus.invocation.provisioner import ProvisionedStatus, Provisioner
from nimbus.models import Alias, ProvisionedConfig
from tests.fakes import (
    NOW,
    FakeSandboxManager,
    FakeTime,
    Invocations,
    create_function,
    init_error,
    make_invoker,
    open_stores,
    publish,
)


class Parts:
    def __init__(self, invocations: Invocations) -> None:
        self.inv = invocations
        self.stores = invocations.stores
        self.manager = invocations.manager
        self.pool = invocations.pool
        self.provisioner = Provisioner(self.stores.provisioned, invocations.invoker)
        functions = self.stores.functions
        self.v1 = PoolKey("fn", "1", functions.get_version("fn", "1").deployment)
        self.v2 = PoolKey("fn", "2", functions.get_version("fn", "2").deployment)

    def put(self, qualifier: str, requested: int) -> ProvisionedConfig:
        """Store a config and reconcile it, as PutProvisionedConcurrencyConfig does."""
        config = ProvisionedConfig("fn", qualifier, requested, NOW)
        self.stores.provisioned.put(config, 1000, 100)
        self.provisioner.reconcile_soon("fn", qualifier)
        return config

    async def settle(self) -> None:
        """Until every reconciliation asked for (changes included) has finished."""
        await asyncio.sleep(0)  # change notifications arrive through call_soon_threadsafe
        while self.provisioner._tasks:
            await asyncio.gather(*list(self.provisioner._tasks))
            await asyncio.sleep(0)

    async def status(self, config: ProvisionedConfig) -> ProvisionedStatus:
        return await self.provisioner.status(config)


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[Parts]:
    stores = open_stores(tmp_path / "data")
    create_function(stores.functions, "fn")
    publish(stores.functions, "fn", memory_size=256)  # version 1
    publish(stores.functions, "fn", memory_size=512)  # version 2
    invocations = make_invoker(stores, FakeSandboxManager())
    parts = Parts(invocations)
    yield parts
    await parts.provisioner.close()
    await invocations.close()
    stores.close()


async def test_configs_stored_before_start_are_provisioned_at_start(parts: Parts) -> None:
    config = ProvisionedConfig("fn", "1", 2, NOW)
    parts.stores.provisioned.put(config, 1000, 100)
    await parts.provisioner.start()
    await parts.settle()
    assert [(s.version, s.memory_mb) for s in parts.manager.specs] == [("1", 256)] * 2
    assert await parts.status(config) == ProvisionedStatus(2, 2, "READY", None)
    assert parts.pool.provisioned(parts.v1) == (2, None)


async def test_a_put_provisions_and_its_invocations_run_warm(parts: Parts) -> None:
    await parts.provisioner.start()
    config = parts.put("1", 1)
    await parts.settle()
    assert await parts.status(config) == ProvisionedStatus(1, 1, "READY", None)
    result = await parts.inv.invoker.invoke("fn", "1", b"{}")
    assert result.executed_version == "1" and "Init Duration" not in result.log_text
    assert parts.manager.cold_starts == 1


async def test_status_is_in_progress_until_every_environment_is_ready(parts: Parts) -> None:
    await parts.provisioner.start()
    parts.manager.hold_starts()
    config = parts.put("1", 2)
    await parts.manager.next_start()
    assert await parts.status(config) == ProvisionedStatus(2, 0, "IN_PROGRESS", None)
    parts.manager.release_starts()
    await parts.manager.next_start()  # the second begins once the first is kept
    assert await parts.status(config) == ProvisionedStatus(2, 1, "IN_PROGRESS", None)
    parts.manager.release_starts()
    await parts.settle()
    assert await parts.status(config) == ProvisionedStatus(2, 2, "READY", None)


async def test_a_config_never_reconciled_is_in_progress(parts: Parts) -> None:
    config = ProvisionedConfig("fn", "2", 3, NOW)
    assert await parts.status(config) == ProvisionedStatus(3, 0, "IN_PROGRESS", None)


async def test_init_errors_make_the_status_failed_with_the_reason(parts: Parts) -> None:
    await parts.provisioner.start()
    parts.manager.init_error = init_error(message="boom")
    config = parts.put("1", 2)
    await parts.settle()
    reason = "InitError: Runtime.ImportModuleError: boom"
    assert await parts.status(config) == ProvisionedStatus(2, 0, "FAILED", reason)
    # Put again once the function can start: the reason goes with the failure.
    parts.manager.init_error = None
    config = parts.put("1", 2)
    await parts.settle()
    assert await parts.status(config) == ProvisionedStatus(2, 2, "READY", None)


async def test_a_partial_failure_reports_what_was_allocated(parts: Parts) -> None:
    await parts.provisioner.start()
    parts.put("1", 1)
    await parts.settle()
    parts.manager.init_error = init_error(message="out of uids")
    config = parts.put("1", 3)
    await parts.settle()
    assert await parts.status(config) == ProvisionedStatus(
        3, 1, "FAILED", "InitError: Runtime.ImportModuleError: out of uids"
    )


async def test_release_on_delete_hands_the_environments_to_the_reaper(
    parts: Parts, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeTime()
    monkeypatch.setattr(pool_module, "time", clock)
    await parts.provisioner.start()
    parts.put("1", 2)
    await parts.settle()
    parts.stores.provisioned.delete("fn", "1")
    parts.provisioner.release("fn", "1")
    await parts.settle()
    assert parts.pool.provisioned(parts.v1) == (0, None)
    assert parts.manager.cold_starts == 2  # nothing started again
    clock.advance(301.0)  # past idle_seconds: now reaped like any idle environment
    assert parts.pool.reap() == 2


async def test_a_deletion_seen_only_through_the_store_releases_too(parts: Parts) -> None:
    await parts.provisioner.start()
    parts.put("1", 1)
    await parts.settle()
    parts.stores.provisioned.delete("fn", "1")  # no release(): the change listener sees it
    await parts.settle()
    assert parts.pool.provisioned(parts.v1) == (0, None)


async def test_deleting_the_function_releases_its_configs(parts: Parts) -> None:
    await parts.provisioner.start()
    parts.put("1", 1)
    parts.put("2", 1)
    await parts.settle()
    parts.stores.functions.delete("fn", None)
    await parts.settle()
    assert parts.pool.provisioned(parts.v1) == parts.pool.provisioned(parts.v2) == (0, None)


async def test_an_alias_move_provisions_the_new_version_and_releases_the_old(
    parts: Parts,
) -> None:
    parts.stores.aliases.create(Alias("fn", "live", "1", "rev"))
    await parts.provisioner.start()
    config = parts.put("live", 2)
    await parts.settle()
    assert {s.version for s in parts.manager.specs} == {"1"}
    assert parts.pool.provisioned(parts.v1) == (2, None)
    parts.stores.aliases.update("fn", "live", "2", None, None, None)
    await parts.settle()
    assert [s.version for s in parts.manager.specs] == ["1", "1", "2", "2"]
    assert parts.pool.provisioned(parts.v2) == (2, None)
    assert parts.pool.provisioned(parts.v1) == (0, None)
    assert await parts.status(config) == ProvisionedStatus(2, 2, "READY", None)
    moved = await parts.inv.invoker.invoke("fn", "live", b"{}")
    assert moved.executed_version == "2" and "Init Duration" not in moved.log_text


async def test_other_changes_to_the_function_leave_provisioned_environments_alone(
    parts: Parts,
) -> None:
    await parts.provisioner.start()
    config = parts.put("1", 2)
    await parts.settle()
    publish(parts.stores.functions, "fn", memory_size=1024)  # version 3, $LATEST changes
    parts.stores.functions.update_tags("fn", {"team": "a"})
    await parts.settle()
    assert parts.manager.cold_starts == 2
    assert not any(env.stopped.is_set() for env in parts.manager.created)
    assert await parts.status(config) == ProvisionedStatus(2, 2, "READY", None)


async def test_close_cancels_reconciliations_under_way(parts: Parts) -> None:
    await parts.provisioner.start()
    parts.manager.hold_starts()
    parts.put("1", 1)
    await parts.manager.next_start()
    tasks = list(parts.provisioner._tasks)
    assert tasks
    await parts.provisioner.close()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert all(task.cancelled() for task in tasks)
