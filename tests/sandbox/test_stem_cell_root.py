"""Stem cells enter their root while they idle (``pivot_root`` walks every task on the
host, so a cold start must not pay it), and then get the function's code and layers as
detached mounts the server makes (``nimbus.sandbox.function_mounts``): what the function
sees must be what a path-mounted environment sees, read-only."""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path

import pytest

from nimbus.sandbox import SandboxManager, function_mounts
from tests.sandbox.conftest import Sandbox, invocation, spec

pytestmark = pytest.mark.sandbox

LOOK = '''
import errno
import json
import os

def handler(event, context):
    mounts, tags, sources = {}, {}, {}
    for line in open("/proc/self/mountinfo"):
        fields = line.split()
        mounts[fields[4]] = fields[5]
        tags[fields[4]] = fields[6:fields.index("-")]  # shared:N, master:N...
        sources[fields[4]] = " ".join(fields[fields.index("-") + 1:])
    opt = {}
    for name in sorted(os.listdir("/opt")):
        with open("/opt/" + name) as f:
            opt[name] = f.read()
    return {"mounts": mounts, "tags": tags, "sources": sources, "opt": opt,
            "task": sorted(os.listdir("/var/task")),
            "root": sorted(os.listdir("/"))}
'''


def _idle_cells(manager: SandboxManager) -> list[int]:
    return [cell.pid for cells in manager._cells._cells.values() for cell in cells]


def test_an_idle_stem_cell_is_in_its_root_already(sb: Sandbox) -> None:
    code = sb.package({"app.py": LOOK})
    sb.stop(sb.start(spec(code)))  # the pool learns what is in demand
    sb.loop.run(sb.manager.refilled(spec(code)))
    pids = _idle_cells(sb.manager)
    assert pids
    assert sb.base.exists()  # the control: the tests' files, in the host's /tmp
    for pid in pids:
        # A cell gets there at idle priority after its warm-up; nothing announces it.
        deadline = time.monotonic() + 20
        while os.listdir(f"/proc/{pid}/root/tmp") and time.monotonic() < deadline:
            time.sleep(0.01)
        # The sandbox's base (its mount points) is the cell's root; the host's tree,
        # the tests' files in its /tmp included, is gone from its view.
        assert {"var", "tmp", "opt", "proc", "usr", "etc"} <= set(os.listdir(f"/proc/{pid}/root"))
        assert os.listdir(f"/proc/{pid}/root/tmp") == []
        assert not Path(f"/proc/{pid}/root{sb.base}").exists()


def test_code_and_layers_from_a_stem_cell_are_as_mounted_by_path(sb: Sandbox) -> None:
    one = sb.package({"shared": "one", "only-one": "1"})
    two = sb.package({"shared": "two"})
    # Lambda's most: five layers, whose paths together pass fsconfig's 256 bytes.
    more = [sb.package({f"layer{i}": str(i)}) for i in range(3)]
    code = sb.package({"app.py": LOOK})
    for layers in ([], [one], [one, two], [one, *more, two]):
        fn = spec(code, layer_dirs=layers)
        sb.stop(sb.start(fn))
        sb.loop.run(sb.manager.refilled(fn))
        env = sb.start(fn)
        try:
            assert env.origin == "stem cell"
            seen = sb.call(env)
        finally:
            sb.stop(env)
        assert seen["task"] == ["app.py"]
        assert {"ro", "nosuid", "nodev"} <= set(seen["mounts"]["/var/task"].split(","))
        # Private: no peer group with the host's mounts (nothing mounted there later
        # shows up in the sandbox, nor do the host's mounts walk every environment).
        assert seen["tags"]["/var/task"] == []
        assert str(sb.base) not in seen["sources"]["/var/task"]
        if not layers:
            assert seen["opt"] == {}
            continue
        assert {"ro", "nosuid", "nodev"} <= set(seen["mounts"]["/opt"].split(","))
        assert seen["tags"]["/opt"] == []
        assert str(sb.base) not in seen["sources"]["/opt"]  # no host path in its options
        # Later layers win, as on Lambda.
        assert seen["opt"]["shared"] == ("one" if len(layers) == 1 else "two")
        assert seen["opt"]["only-one"] == "1"
        for i in range(3 if len(layers) == 5 else 0):
            assert seen["opt"][f"layer{i}"] == str(i)


def test_a_detached_code_mount_cannot_be_written(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text("x = 1\n")
    fd = function_mounts.bind_read_only(str(code))
    try:
        assert os.listdir(f"/proc/self/fd/{fd}") == ["app.py"]
        with pytest.raises(OSError) as raised:
            open(f"/proc/self/fd/{fd}/new", "w").close()
        assert raised.value.errno == errno.EROFS
    finally:
        os.close(fd)


def test_without_detached_mounts_stem_cells_mount_by_path(
        sb: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel without mount_setattr (before 5.12): the cells wait in the host's tree
    and mount the function by path, as before; the function sees the same."""
    monkeypatch.setattr(function_mounts, "supported", lambda probe_dir: False)
    layer = sb.package({"shared": "layer"})
    code = sb.package({"app.py": LOOK})
    fn = spec(code, layer_dirs=[layer])

    async def run() -> tuple[str, dict]:
        manager = SandboxManager(tmp_path / "work")
        try:
            await (await manager.start(fn)).stop()
            await manager.refilled(fn)
            env = await manager.start(fn)
            outcome = await env.invoke(invocation())
            await env.stop()
            assert outcome.function_error is None, outcome.payload
            return env.origin, json.loads(outcome.payload)
        finally:
            await manager.close()

    origin, seen = sb.loop.run(run(), timeout=120)
    assert origin == "stem cell"
    assert seen["task"] == ["app.py"] and seen["opt"] == {"shared": "layer"}
    assert {"ro", "nosuid", "nodev"} <= set(seen["mounts"]["/var/task"].split(","))
    assert "/tmp" in seen["mounts"]
