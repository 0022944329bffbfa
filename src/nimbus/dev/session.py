"""A ``nimbus dev`` session: the dev server, the project's functions deployed to it, their
logs streamed, and the folder watched: on save, the functions whose files changed are
redeployed (UpdateFunctionCode; nimbus replaces their warm environments), so the next
invocation runs the new code."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from nimbus.dev.deployer import Debugging, Deployer, DeployError
from nimbus.dev.log_stream import LogStream
from nimbus.dev.project import DevFunction, skipped
from nimbus.dev.server import DevServer


@dataclass
class DevSession:
    """Everything one ``nimbus dev`` runs; ``run()`` blocks until ``stop`` is set."""

    root: Path
    functions: list[DevFunction]
    server: DevServer
    say: Callable[[str], None]
    emit: Callable[[str, str, str], None]
    debugging: Debugging | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    deployer: Deployer | None = None
    logs: LogStream | None = None

    def start(self, auth: Callable[[str], object] | None = None) -> dict[str, str]:
        """Start the server and deploy every function; their URLs by name."""
        self.server.start()
        self.deployer = Deployer(self.server.endpoint, auth("lambda") if auth else None)
        self.logs = LogStream(self.deployer.logs, self.emit)
        urls = {}
        for fn in self.functions:
            took = self.deployer.deploy(fn, self.debugging)
            urls[fn.name] = self.deployer.url(fn.name)
            self.logs.follow(fn.name)
            self.say(f"deployed {fn.name} ({fn.runtime}, {fn.handler}) in {took * 1000:.0f} ms")
        self.logs.start()
        return urls

    def changed(self, paths: Iterable[Path]) -> list[DevFunction]:
        """The functions owning any of these paths (left-out paths change nothing)."""
        data = self.server.data_dir.resolve()
        real = [p for p in paths if not skipped(p, self.root) and data not in p.parents]
        return [fn for fn in self.functions if any(fn.owns(p) for p in real)]

    def redeploy(self, functions: list[DevFunction]) -> None:
        assert self.deployer is not None
        for fn in functions:
            try:
                took = self.deployer.deploy(fn, self.debugging)
            except DeployError as exc:
                self.say(f"{fn.name}: not redeployed: {exc}")
                continue
            extra = (" (attach the debugger again: its environment is new)"
                     if self.debugging and self.debugging.function == fn.name else "")
            self.say(f"reloaded {fn.name} in {took * 1000:.0f} ms{extra}")

    def run(self) -> None:
        """Watch the folder until ``stop`` is set or the server exits."""
        import watchfiles

        # step: how long a burst of writes (an editor's save) may take before reloading.
        for changes in watchfiles.watch(self.root, stop_event=self.stop, step=20,
                                        debounce=400, rust_timeout=500,
                                        yield_on_timeout=True, raise_interrupt=False):
            if not self.server.alive():
                self.say("the dev server exited; stopping")
                return
            functions = self.changed(Path(p) for _, p in changes)
            if functions:
                self.redeploy(functions)

    def close(self) -> None:
        self.stop.set()
        if self.logs is not None:
            self.logs.stop()
        if self.deployer is not None:
            self.deployer.close()
        self.server.stop()
