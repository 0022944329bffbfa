"""Placement as Lambda decides it: a node with an idle warm environment of the version
first, else the one with the most free memory; what a server sent since a node's last
announcement counts; a node that refused a connection sits out for a while."""

from __future__ import annotations

from collections.abc import Iterable

from nimbus.cluster.nodes import NodeState
from nimbus.cluster.placement import SUSPECT_S, Placement


class Board:
    def __init__(self, *nodes: NodeState) -> None:
        self.nodes = list(nodes)

    def alive(self) -> list[NodeState]:
        return self.nodes

    def silent(self, node_ids: Iterable[str]) -> set[str]:
        return set(node_ids) - {n.node_id for n in self.nodes}

    async def confirm_silent(self, node_ids: Iterable[str]) -> set[str]:
        return self.silent(node_ids)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def node(name: str, free_mb: int, **warm: int) -> NodeState:
    return NodeState(name, f"http://{name}:9000", 2, 24_000, free_mb,
                     {k.replace("__", ":"): v for k, v in warm.items()})


def test_a_warm_environment_wins_over_free_memory() -> None:
    placement = Placement(Board(node("big", 20_000), node("warm", 1_000, f__1=1)))
    assert (chosen := placement.choose("f:1", 128)) and chosen.node_id == "warm"
    assert (chosen := placement.choose("g:1", 128)) and chosen.node_id == "big"


def test_what_was_sent_since_the_announcement_counts() -> None:
    big, warm = node("big", 20_000), node("warm", 19_900, f__1=1)
    board = Board(big, warm)
    clock = Clock()
    placement = Placement(board, clock)
    first = placement.choose("f:1", 512)
    assert first is warm
    placement.sending(warm, "f:1", 512)  # to its idle environment: no new memory
    assert placement.choose("f:1", 512) is big  # its one idle environment is taken
    placement.sending(big, "f:1", 512)
    placement.sending(big, "f:1", 512)
    assert placement.choose("g:1", 512) is warm  # big has 1 GB of new environments
    placement.answered(warm, "f:1", 512)
    assert placement.choose("f:1", 512) is warm
    assert not placement.sent_warm[("warm", "f:1")]
    # Answered, big's two new environments still take their memory (they stay, warm)
    # until big announces itself again, and its announcement counts them.
    placement.answered(big, "f:1", 512)
    placement.answered(big, "f:1", 512)
    assert placement.choose("g:1", 512) is warm
    # An announcement heard just after the sends may predate them: they still count.
    board.nodes[0] = big = node("big", 20_000 - 1024 + 1_000, f__1=2)  # freed elsewhere
    assert placement.choose("g:1", 512) is warm
    # One heard well after them counts them itself.
    clock.now += 2.5
    board.nodes[0] = big = node("big", 20_000 - 1024 + 1_000, f__1=2)
    assert placement.choose("g:1", 512) is big


def test_a_burst_of_short_invocations_spreads_over_the_nodes() -> None:
    placement = Placement(Board(node("a", 4_000), node("b", 4_000)), Clock())
    chosen = []
    for n in range(6):  # each answered at once, before any new announcement
        target = placement.choose(f"f{n}:1", 1_000)
        assert target is not None
        placement.sending(target, f"f{n}:1", 1_000)
        placement.answered(target, f"f{n}:1", 1_000)
        chosen.append(target.node_id)
    assert sorted(chosen) == ["a", "a", "a", "b", "b", "b"]


def test_a_node_that_refused_sits_out_then_comes_back() -> None:
    clock = Clock()
    a, b = node("a", 20_000), node("b", 10_000)
    placement = Placement(Board(a, b), clock)
    placement.unreachable(a)
    assert placement.choose("f:1", 128) is b
    assert placement.choose("f:1", 128, frozenset({"b"})) is None
    clock.now += SUSPECT_S + 0.1
    assert placement.choose("f:1", 128) is a


def test_no_worker_means_run_it_here() -> None:
    assert Placement(Board()).choose("f:1", 128) is None
