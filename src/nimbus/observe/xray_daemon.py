"""An X-Ray daemon-compatible UDP receiver, so a function's ``aws-xray-sdk`` (and
Powertools' ``Tracer``, built on it) sends its segments to nimbus unchanged.

The daemon protocol, as the SDKs speak it: one datagram per document, a JSON header line
``{"format": "json", "version": 1}`` then a segment or (standalone) subsegment document.
The receiver listens on 127.0.0.1 (an ephemeral port) and is started by the first
environment of a function whose TracingConfig is Active; that environment and later
ones get ``AWS_XRAY_DAEMON_ADDRESS=127.0.0.1:<port>``. Sandboxes share the host's
network (unless tagged ``nimbus:network=none``), so their loopback is the host's.

Documents are checked for what the store and the views rely on (ids, names, finite
times, the types of the fields they read, nesting depth, text that can be stored) and
kept as sent; malformed datagrams are counted and dropped, never raised.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
from collections.abc import Callable
from typing import Any

from nimbus.observe.tracing import Sink

log = logging.getLogger("nimbus.observe.xray_daemon")

HOST = "127.0.0.1"
MAX_DATAGRAM = 64 * 1024  # the daemon's own limit on a document
_ROOT = re.compile(r"1-[0-9a-f]{8}-[0-9a-f]{24}")
_ID = re.compile(r"[0-9a-f]{16}")


# A document as the views read it: times are epoch seconds (before the year 5000), nesting
# stays shallow enough to walk and copy, and every string can be written as UTF-8.
MAX_EPOCH_S = 1e11
MAX_DEPTH = 32
_TEXT = ("origin", "namespace", "type", "resource_type")
_FLAGS = ("error", "fault", "throttle", "in_progress")


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number X-Ray accepts")


def parse_datagram(data: bytes) -> dict[str, Any] | None:
    """The document of one daemon-protocol datagram, or None if it is not one."""
    header, sep, body = data.partition(b"\n")
    if not sep:
        return None
    try:
        head = json.loads(header)
        doc = json.loads(body, parse_constant=_reject_constant)  # no NaN, no Infinity
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not (isinstance(head, dict) and head.get("format") == "json" and head.get("version") == 1):
        return None
    return doc if valid_document(doc) and _writable(doc) else None


def valid_document(doc: Any) -> bool:
    """A segment or subsegment document with what X-Ray requires of one, and of the
    types nimbus's views read (its subsegments too)."""
    if not isinstance(doc, dict):
        return False
    if not (isinstance(doc.get("trace_id"), str) and _ROOT.fullmatch(doc["trace_id"])):
        return False
    parent = doc.get("parent_id")
    if parent is not None and not (isinstance(parent, str) and _ID.fullmatch(parent)):
        return False
    if doc.get("type") == "subsegment" and parent is None:
        return False
    return _shallow(doc) and _valid_node(doc)  # shallow first: bounds the recursion


def _valid_node(node: Any) -> bool:
    """One (sub)segment: id, name, times, the fields the views read, its subsegments."""
    if not isinstance(node, dict):
        return False
    if not (isinstance(node.get("id"), str) and _ID.fullmatch(node["id"])):
        return False
    name = node.get("name")
    if not (isinstance(name, str) and 0 < len(name) <= 200):
        return False
    if not _time(node.get("start_time")):
        return False
    if "end_time" in node:
        if not _time(node["end_time"]):
            return False
    elif node.get("in_progress") is not True:
        return False
    if any(field in node and not isinstance(node[field], str) for field in _TEXT):
        return False
    if any(field in node and not isinstance(node[field], bool) for field in _FLAGS):
        return False
    aws = node.get("aws")
    if aws is not None and not (isinstance(aws, dict)
                                and isinstance(aws.get("request_id", ""), str)):
        return False
    if not isinstance(node.get("http", {}), dict):
        return False
    subsegments = node.get("subsegments", [])
    return isinstance(subsegments, list) and all(_valid_node(s) for s in subsegments)


def _time(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and 0 <= value < MAX_EPOCH_S)


def _shallow(doc: Any) -> bool:
    """No part of the document (metadata included) nests deeper than MAX_DEPTH."""
    level: list[Any] = [doc]
    for _ in range(MAX_DEPTH):
        level = [child for value in level if isinstance(value, dict | list)
                 for child in (value.values() if isinstance(value, dict) else value)]
        if not level:
            return True
    return False


def _writable(doc: dict[str, Any]) -> bool:
    """Whether the document can be stored: a lone surrogate (valid JSON escape, no
    UTF-8) cannot."""
    try:
        json.dumps(doc, ensure_ascii=False).encode()
    except (UnicodeEncodeError, ValueError):
        return False
    return True


class XRayDaemon:
    """The receiver: a UDP socket read by the event loop, documents to ``sink``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sink: Sink) -> None:
        self.loop = loop
        self.sink = sink
        self.received = 0
        self.dropped = 0
        self._sock: socket.socket | None = None

    def open(self) -> str:
        """Bind (from any thread) and start reading on the loop; ``host:port``."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.bind((HOST, 0))
        self._sock = sock
        self.loop.call_soon_threadsafe(self.loop.add_reader, sock.fileno(), self._readable)
        port = sock.getsockname()[1]
        log.info("X-Ray daemon protocol receiver on %s:%d", HOST, port)
        return f"{HOST}:{port}"

    def _readable(self) -> None:
        assert self._sock is not None
        for _ in range(256):  # then let the loop breathe; the reader fires again
            try:
                data = self._sock.recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                log.exception("reading the X-Ray receiver's socket failed")
                return
            doc = parse_datagram(data)
            if doc is None:
                self.dropped += 1
                continue
            self.received += 1
            self.sink(doc)

    def close(self) -> None:
        if self._sock is not None:
            self.loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None


def daemon_factory(
    loop: asyncio.AbstractEventLoop,
) -> tuple[Callable[[Sink], str], list[XRayDaemon]]:
    """A ``Tracer``'s daemon starter on ``loop``, and the list the started one lands in
    (so its owner can close it)."""
    started: list[XRayDaemon] = []

    def start(sink: Sink) -> str:
        daemon = XRayDaemon(loop, sink)
        started.append(daemon)
        return daemon.open()

    return start, started
