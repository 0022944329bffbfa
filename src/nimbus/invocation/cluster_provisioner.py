"""Provisioned concurrency across a cluster: a config of ``n`` keeps ``n`` initialised
environments in the whole cluster, spread over the nodes that run invocations.

Every node (server or worker) runs a ``ClusterProvisioner``. Every ``RECONCILE_S``, and
at once when a config or function changes, it reads the configs from the shared
database and takes its share of each: the nodes that run invocations are the worker
nodes while any is connected (the servers then send everything to them), else the
servers; each of those keeps ``n // nodes``, one more for the first ``n % nodes`` of
them by rank (their shares add up to ``n``), and the others none. The
share is a number of slots held in PostgreSQL (``nimbus.store.provisioned_slots``), so
the cluster never keeps more than ``n``, whatever the nodes believe about each other;
slots a dead or cut-off node held are free again once its session ends, and the others
take them at their next round; a node that cannot reach the database lets its
provisioned environments go (to the ordinary pool, which reaps them once idle), since
it no longer holds their slots. A node that fails to start an environment for a slot
(memory, a broken init, its code not found) keeps only what it has for ``RETRY_S``,
gives the rest back, and notes the failure on the config's row; while a failure is
noted, the other nodes may take more than their share, so they fill the gap if they
can.
Status is the cluster's, whichever server is asked: allocated is the number of
initialised environments counted in the database, FAILED (with the reason) while fewer
are allocated than asked and a node noted a failure within ``2 * RETRY_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from nimbus.clock import now_ms
from nimbus.errors import ClusterUnavailable
from nimbus.invocation.invoker import Invoker
from nimbus.invocation.provisioner import ProvisionedStatus, Provisioner, status_of
from nimbus.models import ProvisionedConfig
from nimbus.store.provisioned import ProvisionedStore
from nimbus.store.provisioned_slots import ProvisionedSlots
from nimbus.threads import blocking

log = logging.getLogger("nimbus.invocation.cluster_provisioner")

RECONCILE_S = 2.0
RETRY_S = 30.0

Name = tuple[str, str]  # (function, qualifier)


def _scopes(name: Name) -> tuple[str, str]:
    """The slot scopes of a config: held, and initialised."""
    return f"config:{name[0]}:{name[1]}", f"ready:{name[0]}:{name[1]}"


class ClusterProvisioner(Provisioner):
    """See the module docstring."""

    def __init__(self, store: ProvisionedStore, invoker: Invoker, slots: ProvisionedSlots,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(store, invoker)
        self.slots = slots
        self.clock = clock
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._counts: dict[Name, int] = {}  # slots held, as last handed to the pool
        self._failing: dict[Name, float] = {}  # no more slots taken until then
        self._moved: set[str] = set()  # functions changed since the last round

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.store.functions.on_change(lambda name: loop.call_soon_threadsafe(self._touch, name))
        self._runner = asyncio.ensure_future(self._run())

    def _touch(self, function: str) -> None:
        # An alias moved or a version went: what a config names may be another version.
        self._moved.add(function)
        self._wake.set()

    async def close(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        await super().close()
        await self.slots.close()  # the session ends: the others take the slots over

    def reconcile_soon(self, function: str, qualifier: str) -> None:
        self._wake.set()

    def release(self, function: str, qualifier: str) -> None:
        self._wake.set()  # the slots go back at the next round, the config being gone

    async def status(self, config: ProvisionedConfig) -> ProvisionedStatus:
        _, ready = _scopes((config.function_name, config.qualifier))
        allocated = await self.slots.count(ready)
        noted = await blocking(self.store.failure, config.function_name, config.qualifier)
        # A failure any node met lately (it retries every RETRY_S while it fails).
        recent = noted is not None and noted[1] >= now_ms() - 2 * RETRY_S * 1000
        return status_of(config, allocated, noted[0] if recent and noted else None)

    async def _run(self) -> None:
        while True:
            try:
                await self._rebalance()
            except ClusterUnavailable as exc:
                # The session is gone, and with it every slot this node held: the other
                # nodes take them over, so this one stops keeping environments for them.
                log.warning("provisioned concurrency not reconciled, this node's share "
                            "released: %s", exc)
                self._give_up()
            except Exception:
                log.exception("provisioned concurrency not reconciled")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RECONCILE_S):
                    await self._wake.wait()
            self._wake.clear()

    async def _keep_or_fail(self, name: Name, config: ProvisionedConfig, count: int) -> None:
        try:
            await self._keep(config, count)
        except Exception as exc:  # resolving the version, fetching its code...
            log.warning("provisioning %s:%s failed: %s", name[0], name[1], exc)
            await self._failed(config, f"{type(exc).__name__}: {exc}")

    async def _failed(self, config: ProvisionedConfig, reason: str) -> None:
        """This node could not start the share it holds: it takes no more for RETRY_S
        (the next rounds give back what it did not start, for another node to try), and
        the failure is noted where every server's status reads it."""
        name = (config.function_name, config.qualifier)
        self._failing[name] = self.clock() + RETRY_S
        self._wake.set()
        try:
            await blocking(self.store.record_failure, config, reason, now_ms())
        except Exception as exc:  # the database away: the next failure notes it
            log.warning("cannot note the provisioning failure of %s:%s: %s", *name, exc)

    def _give_up(self) -> None:
        for name in list(self._counts):
            del self._counts[name]
            Provisioner.release(self, *name)

    async def _rebalance(self) -> None:
        changed, self._moved = self._moved, set()
        configs = {(c.function_name, c.qualifier): c for c in await blocking(self.store.all)}
        members = await self.slots.members()
        hosting = "worker" if members.counts.get("worker") else "server"
        nodes = max(1, members.counts.get(hosting, 0))
        for name in set(self._counts) - set(configs):  # deleted
            await self._settle(name, None, 0)
        failing = await blocking(self.store.failures_since, now_ms() - int(2 * RETRY_S * 1000))
        for name, config in configs.items():
            # Shares that add up to the count: the first count % nodes nodes keep one more.
            # While some node fails to start its share, the others may take what it gave
            # back (hold never lets the cluster exceed the count).
            n = config.requested
            share = n // nodes + (members.rank < n % nodes) if self.slots.role == hosting else 0
            if share and name in failing:
                share = n
            await self._settle(name, config, share, name[0] in changed)

    async def _settle(self, name: Name, config: ProvisionedConfig | None, share: int,
                      changed: bool = False) -> None:
        held_scope, ready_scope = _scopes(name)
        limit = config.requested if config is not None else 0
        allocated, error = self.allocated(*name)
        now = self.clock()
        if error and config is not None and allocated < self._counts.get(name, 0):
            await self._failed(config, error)
        if self._failing.get(name, 0.0) > now:
            share = min(share, allocated)  # let another node try the rest
        held = len(await self.slots.hold(held_scope, limit, share))
        if held == 0:
            if self._counts.pop(name, None) is not None:
                Provisioner.release(self, *name)
        elif config is not None and (changed or held != self._counts.get(name)):
            self._counts[name] = held
            task = asyncio.ensure_future(self._keep_or_fail(name, config, held))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            # Once they are initialised, the next round counts them ready at once.
            task.add_done_callback(lambda _: self._wake.set())
        allocated, _ = self.allocated(*name)
        await self.slots.hold(ready_scope, limit, min(allocated, held))
