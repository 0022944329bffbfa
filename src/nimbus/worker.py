"""An async worker: a child process of ``nimbus up`` that runs the dispatcher.

One event loop cannot both accept HTTP at full speed and drive the sandboxes of every
async invocation; a worker takes the second half to another core. It has its own
Invoker, Pool and SandboxManager (a share of the sandbox uids; its cgroups and run dir
are named by its own pid), writes invocation logs and dead letters to the shared
database, and reaches the queue through the server (``RemoteQueue``), which stays its
only owner. The server forwards committed metadata changes, so the worker's caches
(targets, event invoke configs) hear of updates as the server's do.

The worker dies with the server: the kernel sends it SIGKILL when its parent goes
(``PR_SET_PDEATHSIG``), and it stops when the queue connection ends. Provisioned
concurrency stays in the server (it serves the sync path).

Run as ``python -m nimbus.worker`` by ``Supervisor``; the config arrives as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys

from nimbus import heap
from nimbus.config import Config
from nimbus.dispatcher import Dispatcher
from nimbus.invoker import Invoker
from nimbus.queue.backends.remote import RemoteQueue
from nimbus.store.aliases import AliasStore
from nimbus.store.database import Database
from nimbus.store.dead_letters import DeadLetterStore
from nimbus.store.event_configs import EventConfigStore
from nimbus.store.functions import FunctionStore
from nimbus.threads import blocking

log = logging.getLogger("nimbus.worker")

CONFIG_ENV = "NIMBUS_WORKER_CONFIG"
PR_SET_PDEATHSIG = 1
REPORT_EVERY_S = 0.5


def die_with_parent() -> None:
    """Ask the kernel for SIGKILL when the server dies (Linux only)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


async def run(config: Config, socket_path: str, index: int) -> None:
    """Dispatch async events until the server goes away or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    db = Database(config.effective_database_url)  # the server migrated it
    functions = FunctionStore(db, config.function_arn)
    invoker = Invoker.open(config, db, functions, AliasStore(functions), process_index=index)
    logs, pool = invoker.logs, invoker.pool
    queue = RemoteQueue(socket_path, on_change=functions.changed, on_lost=stop.set)
    dispatcher = Dispatcher(
        config, queue, invoker, functions, EventConfigStore(functions), DeadLetterStore(db)
    )
    logs.start()
    pool.start()
    await queue.open()
    await dispatcher.start()
    heap.settle()
    reporter = loop.create_task(_report(queue, dispatcher))
    try:
        await stop.wait()
    finally:
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter
        await dispatcher.close()
        await queue.close()
        await pool.close()
        await pool.manager.close()
        invoker.limiter.close()
        await logs.close()
        await blocking(db.dispose)


async def _report(queue: RemoteQueue, dispatcher: Dispatcher) -> None:
    """Keep the server's /_nimbus/queue counters current."""
    last: dict[str, int] = {}
    while True:
        counters = dict(dispatcher.counters)
        if counters != last:
            queue.report(counters)
            last = counters
        await asyncio.sleep(REPORT_EVERY_S)


def main() -> None:
    die_with_parent()
    socket_path, index = sys.argv[1], int(sys.argv[2])
    config = Config.model_validate_json(os.environ[CONFIG_ENV])
    logging.basicConfig(
        level=config.log_level.upper(),
        format=f"%(asctime)s %(levelname)s %(name)s[worker {index}]: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per webhook post otherwise
    try:
        import uvloop

        uvloop.run(run(config, socket_path, index))
    except ImportError:
        asyncio.run(run(config, socket_path, index))


if __name__ == "__main__":
    main()
