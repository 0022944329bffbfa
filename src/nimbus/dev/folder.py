"""A folder served by ``nimbus dev`` as one function (no template): deployed through the
Lambda API with a function URL, and its code redeployed (UpdateFunctionCode) when a file
in it is saved."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from nimbus.dev.deployer import Debugging, Deployer, DeployError
from nimbus.dev.project import DevFunction, skipped
from nimbus.dev.server import DevServer


class FolderTarget:
    """The functions of a folder (for now: the folder itself) on the dev server."""

    def __init__(self, root: Path, functions: list[DevFunction], say: Callable[[str], None],
                 debugging: Debugging | None = None) -> None:
        self.root = root
        self.functions = functions
        self.say = say
        self.debugging = debugging
        self.deployer: Deployer | None = None

    def open(self, server: DevServer) -> list[str]:
        """Deploy every function; the lines saying where to call them."""
        self.deployer = Deployer(server.endpoint, server.auth("lambda"))
        lines = []
        for fn in self.functions:
            took = self.deployer.deploy(fn, self.debugging)
            lines.append(f"  {fn.name}: {self.deployer.url(fn.name)}")
            self.say(f"deployed {fn.name} ({fn.runtime}, {fn.handler}) in {took * 1000:.0f} ms")
        if self.debugging is not None:
            lines.append(f"  {self.debugging.function}: debugpy on {self.debugging.host}:"
                         f"{self.debugging.port}; its first invocation waits until a debugger "
                         f"attaches (VS Code: attach, pathMappings /var/task -> {self.root})")
        return lines

    def served(self) -> dict[str, str]:
        return {fn.name: fn.name for fn in self.functions}

    def watched(self) -> list[Path]:
        return [self.root]

    def wants(self, path: Path) -> bool:
        return not skipped(path, self.root) and any(fn.owns(path) for fn in self.functions)

    def reload(self, paths: set[Path]) -> None:
        assert self.deployer is not None
        for fn in [f for f in self.functions if any(f.owns(p) for p in paths)]:
            # OSError: a file an editor removed while it was zipped; HTTPError: the server
            # went away (the session sees it exit and stops).
            try:
                took = self.deployer.deploy(fn, self.debugging)
            except (DeployError, OSError, httpx.HTTPError) as exc:
                self.say(f"{fn.name}: not redeployed: {exc}")
                continue
            extra = (" (attach the debugger again: its environment is new)"
                     if self.debugging and self.debugging.function == fn.name else "")
            self.say(f"reloaded {fn.name} in {took * 1000:.0f} ms{extra}")

    def close(self) -> None:
        if self.deployer is not None:
            self.deployer.close()
