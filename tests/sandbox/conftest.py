"""Fixtures for the sandbox tests: a SandboxManager on an event loop of its own (so that
one manager and its zygotes serve the whole session), and function packages made from
zips extracted into temporary directories, as the store does."""

from __future__ import annotations

import asyncio
import io
import json
import os
import stat
import threading
import time
import uuid
import zipfile
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from nimbus.sandbox import Environment, EnvironmentSpec, Invocation, Outcome, SandboxManager

T = TypeVar("T")
ACCOUNT = "000000000000"


class Loop:
    """An asyncio loop in a thread; ``run`` waits for a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="session")
def sandbox_loop() -> Iterator[Loop]:
    lp = Loop()
    yield lp
    lp.close()


@pytest.fixture(scope="session")
def sandbox_manager(sandbox_loop: Loop, tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[SandboxManager]:
    """The session's manager: tests using it (``sb``) are marked ``sandbox``."""
    async def make() -> SandboxManager:
        return SandboxManager(tmp_path_factory.mktemp("sandbox-work"))

    m = sandbox_loop.run(make())
    yield m
    sandbox_loop.run(m.close())


def package(base: Path, files: dict[str, str | bytes], executable: tuple[str, ...] = (),
            symlinks: dict[str, str] | None = None) -> Path:
    """Zip ``files``, extract the zip into a fresh directory (as the store does) and
    return it; files world-readable, ``executable`` ones 0755."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o755 if name in executable else 0o644) << 16
            zf.writestr(info, content)
    target = base / f"code-{uuid.uuid4().hex[:8]}"
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as zf:
        for info in zf.infolist():
            zf.extract(info, target)
            mode = (info.external_attr >> 16) & 0o777
            os.chmod(target / info.filename, mode or 0o644)
    for name, dest in (symlinks or {}).items():
        os.symlink(dest, target / name)
    for dirpath, _dirs, _files in os.walk(target):
        os.chmod(dirpath, 0o755)
    return target


def spec(code_dir: Path, handler: str = "app.handler", runtime: str = "python3.12",
         name: str = "fn", **kwargs: Any) -> EnvironmentSpec:
    return EnvironmentSpec(
        function_name=name, version="$LATEST",
        function_arn=f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{name}",
        runtime=runtime, handler=handler, code_dir=code_dir, **kwargs,
    )


def invocation(payload: bytes | str = b"{}", timeout_s: float = 3, **kwargs: Any) -> Invocation:
    if isinstance(payload, str):
        payload = payload.encode()
    kwargs.setdefault("invoked_function_arn", f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:fn")
    return Invocation(request_id=str(uuid.uuid4()), payload=payload,
                      deadline_ms=int(time.time() * 1000 + timeout_s * 1000), **kwargs)


def chmod_x(path: Path) -> None:
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


class Sandbox:
    """Synchronous helpers over the session's manager, for readable tests."""

    def __init__(self, loop: Loop, manager: SandboxManager, base: Path) -> None:
        self.loop = loop
        self.manager = manager
        self.base = base

    def package(self, files: dict[str, str | bytes], **kwargs: Any) -> Path:
        return package(self.base, files, **kwargs)

    def start(self, spec: EnvironmentSpec) -> Environment:
        return self.loop.run(self.manager.start(spec))

    def invoke(self, env: Environment, payload: bytes | str | dict = b"{}",
               timeout_s: float | None = None, **kwargs: Any) -> Outcome:
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        inv = invocation(payload, timeout_s or env.spec.timeout_s, **kwargs)
        return self.loop.run(env.invoke(inv))

    def call(self, env: Environment, payload: dict | None = None, **kwargs: Any) -> Any:
        """Invoke and decode a successful result."""
        outcome = self.invoke(env, payload or {}, **kwargs)
        assert outcome.function_error is None, (outcome.payload, outcome.logs)
        return json.loads(outcome.payload)

    def stop(self, env: Environment) -> None:
        self.loop.run(env.stop())


@pytest.fixture(scope="session")
def sb(sandbox_loop: Loop, sandbox_manager: SandboxManager,
       tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    return Sandbox(sandbox_loop, sandbox_manager, tmp_path_factory.mktemp("functions"))


@pytest.fixture
async def now(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The event loop's clock, as the test sets it (``now[0]``)."""
    loop = asyncio.get_running_loop()
    clock = [loop.time()]
    monkeypatch.setattr(loop, "time", lambda: clock[0])
    return clock
