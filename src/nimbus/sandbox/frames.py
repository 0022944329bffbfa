"""What an environment may say on its control channel, and when.

The environment is not trusted. A Python function runs in the same process as its
runtime, so it can write any bytes on the control socket (the runtime only moves the
socket out of the way: ``nimbus.guest.python``); a ``provided`` bootstrap cannot reach
it, but its runtime relays what the bootstrap sends. So the server checks every frame:

- sizes first, from the 8-byte length prefix, before a byte of the header or body is
  kept: a header over ``MAX_HEADER`` or a body over ``MAX_BODY`` (Lambda's 6 MB response
  limit, which a runtime enforces before sending) ends the environment;
- then the JSON header: an object, a known type, expected now (``Expected``), with
  fields of the right types; a body only where the type has one;
- a ``result`` must carry the tag of the invocation in flight. The tag is a random number
  the server sends with each invocation; the runtime echoes it. A result carrying the
  tag of an earlier invocation of the same environment (``Expected.spent``) is a
  leftover, e.g. from a thread the function left behind: dropped, as Lambda's Runtime
  API refuses a response for an invocation that is over. Anything else breaks the
  protocol, and the environment is treated as crashed (``Runtime.ExitError``).

What this cannot stop: code of the function that reads the tag of the invocation in
flight out of its runtime's memory can answer that invocation itself, which it could
anyway by returning; it cannot answer another invocation, nor another environment.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import orjson

from nimbus.guest import protocol

# A frame's JSON header: a few hundred bytes in practice (a ready frame's stages).
MAX_HEADER = 16 * 1024
# A result or an init error: a runtime replaces anything larger by Lambda's
# Function.ResponseSizeTooLarge error before sending it.
MAX_BODY = protocol.MAX_PAYLOAD
MAX_STAGES = 64  # cold-start stages a ready frame reports (about ten)
MAX_TEXT = 4096  # a setup error's message, a stage's name
SPENT_TAGS = 8  # earlier invocations whose leftover results are dropped, not fatal

INIT_KINDS = frozenset({"ready", "init_error", "setup_error", "exit"})
RESULT_KINDS = frozenset({"result", "exit"})


class Violation(Exception):
    """The environment broke the control protocol; the message says how."""


class Exited(Violation):
    """A provided runtime said its bootstrap exited, between invocations: the
    environment ends as it would anyway, with nothing to report."""


class Stale(Exception):
    """A well-formed result of an invocation that is over: skipped, not fatal."""


@dataclass
class Expected:
    """What the server waits for: the init phase's outcome, or the result of the
    invocation tagged ``tag``; ``None`` in ``kinds`` means nothing (between
    invocations). ``spent`` holds the tags of this environment's earlier invocations."""

    kinds: frozenset[str] = INIT_KINDS
    tag: int | None = None
    spent: deque[int] = field(default_factory=lambda: deque(maxlen=SPENT_TAGS))

    def invocation(self, tag: int) -> None:
        """Expect the result of the invocation tagged ``tag``."""
        self.kinds = RESULT_KINDS
        self.tag = tag

    def nothing(self) -> None:
        """Expect no frame (the one expected has come)."""
        if self.tag is not None:
            self.spent.append(self.tag)
        self.kinds = frozenset()
        self.tag = None


def check_lengths(head_len: int, body_len: int) -> None:
    """The 8-byte prefix's lengths, before anything else is read."""
    if head_len > MAX_HEADER:
        raise Violation(f"a frame header of {head_len} bytes (at most {MAX_HEADER})")
    if body_len > MAX_BODY:
        raise Violation(f"a frame body of {body_len} bytes (at most {MAX_BODY})")


def check_header(raw: bytes, body_len: int, expected: Expected) -> dict:
    """The decoded header of a frame whose body is ``body_len`` bytes, if the
    environment may send it now; raises Violation, or Stale for a leftover result."""
    try:
        header = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Violation(f"a frame header that is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise Violation(f"a frame header that is a JSON {type(header).__name__}, not an object")
    kind = header.get("t")
    check = _CHECKS.get(kind) if isinstance(kind, str) else None
    if check is None:
        raise Violation(f"a frame of unknown type {_shown(kind)}")
    if kind == "result" and kind in expected.kinds:
        tag = header.get("tag")
        if type(tag) is not int:
            raise Violation(f"a result without a valid tag ({_shown(tag)})")
        if tag != expected.tag:
            if tag in expected.spent:
                check(header, body_len)
                raise Stale(f"a result of an earlier invocation (tag {tag})")
            raise Violation(f"a result for an invocation it is not running (tag {tag})")
    elif kind not in expected.kinds:
        if kind == "result" and header.get("tag") in expected.spent:
            check(header, body_len)
            raise Stale(f"a result of an earlier invocation (tag {header['tag']})")
        if kind == "exit":
            check(header, body_len)
            raise Exited(f"the runtime exited (status {header['status']})")
        raise Violation(f"a {kind!r} frame when none was expected")
    check(header, body_len)
    return header


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _fields(header: dict, allowed: frozenset[str], kind: str) -> None:
    extra = header.keys() - allowed
    if extra:
        raise Violation(f"a {kind!r} frame with unknown fields {sorted(extra)[:5]}")


def _number(value: object) -> bool:
    """A finite, non-negative int or float (not a bool)."""
    return isinstance(value, int | float) and type(value) is not bool and 0 <= value < math.inf


def _no_body(kind: str, body_len: int) -> None:
    if body_len:
        raise Violation(f"a {kind!r} frame with a body of {body_len} bytes (it has none)")


def _ready(header: dict, body_len: int) -> None:
    _fields(header, frozenset({"t", "init_ms", "restore", "stages"}), "ready")
    _no_body("ready", body_len)
    if not _number(header.get("init_ms", 0.0)):
        raise Violation(f"a ready frame whose init_ms is {_shown(header.get('init_ms'))}")
    if type(header.get("restore", False)) is not bool:
        raise Violation(f"a ready frame whose restore is {_shown(header.get('restore'))}")
    stages = header.get("stages", [])
    if (
        not isinstance(stages, list)
        or len(stages) > MAX_STAGES
        or not all(
            isinstance(s, list)
            and len(s) == 2
            and isinstance(s[0], str)
            and len(s[0]) <= MAX_TEXT
            and type(s[1]) in (int, float)
            and math.isfinite(s[1])
            for s in stages
        )
    ):
        raise Violation("a ready frame whose stages are not a short list of [name, time]")


def _init_error(header: dict, body_len: int) -> None:
    _fields(header, frozenset({"t", "type", "init_ms"}), "init_error")
    error_type = header.get("type")
    if not isinstance(error_type, str) or len(error_type) > protocol.MAX_ERROR_TYPE:
        raise Violation(f"an init_error frame whose type is {_shown(error_type)}")
    if not _number(header.get("init_ms", 0.0)):
        raise Violation(f"an init_error frame whose init_ms is {_shown(header.get('init_ms'))}")


def _setup_error(header: dict, body_len: int) -> None:
    _fields(header, frozenset({"t", "message"}), "setup_error")
    _no_body("setup_error", body_len)
    message = header.get("message")
    if not isinstance(message, str) or len(message) > MAX_TEXT:
        raise Violation(f"a setup_error frame whose message is {_shown(message)}")


def _result(header: dict, body_len: int) -> None:
    _fields(header, frozenset({"t", "error", "tag", "marked"}), "result")
    if header.get("error", 0) not in (None, "Unhandled"):
        raise Violation(f"a result whose error is {_shown(header.get('error', '(missing)'))}")
    if type(header.get("marked", True)) is not bool:
        raise Violation(f"a result whose marked is {_shown(header.get('marked'))}")


def _exit(header: dict, body_len: int) -> None:
    _fields(header, frozenset({"t", "status"}), "exit")
    _no_body("exit", body_len)
    status = header.get("status")
    if type(status) is not int or not 0 <= status <= 0xFFFF:
        raise Violation(f"an exit frame whose status is {_shown(status)}")


_CHECKS = {
    "ready": _ready,
    "init_error": _init_error,
    "setup_error": _setup_error,
    "result": _result,
    "exit": _exit,
}
