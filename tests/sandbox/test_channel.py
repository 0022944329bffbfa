"""The control channel's asyncio side, on both event loops nimbus runs on (the server
uses uvloop, whose transports differ from asyncio's): frames cut out of any chunking,
a vanished peer, and an environment announcing an absurd frame."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from nimbus.guest import protocol
from nimbus.sandbox.channel import MAX_BODY, Channel, ChannelClosed

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


def run_on(loop_name: str, test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        runner.run(test())


@pytest.mark.parametrize("loop_name", LOOPS)
def test_frames_arrive_whole_however_the_bytes_are_cut(loop_name: str) -> None:
    async def scenario() -> None:
        ours, theirs = socket.socketpair()
        channel = await Channel.open(ours)
        frames = [({"t": "result", "error": None}, b"x" * n) for n in (0, 5, 200_000)]
        stream = b"".join(protocol.encode(h, b) for h, b in frames)

        async def read_three() -> list[tuple[dict, bytes]]:
            return [await channel.read() for _ in range(3)]

        reading = asyncio.get_running_loop().create_task(read_three())
        theirs.setblocking(False)
        loop = asyncio.get_running_loop()
        for i in range(0, len(stream), 7001):  # cuts through headers and bodies alike
            await loop.sock_sendall(theirs, stream[i : i + 7001])
        got = await asyncio.wait_for(reading, 10)
        assert [(h, len(b)) for h, b in got] == [(h, len(b)) for h, b in frames]
        await channel.send({"t": "invoke", "id": "r1"}, b'{"k": 1}')
        head = await loop.sock_recv(theirs, 1024)
        assert head == protocol.encode({"t": "invoke", "id": "r1"}, b'{"k": 1}')
        theirs.close()
        with pytest.raises(ChannelClosed):
            await asyncio.wait_for(channel.read(), 10)
        channel.close()

    run_on(loop_name, scenario)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_an_absurd_frame_length_ends_the_channel(loop_name: str) -> None:
    async def scenario() -> None:
        ours, theirs = socket.socketpair()
        channel = await Channel.open(ours)
        theirs.sendall(protocol.HEADER.pack(2, MAX_BODY + 1) + b"{}")
        with pytest.raises(ChannelClosed):
            await asyncio.wait_for(channel.read(), 10)
        theirs.close()

    run_on(loop_name, scenario)
