"""SnapStart at the manager level: a version's template runs init once, and environments
forked from it start in milliseconds, unique and confined as any other."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import pytest

from nimbus.sandbox import Environment, EnvironmentSpec

from .conftest import Sandbox, spec

pytestmark = pytest.mark.sandbox

APP = '''
import os, random, time, uuid
from snapshot_restore_py import register_after_restore, register_before_snapshot

time.sleep(0.5)
INIT_PID = os.getpid()
BOOT = uuid.uuid4().hex      # made once, in the template
SEEN = []
open("/tmp/template-file", "w").write("from init")


@register_before_snapshot
def before():
    SEEN.append("before")


def after(tag, suffix=""):
    SEEN.append(tag + suffix)


register_after_restore(after, "after", suffix="!")


def handler(event, context):
    action = event.get("action")
    if action == "write":
        open("/tmp/" + event["name"], "w").write(event["name"])
    if action == "unshare":
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        rc = libc.unshare(0x00020000)
        return {"rc": rc, "errno": ctypes.get_errno()}
    return {"boot": BOOT, "pid": os.getpid(), "init_pid": INIT_PID, "seen": SEEN,
            "random": random.random(), "uuid": str(uuid.uuid4()), "tmp": sorted(os.listdir("/tmp")),
            "uid": os.getuid(), "stream": os.environ["AWS_LAMBDA_LOG_STREAM_NAME"],
            "init_type": os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"],
            "procs": sorted(p for p in os.listdir("/proc") if p.isdigit())}
'''


@pytest.fixture(scope="module")
def code(sb: Sandbox) -> Path:
    return sb.package({"app.py": APP})


def _snap(code: Path, version: str = "1", **kwargs: Any) -> EnvironmentSpec:
    return dataclasses.replace(spec(code, name="snap", **kwargs), version=version, snapstart=True)


def _start_timed(sb: Sandbox, s: EnvironmentSpec) -> tuple[Environment, float]:
    t0 = time.perf_counter()
    env = sb.start(s)
    return env, (time.perf_counter() - t0) * 1000


def test_init_once_per_version_and_fast_restores(sb: Sandbox, code: Path) -> None:
    s = _snap(code)
    first, first_ms = _start_timed(sb, s)          # makes the template: init runs here
    second, second_ms = _start_timed(sb, s)
    try:
        a, b = sb.call(first), sb.call(second)
        assert first.restored and second.restored
        assert a["boot"] == b["boot"]               # both from one init
        assert a["pid"] != b["pid"]
        assert second_ms < 100, second_ms           # no 500 ms init
        assert first_ms >= 500
        assert a["seen"] == b["seen"] == ["before", "after!"]
        assert a["random"] != b["random"] and a["uuid"] != b["uuid"]
        assert a["stream"] != b["stream"]
        assert a["init_type"] == "snap-start"
        assert a["uid"] != b["uid"] and a["uid"] != 0
        info = [i for i in sb.manager.templates.infos() if i.function_name == "snap"]
        assert len(info) == 1 and info[0].memory_bytes > 0 and info[0].forks >= 2
    finally:
        sb.stop(first)
        sb.stop(second)


def test_latest_runs_init_per_environment(sb: Sandbox, code: Path) -> None:
    s = spec(code, name="snap-latest")
    one, two = sb.start(s), sb.start(s)
    try:
        assert not one.restored and one.init_duration_ms >= 500
        assert sb.call(one)["boot"] != sb.call(two)["boot"]
    finally:
        sb.stop(one)
        sb.stop(two)


def test_tmp_is_private_per_environment(sb: Sandbox, code: Path) -> None:
    s = _snap(code, version="2")
    one, two = sb.start(s), sb.start(s)
    try:
        sb.call(one, {"action": "write", "name": "one"})
        sb.call(two, {"action": "write", "name": "two"})
        seen_one, seen_two = sb.call(one)["tmp"], sb.call(two)["tmp"]
        assert "one" in seen_one and "two" not in seen_one
        assert "two" in seen_two and "one" not in seen_two
        assert "template-file" not in seen_one  # the template's /tmp is covered
        # Each sees only its own processes.
        assert sb.call(one)["procs"] == [str(sb.call(one)["pid"])]
    finally:
        sb.stop(one)
        sb.stop(two)


def test_strict_filter_in_environment(sb: Sandbox, code: Path) -> None:
    env = sb.start(_snap(code, version="3"))
    try:
        result = sb.call(env, {"action": "unshare"})
        assert result == {"rc": -1, "errno": 1}
    finally:
        sb.stop(env)


def test_template_filter_denies_mount_allows_newns() -> None:
    from nimbus.guest import seccomp

    strict = seccomp.program()
    template = seccomp.program(template=True)
    assert strict != template
    # The template variant still denies mount (165), setns (308), fsopen (430).
    for nr in (165, 308, 430, 432, 428):
        assert seccomp._op(seccomp._JEQ_K, nr, 0, 1) in template
    assert seccomp._op(seccomp._JEQ_K, 429, 0, 1) not in template  # move_mount allowed


CELL_APP = '''
import os
from snapshot_restore_py import register_after_restore

RESTORED = {}


def _cgroup():
    return open("/proc/self/cgroup").read()


@register_after_restore
def restored():
    open(f"/tmp/restored-{os.getpid()}", "w").close()
    RESTORED.update(uid=os.getuid(), stream=os.environ["AWS_LAMBDA_LOG_STREAM_NAME"],
                    cgroup=_cgroup())


def handler(event, context):
    return {"restored": RESTORED, "uid": os.getuid(), "pid": os.getpid(), "cgroup": _cgroup(),
            "stream": os.environ["AWS_LAMBDA_LOG_STREAM_NAME"], "tmp": os.listdir("/tmp")}
'''


def _in_cgroup(cgroup_file: str, name: str) -> bool:
    """Whether every hierarchy's line of a /proc/<pid>/cgroup text names cgroup ``name``."""
    lines = [line for line in cgroup_file.splitlines() if ":memory:" in line or ":pids:" in line]
    return bool(lines) and all(line.endswith("/" + name) for line in lines)


def _host_status_uid(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("Uid:")).split()[1])


def test_cells_forked_ahead_run_nothing_until_claimed(sb: Sandbox) -> None:
    """A template keeps cells forked ahead of time, each already in a cgroup of its own;
    until a cold start claims one, none of the function's code runs in it (no
    after-restore hook), and a claimed cell runs the hooks as its own environment."""
    s = _snap(sb.package({"app.py": CELL_APP}), version="cells")
    first = sb.start(s)  # makes the template (no cell ready yet: forked on the spot)
    template = sb.manager.templates.get(s.function_arn, s.version)
    assert template is not None and first.origin == "snapstart"
    sb.loop.run(template.cells.filled())
    cells = template.cells.pids
    assert len(cells) == 2
    template_tmp = f"/proc/{template.process.pid}/root/tmp"
    assert template.process.cgroup is not None
    for pid in cells:
        with open(f"/proc/{pid}/cgroup") as f:
            own = f.read()
        assert not _in_cgroup(own, template.process.cgroup.name)  # moved out already
        assert _host_status_uid(pid) == template.uid_first  # still the namespace's root
    second = sb.start(s)
    try:
        assert second.origin == "snapstart cell" and second.pid in cells
        got = sb.call(second)
        assert got["restored"]["uid"] == got["uid"] == _host_status_uid(second.pid)
        assert got["uid"] != template.uid_first
        assert got["restored"]["stream"] == got["stream"]
        assert second.cgroup is not None
        assert _in_cgroup(got["restored"]["cgroup"], second.cgroup.name)
        assert f"restored-{got['pid']}" in got["tmp"]  # the hook ran in its own /tmp
        # No hook ran in a cell before its claim: none wrote to the template's /tmp.
        assert not [n for n in os.listdir(template_tmp) if n.startswith("restored-")]
        sb.loop.run(template.cells.filled())
        assert len(template.cells.pids) == 2  # refilled after the claim
    finally:
        sb.stop(first)
        sb.stop(second)


def test_cells_die_with_their_template(sb: Sandbox) -> None:
    s = _snap(sb.package({"app.py": CELL_APP}), version="cells-close")
    env = sb.start(s)
    template = sb.manager.templates.get(s.function_arn, s.version)
    assert template is not None
    sb.loop.run(template.cells.filled())
    cells = template.cells.pids
    assert len(cells) == 2
    sb.loop.run(sb.manager.templates.drop(s.function_arn, s.version))
    for pid in [*cells, env.pid, template.process.pid]:
        assert not os.path.exists(f"/proc/{pid}"), pid  # killed and reaped
    assert not env.alive


def test_tmp_is_private_per_environment_with_tmp_in_memory(
    sb: Sandbox, code: Path, tmp_path: Path
) -> None:
    """tmp_storage = "memory": an environment forked from a template cannot mount a tmpfs
    itself, so the server hands it one; it never sees the template's or a sibling's."""
    from nimbus.sandbox import SandboxManager

    memory = Sandbox(sb.loop, sb.loop.run(_manager(tmp_path)), sb.base)
    s = _snap(code, version="7")
    one, two = memory.start(s), memory.start(s)
    try:
        memory.call(one, {"action": "write", "name": "one"})
        memory.call(two, {"action": "write", "name": "two"})
        seen_one, seen_two = memory.call(one)["tmp"], memory.call(two)["tmp"]
        assert "one" in seen_one and "two" not in seen_one and "template-file" not in seen_one
        assert "two" in seen_two and "one" not in seen_two
    finally:
        memory.stop(one)
        memory.stop(two)
        sb.loop.run(memory.manager.close())
    assert isinstance(memory.manager, SandboxManager)


async def _manager(tmp_path: Path) -> Any:
    from nimbus.sandbox import SandboxManager

    return SandboxManager(tmp_path / "work", tmp_storage="memory")
