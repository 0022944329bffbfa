"""An async worker: a child process of ``nimbus up`` that runs the dispatcher.

One event loop cannot both accept HTTP at full speed and drive the sandboxes of every
async invocation; a worker takes the second half to another core. It builds its own
``Engine`` (invoker, pool and sandbox manager with a share of the sandbox uids; its
cgroups and run dir are named by its own pid), writes invocation logs and dead letters to the shared
database, and reaches the queue through the server (``RemoteQueue``), which stays its
only owner. The server forwards committed metadata changes, so the worker's caches
(targets, event invoke configs) hear of updates as the server's do.

The worker dies with the server: the kernel sends it SIGKILL when its parent goes
(``PR_SET_PDEATHSIG``), and it stops when the queue connection ends. Provisioned
concurrency stays in the server (it serves the sync path).

Run as ``python -m nimbus.workers.worker`` by ``Supervisor``; the config arrives as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import faulthandler
import logging
import os
import signal
import sys

from nimbus import heap
from nimbus.config import Config
from nimbus.engine import Engine
from nimbus.events.dispatcher import Dispatcher
from nimbus.observe.metrics import Metrics
from nimbus.queue.backends.remote import RemoteQueue
from nimbus.threads import blocking

log = logging.getLogger("nimbus.workers.worker")

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
    # The server migrated the database and owns the queue; this process reaches it
    # through the server's socket, and hears of metadata changes the same way.
    queue = RemoteQueue(socket_path, on_lost=stop.set)
    engine = await blocking(Engine.open, config, queue, index)
    queue.on_change = engine.functions.changed
    await engine.start()
    heap.settle()
    reporter = loop.create_task(_report(queue, engine.dispatcher, engine.metrics))
    try:
        await stop.wait()
    finally:
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter
        await engine.close()


async def _report(queue: RemoteQueue, dispatcher: Dispatcher, metrics: Metrics) -> None:
    """Keep the server's /_nimbus/queue counters and its metrics current: the metrics
    counted here since the last report go to the server, which adds them to its own
    (see observe/metrics.py), with the invocations running here now."""
    last: dict[str, int] = {}
    last_in_flight: dict[str, int] = {}
    while True:
        counters = dict(dispatcher.counters)
        if counters != last:
            queue.report(counters)
            last = counters
        if (metrics.counters or metrics.histograms
                or metrics.local_in_flight() != last_in_flight):
            delta = metrics.take()
            queue.report_metrics(delta)
            last_in_flight = delta.in_flight
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
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # stacks on stderr, as the server
    try:
        import uvloop

        uvloop.run(run(config, socket_path, index))
    except ImportError:
        asyncio.run(run(config, socket_path, index))


if __name__ == "__main__":
    main()
