"""Starts the async worker processes of ``nimbus up`` and restarts any that dies.

A worker that dies (a crash, the OOM killer, kill -9) loses nothing: the queue server
hands its leases back as its socket closes, and a fresh worker is started here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from nimbus.config import Config
from nimbus.workers.worker import CONFIG_ENV

log = logging.getLogger("nimbus.workers.supervisor")

RESTART_DELAY_S = 0.5  # so a worker that cannot start does not spin a core
STOP_TIMEOUT_S = 15.0


class Supervisor:
    """Keeps ``config.async_workers`` worker processes running."""

    def __init__(
        self, config: Config, socket_path: Path, on_exit: Callable[[int], None]
    ) -> None:
        self.config = config
        self.socket_path = socket_path
        self.on_exit = on_exit  # called with a worker's index once it has exited
        self.processes: dict[int, asyncio.subprocess.Process] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for index in range(1, self.config.async_workers + 1):
            self._tasks.append(loop.create_task(self._keep(index)))

    async def close(self) -> None:
        self._stopping = True
        for process in list(self.processes.values()):
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in list(self.processes.values()):
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _keep(self, index: int) -> None:
        env = {**os.environ, CONFIG_ENV: self.config.model_dump_json()}
        while not self._stopping:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "nimbus.workers.worker", str(self.socket_path), str(index),
                stdin=asyncio.subprocess.DEVNULL, env=env,
                # Out of the terminal's process group: Ctrl-C reaches the server, which
                # stops its workers in order; PR_SET_PDEATHSIG covers the server's death.
                start_new_session=True,
            )
            self.processes[index] = process
            log.info("async worker %d started (pid %d)", index, process.pid)
            code = await process.wait()
            self.on_exit(index)
            if self._stopping:
                return
            log.error("async worker %d (pid %d) exited with %s; restarting",
                      index, process.pid, code)
            await asyncio.sleep(RESTART_DELAY_S)
