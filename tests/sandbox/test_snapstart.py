"""SnapStart at the manager level: a version's template runs init once, and environments
forked from it start in milliseconds, unique and confined as any other."""

from __future__ import annotations

import dataclasses
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
