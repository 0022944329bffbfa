"""Warm execution environments per (function, version, deployment), reused one
invocation at a time.

An invocation takes the most recently used idle environment of its key (the warmest)
or cold-starts a new one; more environments start under concurrent load. After the
call the environment goes back to the idle stack unless it timed out, ran out of
memory, crashed or its function changed since. A reaper stops environments idle for
longer than ``idle_seconds``.

The sandbox manager has a fixed number of uids, one per environment. When a cold start
finds none free, the manager calls ``evict_idle``: the least recently used idle
environment of any function (provisioned ones excepted) is stopped to make room, as
Lambda reclaims idle capacity; with none idle, the cold start is refused with 429.

Idle environments are frozen, as on Lambda between invocations: what a function left
running gets no CPU until its next invocation thaws it. The freeze comes once an
environment has been idle for ``FREEZE_AFTER_S`` (a freezer write costs tens of
microseconds to milliseconds on cgroup v1, so an environment in steady use, taken again
within milliseconds, is never frozen; the thaw is paid by an invocation after a pause).

When a function changes (``changed``: its code or configuration updated, a version or
the function deleted), the environments it no longer runs are stopped at once, idle
ones now and busy ones when their invocation ends, in every process that has a pool
(async workers hear of changes from the server).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NamedTuple

from nimbus.sandbox import Environment, EnvironmentSpec, Invocation, Outcome, SandboxManager
from nimbus.threads import blocking

log = logging.getLogger("nimbus.invocation.pool")

FREEZE_AFTER_S = 0.02  # idle this long, an environment is frozen until its next use
# (function name, version) -> that version's deployment now, None when it is gone.
DeploymentLookup = Callable[[str, str], "str | None"]


class PoolKey(NamedTuple):
    function_name: str
    version: str
    deployment: str  # FunctionVersion.deployment: a change means new environments


@dataclass
class Ran:
    """An outcome plus what the pool knows about how it ran."""

    outcome: Outcome
    cold: bool
    init_ms: float | None
    init_logs: bytes
    log_stream: str
    restored: bool = False  # a cold start from a SnapStart template: init_ms is its restore


@dataclass(eq=False)
class _Idle:
    env: Environment
    since: float
    taken: bool = False  # handed out again (or stopped): nothing left to freeze


class Pool:
    """Environments by key; the only place environments are started and stopped."""

    def __init__(self, manager: SandboxManager, idle_seconds: float = 300.0) -> None:
        self.manager = manager
        self.idle_seconds = idle_seconds
        self._idle: dict[PoolKey, list[_Idle]] = defaultdict(list)
        self._busy: dict[PoolKey, int] = defaultdict(int)
        self._current: dict[tuple[str, str], str] = {}  # (name, version) -> deployment
        self._reaper: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        # Provisioned concurrency: environments kept initialised, exempt from reaping.
        self._wanted: dict[PoolKey, int] = {}
        self._spec_for: dict[PoolKey, Callable[[], EnvironmentSpec]] = {}
        self._provisioned: dict[PoolKey, set[Environment]] = defaultdict(set)
        self._provision_errors: dict[PoolKey, str] = {}
        self._replenishing: dict[PoolKey, asyncio.Task[None]] = {}
        self._thawed: deque[_Idle] = deque()  # idle, not frozen yet, oldest first
        self._freezer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._checks: set[asyncio.Task[None]] = set()
        manager.evict = self.evict_idle  # the manager's way to room when its uids run out

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._reaper = self._loop.create_task(self._reap_forever())

    def stats(self) -> dict[str, int]:
        return {
            "idle": sum(len(v) for v in self._idle.values()),
            "busy": sum(self._busy.values()),
        }

    def busy_by_function(self) -> dict[str, int]:
        """Invocations running here now (or starting their environment), per function."""
        counts: dict[str, int] = {}
        for key, busy in self._busy.items():  # a key leaves when its count reaches 0
            counts[key.function_name] = counts.get(key.function_name, 0) + busy
        return counts

    def function_names(self) -> set[str]:
        """The functions this pool keeps environments of."""
        return {key.function_name for key in self._idle}

    def has_idle(self, key: PoolKey) -> bool:
        """Whether an environment of ``key`` waits idle here (warm or provisioned)."""
        return bool(self._idle.get(key))

    def idle_by_version(self) -> dict[str, int]:
        """Idle warm environments per "function:version" (what a worker announces)."""
        counts: dict[str, int] = {}
        for key, stack in self._idle.items():
            name = f"{key.function_name}:{key.version}"
            counts[name] = counts.get(name, 0) + len(stack)
        return counts

    async def run(
        self,
        key: PoolKey,
        spec_for: Callable[[], EnvironmentSpec],
        invocation: Invocation,
        on_cold: Callable[[], Awaitable[None]] | None = None,
    ) -> Ran:
        self._retire_stale(key)
        env, cold = self._take(key), False
        # Busy from here, a cold start included: what ConcurrentExecutions counts.
        self._busy[key] += 1
        try:
            if env is None:
                cold = True
                if on_cold is not None:
                    await on_cold()
                env = await self.manager.start(spec_for())
            # The timeout covers the invocation, not the cold start (it has its own limit).
            invocation.deadline_ms = int(time.time() * 1000) + env.spec.timeout_s * 1000
            try:
                outcome = await env.invoke(invocation)
            except BaseException:
                self._discard(env)
                raise
        finally:
            left = self._busy[key] - 1
            if left:
                self._busy[key] = left
            else:  # gone, so what reads the counts walks only what runs
                del self._busy[key]
        if outcome.reusable and env.alive and self._current.get(key[:2]) == key.deployment:
            self._rest(key, env)
        else:
            self._discard(env)
        return Ran(
            outcome,
            cold,
            env.init_duration_ms if cold else None,
            env.init_logs if cold else b"",
            env.spec.log_stream,
            cold and env.restored,
        )

    def _take(self, key: PoolKey) -> Environment | None:
        stack = self._idle.get(key)
        while stack:
            idle = stack.pop()
            idle.taken = True
            if idle.env.alive:
                return idle.env
            self._discard(idle.env)
        return None

    # -- freezing idle environments ---------------------------------------------------

    def _rest(self, key: PoolKey, env: Environment) -> None:
        """Put ``env`` on its key's idle stack; it is frozen if it stays there."""
        idle = _Idle(env, time.monotonic())
        self._idle[key].append(idle)
        self._thawed.append(idle)
        if self._freezer is None or self._freezer.done():
            self._freezer = asyncio.get_running_loop().create_task(self._freeze_idle())

    async def _freeze_idle(self) -> None:
        """Freeze each environment idle for FREEZE_AFTER_S, oldest first; ends when none
        is waiting (``_rest`` starts it again)."""
        thawed = self._thawed
        while thawed:
            idle = thawed[0]
            if idle.taken or not idle.env.alive:
                thawed.popleft()
                continue
            wait = idle.since + FREEZE_AFTER_S - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            thawed.popleft()
            idle.env.freeze()

    def _retire_stale(self, key: PoolKey) -> None:
        """A new deployment of (function, version) makes older environments useless."""
        short = (key.function_name, key.version)
        if self._current.get(short) == key.deployment:
            return
        self._current[short] = key.deployment
        for other in [k for k in self._idle if k[:2] == short and k != key]:
            for idle in self._idle.pop(other):
                self._discard(idle.env)

    async def evict_idle(self) -> bool:
        """Make room for a cold start: stop the least recently used idle environment
        (any key; provisioned environments are kept) and return once it has released
        its resources, or wait for an environment already being stopped. False when
        there is neither: everything the manager holds is busy or provisioned."""
        oldest: tuple[PoolKey, _Idle] | None = None
        for key, stack in self._idle.items():
            provisioned = self._provisioned.get(key, ())
            for idle in stack:  # oldest first: the stack grows at its end
                if idle.env not in provisioned:
                    if oldest is None or idle.since < oldest[1].since:
                        oldest = (key, idle)
                    break
        if oldest is not None:
            key, idle = oldest
            self._idle[key].remove(idle)
            if not self._idle[key]:
                del self._idle[key]
            log.info("evicting an idle environment of %s:%s to make room", key.function_name,
                     key.version)
            task = asyncio.get_running_loop().create_task(idle.env.stop())
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)
            await asyncio.shield(task)  # a cancelled cold start must not cut a stop short
            return True
        if self._stopping:
            await asyncio.wait(set(self._stopping), return_when=asyncio.FIRST_COMPLETED)
            return True
        return False

    # -- functions that changed ----------------------------------------------------------

    def changed(self, function_name: str, lookup: DeploymentLookup) -> None:
        """A function changed (any thread: the store calls its listeners where it
        commits): stop at once the environments of its versions whose deployment is not
        ``lookup``'s any more (or that are gone), and the templates of deleted versions."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._check, function_name, lookup)

    def _check(self, function_name: str, lookup: DeploymentLookup) -> None:
        versions = {k.version for k in self._idle if k.function_name == function_name}
        versions |= {k.version for k, n in self._busy.items()
                     if n and k.function_name == function_name}
        versions |= self.manager.templates.versions(function_name)
        if versions:
            task = asyncio.get_running_loop().create_task(
                self._retire_changed(function_name, sorted(versions), lookup))
            self._checks.add(task)
            task.add_done_callback(self._checks.discard)

    async def _retire_changed(self, function_name: str, versions: list[str],
                              lookup: DeploymentLookup) -> None:
        for version in versions:
            try:
                deployment = await blocking(lookup, function_name, version)
            except Exception as exc:  # the store is unreachable: the next run retires
                log.warning("cannot look up %s:%s after a change: %s", function_name,
                            version, exc)
                continue
            self._retire(function_name, version, deployment)
            if deployment is None:
                await self.manager.templates.drop_version(function_name, version)

    def _retire(self, function_name: str, version: str, deployment: str | None) -> None:
        """Environments of (function, version) not of ``deployment`` (None: the version
        is gone) stop: idle ones now, busy ones after their invocation (``run``)."""
        short = (function_name, version)
        if deployment is None:
            self._current.pop(short, None)
        else:
            self._current[short] = deployment
        for key in [k for k in self._idle if k[:2] == short and k.deployment != deployment]:
            self.unprovision(key)  # nothing may start again for it
            for idle in self._idle.pop(key):
                idle.taken = True
                self._discard(idle.env)

    def _discard(self, env: Environment) -> None:
        for key, envs in self._provisioned.items():
            if env in envs:
                envs.discard(env)
                self._schedule_replenish(key)
                break
        task = asyncio.get_running_loop().create_task(env.stop())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(min(self.idle_seconds / 2, 30.0))
            self.reap()

    def reap(self) -> int:
        """Stop environments idle for longer than ``idle_seconds``, and SnapStart
        templates with no environment as long; returns how many environments."""
        for template in self.manager.templates.reap(self.idle_seconds):
            task = asyncio.get_running_loop().create_task(template.close())
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)
        deadline = time.monotonic() - self.idle_seconds
        reaped = 0
        for key in list(self._idle):
            provisioned = self._provisioned.get(key, set())
            keep = [
                i
                for i in self._idle[key]
                if i.env.alive and (i.since > deadline or i.env in provisioned)
            ]
            for idle in self._idle[key]:
                if idle not in keep:
                    self._discard(idle.env)
                    reaped += 1
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        return reaped

    # -- provisioned concurrency ----------------------------------------------------

    async def provision(
        self, key: PoolKey, spec_for: Callable[[], EnvironmentSpec], count: int
    ) -> None:
        """Keep ``count`` (>= 1) initialised environments for ``key``; returns once the
        first round of starts is done (``provisioned`` reports progress and errors)."""
        self._retire_stale(key)
        self._wanted[key] = count
        self._spec_for[key] = spec_for
        kept = self._provisioned[key]
        # A lowered count hands the extra environments (idle ones first) to the ordinary
        # pool, where the reaper stops them once idle.
        idle = {i.env for i in self._idle.get(key, ())}
        for env in sorted(kept, key=lambda e: e not in idle)[: max(0, len(kept) - count)]:
            kept.discard(env)
        self._schedule_replenish(key)
        await self._replenishing[key]

    def unprovision(self, key: PoolKey) -> None:
        """Hand the key's kept environments to the ordinary idle pool (and its reaper)."""
        self._wanted.pop(key, None)
        self._spec_for.pop(key, None)
        self._provisioned.pop(key, None)
        self._provision_errors.pop(key, None)

    def provisioned(self, key: PoolKey) -> tuple[int, str | None]:
        """(environments allocated, the last error starting one, if any)."""
        return len(self._provisioned.get(key, ())), self._provision_errors.get(key)

    def _schedule_replenish(self, key: PoolKey) -> None:
        running = self._replenishing.get(key)
        if key not in self._wanted or (running is not None and not running.done()):
            return
        self._replenishing[key] = asyncio.get_running_loop().create_task(self._replenish(key))

    async def _replenish(self, key: PoolKey) -> None:
        while len(self._provisioned[key]) < self._wanted.get(key, 0):
            try:
                env = await self.manager.start(self._spec_for[key]())
            except Exception as exc:  # reported through the config's status
                self._provision_errors[key] = f"{type(exc).__name__}: {exc}"
                log.warning("provisioning %s failed: %s", key, exc)
                return
            if key not in self._wanted:  # released meanwhile
                self._discard(env)
                return
            self._provision_errors.pop(key, None)
            self._provisioned[key].add(env)
            self._rest(key, env)

    async def close(self) -> None:
        self._wanted.clear()
        for task in self._replenishing.values():
            task.cancel()
        background = [self._reaper, self._freezer, *self._checks]
        for running in background:
            if running is not None:
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running
        for key in list(self._idle):
            for idle in self._idle.pop(key):
                self._discard(idle.env)
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)
