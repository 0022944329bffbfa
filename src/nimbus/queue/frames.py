"""Length-prefixed frames for the queue's local RPC between a nimbus server and its
async workers (``backends/remote.py`` is the client, ``server.py`` the server side).

A frame is a 4-byte big-endian length and a pickled list of messages, so one write
carries every request (or reply) made during one event-loop turn. Pickle is safe here
only because both ends are the same nimbus install and the socket is a 0600 file in the
data dir that nothing else (and no sandbox, which runs unprivileged in its own mount
namespace) can connect to.
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from typing import Any

HEADER = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024  # far above a batch of 256 KB payloads; guards a bad peer


def encode(messages: list[Any]) -> bytes:
    body = pickle.dumps(messages, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


async def read(reader: asyncio.StreamReader) -> list[Any] | None:
    """The next frame's messages, or None at a clean end of stream."""
    try:
        header = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError:
        return None
    (size,) = HEADER.unpack(header)
    if size > MAX_FRAME:
        raise ValueError(f"queue RPC frame of {size} bytes is too large")
    return pickle.loads(await reader.readexactly(size))
