"""Stand-ins and builders for unit tests that run without root.

``FakeSandboxManager`` implements what ``Pool`` and ``Invoker`` use of
``nimbus.sandbox.SandboxManager`` and ``Environment`` (``start``, ``close``,
``environments``; ``spec``, ``alive``, ``invoke``, ``stop``, ``init_duration_ms``,
``init_logs``), in this process, with no processes and no sleeps. A test scripts it:

* ``manager.handler``: what an invocation returns (``returns``, ``echo``, ``fails``,
  ``times_out``, ``crashes``, ``raises`` or ``sequence`` of them);
* ``manager.init_errors`` / ``manager.init_error``: what a start raises instead;
* ``hold_starts`` / ``hold_invocations``: starts or invocations wait until the test
  releases them, and ``next_start`` / ``next_invocation`` await the moment one begins;
* ``cold_starts``, ``specs``, ``created``, ``stops``: what happened.

A timed-out or crashed invocation stops its environment, as the real one does, and an
environment refuses a second invocation while one runs.

Also: ``FakeClock`` (a ``nimbus.clock.Clock``) and ``FakeTime`` (for modules that read
``time`` directly); ``open_stores`` (the stores on a migrated SQLite database) and
``make_invoker`` (an ``Invoker`` as ``Engine.open`` builds it, on the fake manager);
``open_dispatching`` (a ``Dispatcher`` over a real SQLite queue with a
``ScriptedInvoker``, the clock injected, dead letters the test can await); and
``open_queue_host`` (the server's side of async worker processes: a ``QueueServer``
and the concurrency file) with ``until`` for waiting on another process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from nimbus.config import Config
from nimbus.engine import CONCURRENCY_FILE
from nimbus.errors import TooManyRequests
from nimbus.events.dispatcher import Dispatcher
from nimbus.invocation.concurrency import RESERVED_REASON, ConcurrencyLimiter
from nimbus.invocation.invoker import Invoker, InvokeResult
from nimbus.invocation.pool import Pool
from nimbus.invocation.targets import Targets
from nimbus.models import LATEST, DeadLetter, FunctionVersion
from nimbus.observe.logs import LogStore
from nimbus.queue.backend import QueuedEvent
from nimbus.queue.backends.sqlite import SqliteQueue
from nimbus.sandbox import EnvironmentGone, EnvironmentSpec, InitError, Invocation, Outcome
from nimbus.sandbox import SandboxManager as _RealManager
from nimbus.store.aliases import AliasStore
from nimbus.store.archive import PackageLimits
from nimbus.store.code import CodeStore
from nimbus.store.database import Database
from nimbus.store.dead_letters import DeadLetterStore
from nimbus.store.event_configs import EventConfigStore
from nimbus.store.functions import FunctionStore
from nimbus.store.provisioned import ProvisionedStore
from nimbus.workers.queue_server import QueueServer
from nimbus.workers.worker import CONFIG_ENV

WAIT_S = 5.0  # how long a test waits for something that should happen at once
SHA = "ab" * 32
ROLE = "arn:aws:iam::000000000000:role/lambda-role"
NOW = "2026-01-01T00:00:00.000+0000"

Handler = Callable[["FakeEnvironment", Invocation], "Outcome | Awaitable[Outcome]"]


# -- what an invocation does ------------------------------------------------------------


def returns(
    payload: bytes = b"null", logs: bytes = b"", duration_ms: float = 1.25, memory_mb: int = 40
) -> Handler:
    """The handler returns ``payload`` after printing ``logs``."""
    return lambda env, inv: Outcome(payload, None, logs, duration_ms, memory_mb, True)


def echo(logs: bytes = b"") -> Handler:
    """The handler returns its event."""
    return lambda env, inv: Outcome(inv.payload, None, logs, 1.25, 40, True)


def fails(error_type: str = "ValueError", message: str = "bad input", logs: bytes = b"") -> Handler:
    """The handler raises: a function error; the environment stays usable."""
    body = json.dumps({"errorMessage": message, "errorType": error_type, "stackTrace": []})
    return lambda env, inv: Outcome(body.encode(), "Unhandled", logs, 2.5, 41, True)


def times_out(logs: bytes = b"") -> Handler:
    """The handler outlives the deadline: Lambda's timeout error, the environment ends."""

    def handler(env: FakeEnvironment, inv: Invocation) -> Outcome:
        error = {
            "errorType": "Sandbox.Timedout",
            "errorMessage": f"RequestId: {inv.request_id} Error: Task timed out after "
            f"{env.spec.timeout_s:.2f} seconds",
        }
        duration = env.spec.timeout_s * 1000.0
        return Outcome(json.dumps(error).encode(), "Unhandled", logs, duration, 50, False)

    return handler


def crashes(reason: str = "signal: killed", error_type: str = "Runtime.ExitError") -> Handler:
    """The runtime process dies mid-invocation: Lambda's exit error, the environment ends."""

    def handler(env: FakeEnvironment, inv: Invocation) -> Outcome:
        error = {
            "errorType": error_type,
            "errorMessage": f"RequestId: {inv.request_id} Error: Runtime exited with error: "
            f"{reason}",
        }
        return Outcome(json.dumps(error).encode(), "Unhandled", b"", 3.0, 60, False)

    return handler


def raises(exc: BaseException) -> Handler:
    """``Environment.invoke`` itself raises (the execution layer failed)."""

    def handler(env: FakeEnvironment, inv: Invocation) -> Outcome:
        raise exc

    return handler


def sequence(*handlers: Handler) -> Handler:
    """Each invocation uses the next handler; the last one repeats."""
    remaining = list(handlers)

    def handler(env: FakeEnvironment, inv: Invocation) -> Outcome | Awaitable[Outcome]:
        current = remaining.pop(0) if len(remaining) > 1 else remaining[0]
        return current(env, inv)

    return handler


def init_error(
    error_type: str = "Runtime.ImportModuleError",
    message: str = "Unable to import module 'app': No module named 'app'",
    logs: bytes = b"",
    init_ms: float = 7.5,
    payload: bytes | None = None,
) -> InitError:
    return InitError(error_type, message, logs, init_ms, payload=payload)


# -- the fake execution layer -----------------------------------------------------------


class FakeEnvironment:
    """One execution environment: runs the manager's handler, one invocation at a time."""

    def __init__(self, manager: FakeSandboxManager, spec: EnvironmentSpec, number: int) -> None:
        self.manager = manager
        self.spec = spec
        self.number = number  # 1 for the first environment the manager started
        self.id = f"env-{number}"
        self.alive = True
        self.init_duration_ms = manager.init_ms
        self.init_logs = manager.init_logs
        self.invocations: list[Invocation] = []
        self.stopped = asyncio.Event()
        self.restored = False  # never from a SnapStart template: these tests start them all
        self._busy = False
        self.frozen = False  # as the real one: frozen while idle, thawed by an invocation
        self.freezes = 0

    def __repr__(self) -> str:
        return f"<FakeEnvironment {self.number} {self.spec.function_name}:{self.spec.version}>"

    async def invoke(self, invocation: Invocation) -> Outcome:
        if self._busy:  # as the real Environment: the pool must never share one
            raise RuntimeError(f"environment {self.id} is already running an invocation")
        if not self.alive or self.stopped.is_set():
            raise EnvironmentGone(f"environment {self.id} is not alive")
        self._busy = True
        self.frozen = False
        try:
            self.invocations.append(invocation)
            self.manager.entered.put_nowait((self, invocation))
            if self.manager.invoke_gate is not None:
                await self.manager.invoke_gate.acquire()
            outcome = self.manager.handler(self, invocation)
            if inspect.isawaitable(outcome):
                outcome = await outcome
            if not outcome.reusable:  # the real one ends itself after a timeout or crash
                await self.stop()
            return outcome
        finally:
            self._busy = False

    def freeze(self) -> bool:
        if self.frozen or self._busy or not self.alive:
            return False
        self.frozen = True
        self.freezes += 1
        return True

    def die(self) -> None:
        """The process ends on its own (while idle): not alive, not yet stopped."""
        self.alive = False

    async def stop(self) -> None:
        if self.stopped.is_set():
            return
        self.alive = False
        self.stopped.set()
        self.manager.stops += 1


class FakeTemplates:
    """A manager's SnapStart templates: none (tests/sandbox/test_snapstart.py has them)."""

    def reap(self, idle_seconds: float) -> list[object]:
        return []

    def versions(self, function_name: str) -> set[str]:
        return set()

    async def drop_version(self, function_name: str, version: str) -> None:
        return None


class FakeSandboxManager:
    """What Pool and Invoker need of ``SandboxManager``, scripted by the test."""

    def __init__(
        self, handler: Handler | None = None, *, init_ms: float = 12.5, init_logs: bytes = b""
    ) -> None:
        self.handler: Handler = handler or returns()
        self.init_ms = init_ms
        self.init_logs = init_logs
        self.init_errors: list[BaseException] = []  # raised once each, by the next starts
        self.init_error: BaseException | None = None  # raised by every start while set
        self.start_gate: asyncio.Semaphore | None = None
        self.invoke_gate: asyncio.Semaphore | None = None
        self.specs: list[EnvironmentSpec] = []  # every start asked for, in order
        self.created: list[FakeEnvironment] = []  # every start that succeeded
        self.begun: asyncio.Queue[EnvironmentSpec] = asyncio.Queue()
        self.entered: asyncio.Queue[tuple[FakeEnvironment, Invocation]] = asyncio.Queue()
        self.stops = 0
        self.closed = False
        self.isolation = "namespace"
        self.templates = FakeTemplates()
        self._numbers = itertools.count(1)

    # What the code under test calls.

    async def start(self, spec: EnvironmentSpec) -> FakeEnvironment:
        self.specs.append(spec)
        self.begun.put_nowait(spec)
        if self.start_gate is not None:
            await self.start_gate.acquire()
        if self.init_errors:
            raise self.init_errors.pop(0)
        if self.init_error is not None:
            raise self.init_error
        env = FakeEnvironment(self, spec, next(self._numbers))
        self.created.append(env)
        return env

    @property
    def environments(self) -> set[FakeEnvironment]:
        return {env for env in self.created if not env.stopped.is_set()}

    async def close(self) -> None:
        self.closed = True
        for env in list(self.created):
            await env.stop()

    # What the test uses.

    @property
    def cold_starts(self) -> int:
        """Starts that gave an environment."""
        return len(self.created)

    def as_manager(self) -> _RealManager:
        """Typed as the real manager, for constructors annotated with it."""
        return cast(_RealManager, self)

    def hold_starts(self) -> None:
        self.start_gate = asyncio.Semaphore(0)

    def release_starts(self, count: int = 1) -> None:
        assert self.start_gate is not None, "hold_starts first"
        for _ in range(count):
            self.start_gate.release()

    def hold_invocations(self) -> None:
        self.invoke_gate = asyncio.Semaphore(0)

    def release_invocations(self, count: int = 1) -> None:
        assert self.invoke_gate is not None, "hold_invocations first"
        for _ in range(count):
            self.invoke_gate.release()

    async def next_start(self) -> EnvironmentSpec:
        """The spec of the next start to begin (or one that already began unclaimed)."""
        return await asyncio.wait_for(self.begun.get(), WAIT_S)

    async def next_invocation(self) -> tuple[FakeEnvironment, Invocation]:
        """The next invocation an environment began (or one already begun, unclaimed)."""
        return await asyncio.wait_for(self.entered.get(), WAIT_S)


# -- time -------------------------------------------------------------------------------


class FakeClock:
    """A ``nimbus.clock.Clock`` (epoch milliseconds) that moves only when told to."""

    def __init__(self, start_ms: int | None = None) -> None:
        self.now = int(time.time() * 1000) if start_ms is None else start_ms

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


class FakeTime:
    """Stands in for the ``time`` module in a module that reads it directly: the real
    clocks plus an offset the test moves (``advance``)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def time(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic() + self.offset


# -- stores and the invoker -------------------------------------------------------------


@dataclass
class Stores:
    """The metadata stores on a fresh SQLite database under ``config.data_dir``."""

    config: Config
    db: Database
    functions: FunctionStore
    aliases: AliasStore
    provisioned: ProvisionedStore
    event_configs: EventConfigStore
    dead_letters: DeadLetterStore

    def close(self) -> None:
        self.db.dispose()


def open_stores(data_dir: Path, **settings: Any) -> Stores:
    config = Config(data_dir=data_dir, **settings)
    data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(config.effective_database_url)
    db.migrate()
    functions = FunctionStore(db, config.function_arn)
    return Stores(
        config=config,
        db=db,
        functions=functions,
        aliases=AliasStore(functions),
        provisioned=ProvisionedStore(functions),
        event_configs=EventConfigStore(functions),
        dead_letters=DeadLetterStore(db),
    )


@contextmanager
def stores_in(data_dir: Path, **settings: Any) -> Iterator[Stores]:
    stores = open_stores(data_dir, **settings)
    try:
        yield stores
    finally:
        stores.close()


def latest(name: str, **fields: Any) -> FunctionVersion:
    """A function's $LATEST as CreateFunction stores it."""
    values: dict[str, Any] = {
        "function_name": name,
        "version": LATEST,
        "runtime": "python3.12",
        "handler": "app.handler",
        "role": ROLE,
        "code_sha256": SHA,
        "code_size": 10,
        "last_modified": NOW,
        "revision_id": str(uuid.uuid4()),
    }
    values.update(fields)
    return FunctionVersion(**values)


def create_function(
    functions: FunctionStore, name: str, tags: dict[str, str] | None = None, **fields: Any
) -> FunctionVersion:
    return functions.create(latest(name, **fields), tags or {}, publish=False)


def publish(functions: FunctionStore, name: str, **changes: Any) -> FunctionVersion:
    """Change $LATEST (a new revision, e.g. ``memory_size``) and publish it as a version."""
    return functions.update_latest(
        name,
        lambda v: v.replace(revision_id=str(uuid.uuid4()), **changes),
        None,
        publish=True,
    )


@dataclass
class Invocations:
    """An ``Invoker`` on real stores, a real limiter and log store, and ``manager``."""

    stores: Stores
    manager: FakeSandboxManager
    pool: Pool
    limiter: ConcurrencyLimiter
    logs: LogStore
    code: CodeStore
    targets: Targets
    invoker: Invoker

    async def close(self) -> None:
        await self.pool.close()
        await self.manager.close()
        self.limiter.close()
        await self.logs.close()


def make_invoker(
    stores: Stores, manager: FakeSandboxManager, idle_seconds: float = 300.0
) -> Invocations:
    """Built as ``Engine.open`` builds it, with ``manager`` for the sandboxes (call from
    the event loop: the pool and log store belong to it)."""
    config = stores.config
    pool = Pool(manager.as_manager(), idle_seconds=idle_seconds)
    limits = PackageLimits(max_unzipped=1 << 20, max_entries=100)
    code = CodeStore(config.data_dir / "code", limits)
    logs = LogStore(stores.db)  # the table, not files: read back with logs.read
    limiter = ConcurrencyLimiter.create(
        config.data_dir / "concurrency", config.concurrency_limit, processes=1
    )
    targets = Targets(stores.functions, stores.aliases)
    invoker = Invoker(config, targets, code, pool, logs, limiter)
    return Invocations(stores, manager, pool, limiter, logs, code, targets, invoker)


# -- the async path ---------------------------------------------------------------------


class WatchedDeadLetters(DeadLetterStore):
    """The dead-letter store, with each letter also handed to the test as it is added
    (``add`` runs in a worker thread; create this on the event loop)."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self._loop = asyncio.get_running_loop()
        self.added: asyncio.Queue[DeadLetter] = asyncio.Queue()

    def add(self, letter: DeadLetter) -> int:
        letter_id = super().add(letter)
        added = dataclasses.replace(letter, id=letter_id)
        self._loop.call_soon_threadsafe(self.added.put_nowait, added)
        return letter_id

    async def next(self) -> DeadLetter:
        return await asyncio.wait_for(self.added.get(), WAIT_S)


@dataclass
class Call:
    """One ``invoke`` the dispatcher made."""

    name: str
    qualifier: str | None
    payload: bytes
    trace_id: str | None
    request_id: str | None


Step = Callable[[Call], InvokeResult]


def succeed(payload: bytes = b"null") -> Step:
    return lambda call: InvokeResult(payload, None, LATEST, "", call.request_id or "")


def fail(error_type: str = "ValueError", message: str = "bad") -> Step:
    body = json.dumps({"errorMessage": message, "errorType": error_type}).encode()
    return lambda call: InvokeResult(body, "Unhandled", LATEST, "", call.request_id or "")


def throttle() -> Step:
    def step(call: Call) -> InvokeResult:
        raise TooManyRequests("Rate Exceeded.", reason=RESERVED_REASON)

    return step


class ScriptedInvoker:
    """Stands in for ``Invoker`` under the dispatcher: a call to function ``name`` runs
    the next step of ``scripts[name]`` (the last one repeats; unscripted: succeed) and is
    recorded in ``calls``. ``targets`` is the real one (the dispatcher reads DLQ
    settings through it)."""

    def __init__(self, targets: Targets) -> None:
        self.targets = targets
        self.scripts: dict[str, list[Step]] = {}
        self.calls: asyncio.Queue[Call] = asyncio.Queue()
        self.made: list[Call] = []

    def script(self, name: str, *steps: Step) -> None:
        self.scripts[name] = list(steps)

    async def invoke(
        self,
        name: str,
        qualifier: str | None,
        payload: bytes,
        client_context: str | None = None,
        trace_id: str | None = None,
        request_id: str | None = None,
        on_run: Callable[[], None] | None = None,
    ) -> InvokeResult:
        call = Call(name, qualifier, payload, trace_id, request_id)
        self.made.append(call)
        self.calls.put_nowait(call)
        steps = self.scripts.get(name) or [succeed()]
        step = steps.pop(0) if len(steps) > 1 else steps[0]
        result = step(call)  # a throttle or nimbus's own error raises: nothing ran
        if on_run is not None:
            on_run()
        return result

    async def next_call(self) -> Call:
        return await asyncio.wait_for(self.calls.get(), WAIT_S)


@dataclass
class Dispatching:
    """A ``Dispatcher`` over a real SQLite queue and stores, a ``ScriptedInvoker`` and
    a ``FakeClock``."""

    stores: Stores
    queue: SqliteQueue
    invoker: ScriptedInvoker
    dead_letters: WatchedDeadLetters
    clock: FakeClock
    dispatcher: Dispatcher

    async def settle(self) -> None:
        """Until every event the dispatcher has started is settled (acked or retried)."""
        while self.dispatcher._running:
            await asyncio.gather(*list(self.dispatcher._running), return_exceptions=True)

    async def close(self) -> None:
        await self.dispatcher.close()
        await self.queue.close()
        self.stores.close()


async def open_dispatching(data_dir: Path, **settings: Any) -> Dispatching:
    """Call from the event loop; ``start`` the dispatcher when the test is ready."""
    values: dict[str, Any] = {
        "async_parallelism": 2,
        "async_visibility_seconds": 30.0,
        "throttle_delay_seconds": 0.01,
        "retry_base_seconds": 0.01,
    }
    values.update(settings)
    stores = open_stores(data_dir, **values)
    queue = SqliteQueue(data_dir / "queue.db")
    await queue.open()
    invoker = ScriptedInvoker(Targets(stores.functions, stores.aliases))
    dead_letters = WatchedDeadLetters(stores.db)
    clock = FakeClock()
    dispatcher = Dispatcher(
        stores.config,
        queue,
        cast(Invoker, invoker),
        stores.functions,
        stores.event_configs,
        dead_letters,
        clock=clock,
    )
    return Dispatching(stores, queue, invoker, dead_letters, clock, dispatcher)


# -- async worker processes -------------------------------------------------------------


async def until(
    predicate: Callable[[], object], timeout_s: float = 4 * WAIT_S, every_s: float = 0.02
) -> None:
    """Wait for state another process changes (nothing in this one can be awaited for
    it): look every ``every_s``, fail after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"still false after {timeout_s} s: {predicate}")
        await asyncio.sleep(every_s)


@dataclass
class QueueHost:
    """The server's side of async workers, as ``Node`` wires it: stores on a migrated
    database, the SQLite queue behind a ``QueueServer`` (which hears of every committed
    change), and the concurrency file with a row per process. Workers started against
    it use ``config`` (isolation "process": nothing here needs root)."""

    stores: Stores
    queue: SqliteQueue
    server: QueueServer
    limiter: ConcurrencyLimiter
    socket_path: Path

    @property
    def config(self) -> Config:
        return self.stores.config

    def worker_env(self) -> dict[str, str]:
        return {**os.environ, CONFIG_ENV: self.config.model_dump_json()}

    async def spawn_worker(self, index: int = 1) -> asyncio.subprocess.Process:
        """``python -m nimbus.workers.worker``, as the supervisor starts it."""
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "nimbus.workers.worker", str(self.socket_path), str(index),
            stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            env=self.worker_env(),
        )  # fmt: skip

    async def put(self, function: str, qualifier: str | None = None, **fields: Any) -> str:
        request_id = str(uuid.uuid4())
        await self.queue.put(QueuedEvent(function, qualifier, b"{}", request_id, **fields))
        return request_id

    def letters(self, function: str) -> list[DeadLetter]:
        return self.stores.dead_letters.list(function=function)

    async def close(self) -> None:
        await self.server.close()
        await self.queue.close()
        self.limiter.close()
        self.stores.close()
        shutil.rmtree(self.socket_path.parent, ignore_errors=True)


async def open_queue_host(data_dir: Path, workers: int = 1, **settings: Any) -> QueueHost:
    values: dict[str, Any] = {
        "isolation": "process",
        "stem_cells": 0,
        "async_workers": workers,
        "async_parallelism": 2,
        "log_level": "error",
    }
    values.update(settings)
    stores = open_stores(data_dir, **values)
    queue = SqliteQueue(data_dir / "queue.db")
    await queue.open()
    # A short path: unix socket paths are limited to 107 bytes, pytest's tmp_path is long.
    socket_path = Path(tempfile.mkdtemp(prefix="nimbus-test-")) / "queue.sock"
    server = QueueServer(queue, socket_path)
    await server.start()
    stores.functions.on_change(server.changed)
    limiter = ConcurrencyLimiter.create(
        data_dir / CONCURRENCY_FILE, stores.config.concurrency_limit, processes=1 + workers
    )
    return QueueHost(stores, queue, server, limiter, socket_path)
