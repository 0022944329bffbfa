"""Identifiers on the hot path: request ids (UUIDv4 text) and X-Ray style trace ids.

They must be unique, not secret, so they come from ``random`` (seeded from the OS)
rather than ``uuid.uuid4()``: no syscall per id, which on a busy server is also one
less place for the event loop to give up the GIL.
"""

from __future__ import annotations

import random
import time

_random = random.Random()  # seeded from os.urandom at import


def request_id() -> str:
    """A random (version 4) UUID in its canonical text form."""
    bits = _random.getrandbits(128)
    bits = (bits & ~(0xF << 76) | (0x4 << 76)) & ~(0x3 << 62) | (0x2 << 62)
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def hex_id(chars: int) -> str:
    return f"{_random.getrandbits(chars * 4):0{chars}x}"


def trace_id() -> str:
    """An X-Ray trace header for requests that arrive without one: a new Root and no
    Parent or sampling decision yet (the function's TracingConfig makes it)."""
    return f"Root={trace_root()}"


def trace_root() -> str:
    """A new X-Ray trace id (``1-<epoch seconds, 8 hex>-<96 random bits, 24 hex>``)."""
    return f"1-{int(time.time()):08x}-{_random.getrandbits(96):024x}"


def segment_id() -> str:
    """A new X-Ray segment (span) id: 64 random bits as 16 hex digits, never all zero."""
    return f"{_random.getrandbits(64) or 1:016x}"
