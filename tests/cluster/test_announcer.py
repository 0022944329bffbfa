"""A stopping worker node withdraws its announcement, but NATS away or reconnecting
never holds the stop: the withdrawal is given ``WITHDRAW_S`` (a worker once hung on
SIGTERM with its socket still open)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from nimbus.cluster import announcer as announcer_module
from nimbus.cluster.announcer import Announcer
from nimbus.cluster.nodes import NodeState


class _Board:
    def __init__(self, *, answers: bool) -> None:
        self.answers = answers
        self.announced: list[NodeState] = []
        self.withdrawn: list[str] = []
        self.first = asyncio.Event()

    async def announce(self, state: NodeState) -> None:
        self.announced.append(state)
        self.first.set()

    async def withdraw(self, node_id: str) -> None:
        self.withdrawn.append(node_id)
        if not self.answers:
            await asyncio.Event().wait()  # NATS never answers


async def _announced(board: _Board) -> Announcer:
    node = Announcer(cast(Any, board), "http://10.0.0.2:9000", dict, lambda: 0)
    await node.start()
    await asyncio.wait_for(board.first.wait(), 5)
    return node


async def test_close_withdraws_the_announcement() -> None:
    board = _Board(answers=True)
    node = await _announced(board)
    await node.close()
    await node.close()  # shutdown calls it early, then again: once
    assert board.announced[0].node_id == node.node_id
    assert board.withdrawn == [node.node_id]


async def test_a_withdrawal_nats_never_answers_does_not_hold_the_stop(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(announcer_module, "WITHDRAW_S", 0.05)
    board = _Board(answers=False)
    node = await _announced(board)
    await asyncio.wait_for(node.close(), 5)
    assert board.withdrawn == [node.node_id]
    assert "could not withdraw this worker node" in caplog.text
