"""A worker node's heartbeat: what it announces to the servers, every ``BEAT_S``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable

from nimbus.cluster.nodes import BEAT_S, NodeBoard, NodeState
from nimbus.sandbox.cgroups import memory_headroom_mb

log = logging.getLogger("nimbus.cluster.announcer")

# How long a stopping node tries to withdraw its announcement: NATS away or reconnecting
# must not hold the stop (the servers then count the node out when it goes stale).
WITHDRAW_S = 2.0


class Announcer:
    """Announces this worker (reachable at ``url``) until ``close`` withdraws it."""

    def __init__(self, board: NodeBoard, url: str, warm: Callable[[], dict[str, int]],
                 in_flight: Callable[[], int]) -> None:
        self.board = board
        self.url = url
        self.warm = warm
        self.in_flight = in_flight
        # Unique per process: a restarted worker is a new node (its warm environments
        # are gone), whatever its address.
        self.node_id = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def state(self) -> NodeState:
        total, available = _memory_mb()
        return NodeState(self.node_id, self.url, os.cpu_count() or 1, total, available,
                         self.warm(), self.in_flight())

    async def start(self) -> None:
        # Not awaited: the HTTP socket is bound just after start-up, and an invocation
        # sent before that is refused and goes elsewhere (no harm, but no point).
        self._task = asyncio.ensure_future(self._beat())

    async def close(self) -> None:
        """Stop announcing and withdraw (once: shutdown calls it early, then again)."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await asyncio.wait_for(self.board.withdraw(self.node_id), WITHDRAW_S)
        except TimeoutError:
            log.warning("could not withdraw this worker node within %.0f s (NATS away?): "
                        "the servers count it out once its announcement goes stale",
                        WITHDRAW_S)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(0)  # let the server bind its socket before the first one
            try:
                await self.board.announce(self.state())
            except Exception as exc:  # NATS away: the servers count this node out
                log.warning("cannot announce this worker node: %s", exc)
            await asyncio.sleep(BEAT_S)


def _memory_mb() -> tuple[int, int]:
    """The machine's memory and what is available for new environments, in MB: the
    machine's available memory, or less where this node's cgroup (a pod's limit, a
    unit's MemoryMax) leaves less."""
    found: dict[str, int] = {}
    with open("/proc/meminfo") as fh:
        for line in fh:
            name, _, rest = line.partition(":")
            if name in ("MemTotal", "MemAvailable"):
                found[name] = int(rest.split()[0]) // 1024
    available = found.get("MemAvailable", 0)
    headroom = memory_headroom_mb()
    return found.get("MemTotal", 0), available if headroom is None else min(available,
                                                                             headroom)
