"""A ``nimbus dev`` session: the dev server, what it serves (a ``Target``: a folder as one
function, or a SAM template's stack) deployed to it, every function's logs in one
stream, and the files watched: on save, the target redeploys what the saved files belong
to (nimbus replaces the warm environments of a function whose code changed), so the
next invocation runs the new code."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from nimbus.dev.deployer import Deployer
from nimbus.dev.log_stream import LogStream
from nimbus.dev.project import skipped
from nimbus.dev.server import DevServer


class Target(Protocol):
    """What a session serves and keeps in step with the files."""

    def open(self, server: DevServer) -> list[str]:
        """Deploy everything to the started server; lines saying what to call."""
        ...

    def served(self) -> dict[str, str]:
        """The functions deployed now: name on the server -> the label logs show."""
        ...

    def watched(self) -> list[Path]:
        """The folders to watch (recursively)."""
        ...

    def wants(self, path: Path) -> bool:
        """Whether a change of this path calls for a redeploy."""
        ...

    def reload(self, paths: set[Path]) -> None:
        """Redeploy what these changed paths belong to, saying what happened."""
        ...

    def close(self) -> None: ...


@dataclass
class DevSession:
    """Everything one ``nimbus dev`` runs; ``run()`` blocks until ``stop`` is set."""

    target: Target
    server: DevServer
    say: Callable[[str], None]
    emit: Callable[[str, str, str], None]
    stop: threading.Event = field(default_factory=threading.Event)
    api: Deployer | None = None
    logs: LogStream | None = None

    def start(self) -> list[str]:
        """Start the server and deploy the target; the lines saying what to call."""
        self.server.start()
        self.api = Deployer(self.server.endpoint, self.server.auth("lambda"))
        self.logs = LogStream(self.api.logs, self.emit)
        lines = self.target.open(self.server)
        self._follow()
        self.logs.start()
        return lines

    def _follow(self) -> None:
        """Stream the logs of every function the target serves now, and only those."""
        assert self.logs is not None
        served = self.target.served()
        for name, label in served.items():
            self.logs.follow(name, label)
        for name in [n for n in self.logs.names if n not in served]:
            self.logs.unfollow(name)

    def _ignored(self, path: Path, roots: list[Path]) -> bool:
        """Never worth a look: the server's own files, hidden entries, caches, virtualenvs."""
        data = self.server.data_dir.resolve()
        if path == data or data in path.parents:
            return True
        for root in roots:
            if path == root or root in path.parents:
                return skipped(path, root)
        return False

    def run(self) -> None:
        """Watch the target's folders until ``stop`` is set or the server exits."""
        import watchfiles

        while not self.stop.is_set():
            roots = [r.resolve() for r in self.target.watched()]

            def keep(change: watchfiles.Change, path: str, roots: list[Path] = roots) -> bool:
                return not self._ignored(Path(path), roots)

            # step: how long a burst of writes (an editor's save) may take before reloading.
            for changes in watchfiles.watch(*roots, watch_filter=keep, stop_event=self.stop,
                                            step=20, debounce=400, rust_timeout=500,
                                            yield_on_timeout=True, raise_interrupt=False):
                if not self.server.alive():
                    self.say("the dev server exited; stopping")
                    return
                wanted = {Path(p) for _, p in changes if self.target.wants(Path(p))}
                if wanted:
                    self.target.reload(wanted)
                    self._follow()
                if [r.resolve() for r in self.target.watched()] != roots:
                    break  # the template moved code to other folders: watch those

    def close(self) -> None:
        self.stop.set()
        if self.logs is not None:
            self.logs.stop()
        self.target.close()
        if self.api is not None:
            self.api.close()
        self.server.stop()
