"""All of a dev session's functions' logs in one stream: each function's new invocation
logs, polled from the server with a cursor, printed as they were written, every line
led by the function's name in a colour of its own."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_red")
# Records of other processes (async workers) land in batches, a little behind ones
# already read: each poll looks back this far and skips request ids already printed.
OVERLAP_MS = 5_000


class LogStream:
    """Polls ``read(name, since_ms)`` for each function every ``interval`` seconds and
    hands each new record's lines to ``emit(label, colour, line)``: a function's label is
    what the user calls it (its name, or its logical id in a template)."""

    def __init__(self, read: Callable[[str, int], list[dict[str, Any]]],
                 emit: Callable[[str, str, str], None], interval: float = 0.2) -> None:
        self.read = read
        self.emit = emit
        self.interval = interval
        self.names: list[str] = []
        self.labels: dict[str, str] = {}
        self.colours: dict[str, str] = {}  # a function keeps its colour for the session
        self.cursor: dict[str, int] = {}
        self.seen: dict[str, dict[str, int]] = {}  # name -> request id -> timestamp
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="nimbus-dev-logs", daemon=True)

    def follow(self, name: str, label: str | None = None) -> None:
        with self.lock:
            self.labels[name] = label or name
            if name not in self.names:
                self.names.append(name)
                self.colours.setdefault(name, COLOURS[len(self.colours) % len(COLOURS)])
                self.cursor[name] = int(time.time() * 1000) - OVERLAP_MS
                self.seen[name] = {}

    def unfollow(self, name: str) -> None:
        """Stop reading a function's logs (it left the project)."""
        with self.lock:
            if name in self.names:
                self.names.remove(name)

    def colour(self, name: str) -> str:
        return self.colours.get(name, "white")

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)

    def poll(self) -> None:
        """One round over every function (the thread calls it; tests may too)."""
        with self.lock:
            names = list(self.names)
        for name in names:
            label = self.labels[name]
            try:
                records = self.read(name, self.cursor[name] - OVERLAP_MS)
            except Exception as exc:  # the server going away ends the session elsewhere
                self.emit(label, "red", f"(cannot read logs: {exc})")
                continue
            seen = self.seen[name]
            for record in records:
                rid, stamp = record["request_id"], int(record["timestamp_ms"])
                if rid in seen:
                    continue
                seen[rid] = stamp
                self.cursor[name] = max(self.cursor[name], stamp)
                for line in record["text"].splitlines():
                    self.emit(label, self.colour(name), line)
            horizon = self.cursor[name] - 2 * OVERLAP_MS
            for rid in [r for r, t in seen.items() if t < horizon]:
                del seen[rid]

    def _run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.poll()
