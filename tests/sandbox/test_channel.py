"""The control channel's asyncio side, on both event loops nimbus runs on (the server
uses uvloop, whose transports differ from asyncio's): frames cut out of any chunking,
a vanished peer, and an environment that does not keep to the protocol (see
``nimbus.sandbox.frames``): every kind of bad frame ends the channel and names what
was wrong, a leftover result of an earlier invocation is skipped, and no frame is taken
that was not asked for."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from nimbus.guest import protocol
from nimbus.sandbox import frames
from nimbus.sandbox.channel import MAX_BODY, MAX_HEADER, Channel, ChannelClosed

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
READY = ({"t": "ready", "init_ms": 1.5, "stages": [["forked", 1.0]]}, b"")


def run_on(loop_name: str, test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        runner.run(test())


def result(tag: int, body: bytes = b'"ok"', **extra: Any) -> bytes:
    return protocol.encode({"t": "result", "error": None, "tag": tag, **extra}, body)


def raw_frame(header: bytes, body: bytes = b"") -> bytes:
    return protocol.HEADER.pack(len(header), len(body)) + header + body


async def dribble(sock: socket.socket, data: bytes, cut: int = 7001) -> None:
    """Send ``data`` in pieces that cut through prefixes, headers and bodies alike."""
    loop = asyncio.get_running_loop()
    for i in range(0, len(data), cut):
        await loop.sock_sendall(sock, data[i : i + cut])


class Peer:
    """A channel and the environment's end of its socket, with what it reported."""

    def __init__(self) -> None:
        self.violations: list[frames.Violation] = []
        self.channel: Channel
        self.theirs: socket.socket

    async def open(self) -> Peer:
        ours, self.theirs = socket.socketpair()
        self.theirs.setblocking(False)
        self.channel = await Channel.open(ours, self.violations.append)
        return self

    async def ready(self) -> None:
        await dribble(self.theirs, protocol.encode(*READY))
        assert await asyncio.wait_for(self.channel.read(), 10) == READY

    async def broken(self) -> str:
        """Reading fails; returns how the environment broke the protocol."""
        with pytest.raises(ChannelClosed):
            await asyncio.wait_for(self.channel.read(), 10)
        assert len(self.violations) == 1
        assert self.channel.violation is self.violations[0]
        return str(self.violations[0])

    def close(self) -> None:
        self.channel.close()
        self.theirs.close()


@pytest.mark.parametrize("loop_name", LOOPS)
def test_frames_arrive_whole_however_the_bytes_are_cut(loop_name: str) -> None:
    async def scenario() -> None:
        peer = await Peer().open()
        await peer.ready()
        for tag, size in ((7, 0), (8, 5), (9, 200_000)):
            peer.channel.expect_result(tag)
            reading = asyncio.get_running_loop().create_task(peer.channel.read())
            await dribble(peer.theirs, result(tag, b"x" * size))
            header, body = await asyncio.wait_for(reading, 10)
            assert (header["tag"], len(body)) == (tag, size)
        loop = asyncio.get_running_loop()
        await peer.channel.send({"t": "invoke", "id": "r1", "tag": 10}, b'{"k": 1}')
        head = await loop.sock_recv(peer.theirs, 1024)
        assert head == protocol.encode({"t": "invoke", "id": "r1", "tag": 10}, b'{"k": 1}')
        peer.theirs.close()
        with pytest.raises(ChannelClosed):
            await asyncio.wait_for(peer.channel.read(), 10)
        assert peer.violations == []
        peer.channel.close()

    run_on(loop_name, scenario)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_a_leftover_result_is_skipped_and_the_expected_one_taken(loop_name: str) -> None:
    async def scenario() -> None:
        peer = await Peer().open()
        await peer.ready()
        peer.channel.expect_result(1)
        await dribble(peer.theirs, result(1, b'"first"'))
        assert (await peer.channel.read())[1] == b'"first"'
        # Between invocations: a leftover of invocation 1 (a big body, never kept)...
        await dribble(peer.theirs, result(1, b"y" * 3_000_000), cut=65_536)
        peer.channel.expect_result(2)
        # ... and during invocation 2, another leftover right before the real result.
        await dribble(peer.theirs, result(1, b'"stale"') + result(2, b'"second"'), cut=5)
        header, body = await asyncio.wait_for(peer.channel.read(), 10)
        assert (header["tag"], body) == (2, b'"second"')
        assert peer.violations == []
        assert peer.channel._buf == bytearray()  # nothing of the leftovers kept
        peer.close()

    run_on(loop_name, scenario)


# Each: what the environment sends (after its ready frame, while invocation 5 runs) and
# what the violation must say.
BAD_FRAMES = {
    "a header too long": (protocol.HEADER.pack(MAX_HEADER + 1, 0), "frame header of"),
    "a body too long": (protocol.HEADER.pack(2, MAX_BODY + 1) + b"{}", "frame body of"),
    "a 40 MB result": (
        protocol.HEADER.pack(36, 40 << 20) + b'{"t":"result","error":null,"tag":5}',
        "frame body of 41943040 bytes",
    ),
    "a header that is not JSON": (raw_frame(b'{"t": "res'), "not JSON"),
    "a header that is not an object": (raw_frame(b'["result"]'), "not an object"),
    "an unknown type": (raw_frame(b'{"t": "bogus"}'), "unknown type 'bogus'"),
    "a result without a tag": (
        raw_frame(b'{"t": "result", "error": null}', b"1"),
        "without a valid tag",
    ),
    "a result of another invocation": (result(6), "not running (tag 6)"),
    "a result with an unknown error": (
        raw_frame(b'{"t":"result","error":"X","tag":5}'),
        "error is 'X'",
    ),
    "a result with unknown fields": (result(5, extra="y"), "unknown fields ['extra']"),
    "a ready frame now": (protocol.encode(*READY), "'ready' frame when none was expected"),
    "an exit with a bad status": (raw_frame(b'{"t":"exit","status":"0"}'), "status is '0'"),
    "an exit with a body": (raw_frame(b'{"t":"exit","status":0}', b"x"), "with a body"),
}


@pytest.mark.parametrize("case", BAD_FRAMES)
@pytest.mark.parametrize("loop_name", LOOPS)
def test_a_bad_frame_ends_the_channel_and_says_why(loop_name: str, case: str) -> None:
    stream, reason = BAD_FRAMES[case]

    async def scenario() -> None:
        peer = await Peer().open()
        await peer.ready()
        peer.channel.expect_result(5)
        await dribble(peer.theirs, stream + result(5), cut=3)
        assert reason in await peer.broken()
        with pytest.raises(ChannelClosed):
            await peer.channel.send({"t": "invoke", "tag": 6})
        peer.theirs.close()

    run_on(loop_name, scenario)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_bad_init_frames_and_frames_between_invocations(loop_name: str) -> None:
    async def scenario() -> None:
        cases = [
            (b'{"t":"ready","init_ms":-1}', b"", "init_ms is -1"),
            (
                b'{"t":"ready","stages":' + json.dumps([["s", 1]] * 65).encode() + b"}",
                b"",
                "stages",
            ),
            (
                b'{"t":"init_error","type":' + json.dumps("T" * 1025).encode() + b"}",
                b"{}",
                "type is",
            ),
            (b'{"t":"setup_error","message":7}', b"", "message is 7"),
            (b'{"t":"result","error":null,"tag":1}', b"", "'result' frame when none"),
        ]
        for header, body, reason in cases:
            peer = await Peer().open()
            await dribble(peer.theirs, raw_frame(header, body))
            assert reason in await peer.broken()
            peer.theirs.close()
        # Ready, then a frame while no invocation runs: the environment is stopped at
        # once, not when the next invocation comes.
        peer = await Peer().open()
        await peer.ready()
        await dribble(peer.theirs, result(99))
        assert "'result' frame when none was expected" in await peer.broken()
        peer.theirs.close()
        # A provided runtime whose bootstrap exits between invocations: ends, quietly.
        peer = await Peer().open()
        await peer.ready()
        await dribble(peer.theirs, raw_frame(b'{"t":"exit","status":256}'))
        await peer.broken()
        assert isinstance(peer.violations[0], frames.Exited)
        peer.theirs.close()

    run_on(loop_name, scenario)


def test_runtime_result_headers_are_what_the_server_accepts() -> None:
    """The runtimes' cached result headers decode to what frames.check_header takes."""
    expected = frames.Expected()
    for error in (None, "Unhandled"):
        for marked in (True, False):
            header: dict[str, Any] = {"t": "result", "error": error, "tag": 2**53 - 1}
            if not marked:
                header["marked"] = False
            raw = protocol.encode(header, b"{}")
            head_len, body_len = protocol.HEADER.unpack_from(raw)
            expected.invocation(2**53 - 1)
            got = frames.check_header(raw[8 : 8 + head_len], body_len, expected)
            assert got == header
