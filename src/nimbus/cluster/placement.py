"""Which worker node an invocation goes to, as Lambda's placement decides: a node with
an idle warm environment of that function version first (no cold start), else the node
with the most free memory for a new environment (bin-packing by memory).

What the workers announce is up to a second old, so the servers also count what they
have sent each node since: two invocations in the same instant do not both go to the
one idle environment (sends to a version's warm environments, until answered), and a
node filling up stops being the "most free" one before its next announcement says so
(the memory of each invocation sent without an idle environment to take it, counted
until an announcement heard well after it was sent: the environment it started stays
after the answer, and only a later announcement includes it). A node that refused a
connection is left out for a while.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

from nimbus.cluster.nodes import BEAT_S, NodeState

K = TypeVar("K")
SUSPECT_S = 5.0  # a node that refused a connection is tried again after this
ANNOUNCE_SLACK_S = 1.0  # an announcement's way to this server, and an environment's growth


class Roster(Protocol):
    """The live workers (cluster/nodes.py's NodeBoard)."""

    def alive(self) -> list[NodeState]: ...

    def silent(self, node_ids: Iterable[str]) -> set[str]: ...

    async def confirm_silent(self, node_ids: Iterable[str]) -> set[str]: ...


class Placement:
    """Chooses among the live workers of ``board``; one per process, on its event loop."""

    def __init__(self, board: Roster, clock: Callable[[], float] = time.monotonic) -> None:
        self.board = board
        self.clock = clock
        self.sent: Counter[str] = Counter()  # node -> invocations sent, not yet answered
        # node -> (when, MB) of environments it was sent to start that its announcement
        # may not count yet; _basis: the announcement they were last weighed against.
        self.started: dict[str, list[tuple[float, int]]] = {}
        self._basis: dict[str, NodeState] = {}
        self.sent_warm: Counter[tuple[str, str]] = Counter()  # (node, key) -> sent
        self.suspect: dict[str, float] = {}

    def choose(self, key: str, memory_mb: int, exclude: frozenset[str] = frozenset(),
               ) -> NodeState | None:
        """The node for an invocation of ``key`` ("function:version"); None: no worker."""
        now = self.clock()
        nodes = [n for n in self.board.alive()
                 if n.node_id not in exclude and self.suspect.get(n.node_id, 0.0) <= now]
        if not nodes:
            return None
        warm = [(n.warm.get(key, 0) - self.sent_warm[(n.node_id, key)], n) for n in nodes]
        best_warm, node = max(warm, key=lambda pair: pair[0])
        if best_warm > 0:
            return node
        if len(self._basis) > 2 * len(self.board.alive()):  # forget nodes long gone
            alive = {n.node_id for n in self.board.alive()}
            for gone in [k for k in self._basis if k not in alive]:
                del self._basis[gone]
                self.started.pop(gone, None)
        return max(nodes, key=lambda n: n.free_mb - self._starting_mb(n) - memory_mb)

    def _starting_mb(self, node: NodeState) -> int:
        """MB sent to ``node`` to start environments its announcement may not count: a
        newer announcement counts those sent well before it was heard (it was made up to
        a beat before, and the node measures memory in use, not configured)."""
        started = self.started.get(node.node_id)
        if self._basis.get(node.node_id) is not node:  # announced since
            self._basis[node.node_id] = node
            if started:
                heard_since = self.clock() - BEAT_S - ANNOUNCE_SLACK_S
                started[:] = [(at, mb) for at, mb in started if at > heard_since]
        return sum(mb for _, mb in started) if started else 0

    def sending(self, node: NodeState, key: str, memory_mb: int) -> None:
        if node.warm.get(key, 0) - self.sent_warm[(node.node_id, key)] <= 0:
            self._starting_mb(node)  # weighed against this announcement
            # No idle environment there: a new one.
            self.started.setdefault(node.node_id, []).append((self.clock(), memory_mb))
        self.sent[node.node_id] += 1
        self.sent_warm[(node.node_id, key)] += 1

    def answered(self, node: NodeState, key: str, memory_mb: int) -> None:
        # The memory of an environment it started stays counted: the environment stays
        # (warm) until the node's next announcement says how much room is left.
        _less(self.sent, node.node_id, 1)
        _less(self.sent_warm, (node.node_id, key), 1)

    def unreachable(self, node: NodeState) -> None:
        self.suspect[node.node_id] = self.clock() + SUSPECT_S


def _less(counter: Counter[K], index: K, amount: int) -> None:
    counter[index] -= amount
    if counter[index] <= 0:
        del counter[index]
