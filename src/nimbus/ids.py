"""Identifiers on the hot path: request ids (UUIDv4 text) and X-Ray style trace ids.

They must be unique, not secret, so they come from ``random`` (seeded from the OS)
rather than ``uuid.uuid4()``: no syscall per id, which on a busy server is also one
less place for the event loop to give up the GIL.
"""

from __future__ import annotations

import random
import time

_random = random.Random()  # seeded from os.urandom at import
_LOW_64 = (1 << 64) - 1


def request_id() -> str:
    """A random (version 4) UUID in its canonical text form."""
    bits = _random.getrandbits(128)
    bits = (bits & ~(0xF << 76) | (0x4 << 76)) & ~(0x3 << 62) | (0x2 << 62)
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def hex_id(chars: int) -> str:
    return f"{_random.getrandbits(chars * 4):0{chars}x}"


def trace_id() -> str:
    """An X-Ray trace header for invocations that arrive without one."""
    bits = _random.getrandbits(160)  # 96 for the root's id, 64 for the parent's
    return f"Root=1-{int(time.time()):08x}-{bits >> 64:024x};Parent={bits & _LOW_64:016x};Sampled=0"
