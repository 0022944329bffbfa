"""Which worker node an invocation goes to, as Lambda's placement decides: a node with
an idle warm environment of that function version first (no cold start), else the node
with the most free memory for a new environment (bin-packing by memory).

What the workers announce is up to a second old, so the servers also count what they
have sent each node since: two invocations in the same instant do not both go to the
one idle environment (sends to a version's warm environments, until answered), and a
node filling up stops being the "most free" one before its next announcement says so
(the memory of each invocation sent without an idle environment to take it, counted
until the node announces itself again: the environment it started stays after the
answer, and that announcement is the first to include it). A node that refused a
connection is left out for a while.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

from nimbus.cluster.nodes import NodeState

K = TypeVar("K")
SUSPECT_S = 5.0  # a node that refused a connection is tried again after this


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
        # node -> MB of environments it was sent to start since the announcement in
        # _basis (a newer one counts them itself).
        self.sent_memory: Counter[str] = Counter()
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
        if len(self._basis) > 2 * len(nodes):  # forget nodes long gone
            alive = {n.node_id for n in nodes}
            for gone in [k for k in self._basis if k not in alive]:
                del self._basis[gone]
                self.sent_memory.pop(gone, None)
        return max(nodes, key=lambda n: n.free_mb - self._starting_mb(n) - memory_mb)

    def _starting_mb(self, node: NodeState) -> int:
        """MB sent to ``node`` to start environments that its announcement does not count."""
        if self._basis.get(node.node_id) is not node:  # announced since: counted there
            self._basis[node.node_id] = node
            self.sent_memory.pop(node.node_id, None)
        return self.sent_memory[node.node_id]

    def sending(self, node: NodeState, key: str, memory_mb: int) -> None:
        if node.warm.get(key, 0) - self.sent_warm[(node.node_id, key)] <= 0:
            self._starting_mb(node)  # counted against this announcement
            self.sent_memory[node.node_id] += memory_mb  # no idle one: a new environment
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
