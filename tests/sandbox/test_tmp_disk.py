"""Each environment's /tmp: an ext4 of its own on a loop device, EphemeralStorage big, not
counted against MemorySize ([K fidelity] part 6); and Max Memory Used without its page
cache. The first tests need no root (fakes); the rest run real sandboxes."""

from __future__ import annotations

import asyncio
import errno
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nimbus.sandbox import IsolationUnavailable, SandboxManager, tmpdisk
from nimbus.sandbox import memory as memory_module
from nimbus.sandbox.memory import MaxMemory
from tests.sandbox.conftest import Sandbox, invocation, spec

MB = 1024 * 1024

TMP_CODE = '''
import errno, json, os, time

def handler(event, context):
    op = event["op"]
    if op == "df":
        st = os.statvfs("/tmp")
        mounts = [line.split() for line in open("/proc/self/mounts")]
        tmp = [m for m in mounts if m[1] == "/tmp"]
        return {"avail": st.f_bavail * st.f_frsize, "size": st.f_blocks * st.f_frsize,
                "fstype": tmp[-1][2], "options": tmp[-1][3].split(","),
                "ls": sorted(os.listdir("/tmp")), "mode": os.stat("/tmp").st_mode & 0o7777}
    if op == "write":
        chunk = b"x" * (1 << 20)
        written = 0
        start = time.time()
        try:
            with open(event.get("path", "/tmp/big"), "wb") as f:
                for _ in range(event["mb"]):
                    f.write(chunk)
                    written += 1
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            return {"errno": exc.errno, "mb": written}
        return {"size": os.path.getsize(event.get("path", "/tmp/big")),
                "seconds": time.time() - start}
    if op == "touch":
        with open("/tmp/" + event["name"], "w") as f:
            f.write(event["name"])
        return sorted(os.listdir("/tmp"))
    if op == "ls":
        return sorted(os.listdir("/tmp"))
    if op == "alloc":
        block = bytearray(event["mb"] << 20)
        time.sleep(event.get("hold", 0))
        return len(block)
    raise ValueError(op)
'''


# -- Max Memory Used, with fakes (no root) -------------------------------------------


class FakeCgroup:
    """A cgroup whose counters the test sets: usage, unmapped page cache, peak."""

    def __init__(self) -> None:
        self.usage = 0
        self.cache = 0
        self.peak = 0
        self.resets = 0

    def set(self, usage_mb: int, cache_mb: int) -> None:
        self.usage, self.cache = usage_mb * MB, cache_mb * MB
        self.peak = max(self.peak, self.usage)

    def memory_peak_bytes(self) -> int:
        return self.peak

    def memory_sample(self) -> tuple[int, int]:
        return self.usage, self.cache

    def reset_peak(self) -> bool:
        self.resets += 1
        self.peak = self.usage
        return True


class FakeDisk:
    def __init__(self) -> None:
        self.used = False

    def in_use(self) -> bool:
        return self.used


def meter() -> tuple[MaxMemory, FakeCgroup, FakeDisk]:
    cgroup, disk = FakeCgroup(), FakeDisk()
    return MaxMemory(cgroup, disk), cgroup, disk  # type: ignore[arg-type]


def test_without_tmp_data_the_peak_is_the_figure_and_memory_stat_is_not_read() -> None:
    m, cgroup, _disk = meter()
    cgroup.set(60, 0)  # a transient allocation...
    cgroup.set(5, 0)  # ...freed before the end
    cgroup.memory_sample = None  # type: ignore[assignment,method-assign]  # never called
    m.sample()
    assert m.after_invocation() == 60
    assert cgroup.resets == 0


def test_tmp_cache_is_taken_off_the_peak() -> None:
    m, cgroup, disk = meter()
    cgroup.set(4, 0)
    assert m.after_invocation() == 4
    disk.used = True  # a 128 MB function writes 400 MB: the cgroup fills with cache
    cgroup.set(128, 122)
    m.sample()
    cgroup.set(128, 121)
    assert m.after_invocation() == 7
    # Overwriting the file (its cache dropped at the truncation) in the next invocation.
    cgroup.set(16, 10)
    assert m.after_invocation() == 7
    # A burst of allocations in a later invocation counts, the cache around it does not.
    cgroup.set(70, 10)
    cgroup.set(16, 10)
    assert m.after_invocation() == 60


def test_memory_seen_in_samples_is_a_floor() -> None:
    m, cgroup, disk = meter()
    disk.used = True
    cgroup.set(128, 120)  # full of cache
    m.sample()
    cgroup.set(128, 20)  # then memory pushed most of the cache out
    m.sample()
    cgroup.set(10, 5)
    assert m.after_invocation() == 108


def test_a_temp_file_deleted_before_the_end_is_caught_by_a_sample() -> None:
    m, cgroup, disk = meter()
    disk.used = True
    cgroup.set(128, 121)
    m.sample()  # the sampler, mid-write
    disk.used = False
    cgroup.set(7, 0)  # NamedTemporaryFile closed: nothing left in /tmp at the end
    assert m.after_invocation() == 7


def test_max_memory_used_never_shrinks() -> None:
    m, cgroup, disk = meter()
    cgroup.set(50, 0)
    assert m.after_invocation() == 50
    disk.used = True
    cgroup.set(128, 125)
    assert m.after_invocation() == 50


# -- real sandboxes -----------------------------------------------------------------


def loops_under(path: Path) -> list[str]:
    """Loop devices whose backing file lies under ``path`` (deleted or not)."""
    found = []
    for dev in Path("/sys/block").glob("loop*"):
        try:
            backing = (dev / "loop" / "backing_file").read_text().strip()
        except OSError:
            continue
        if backing.startswith(str(path)):
            found.append(dev.name)
    return found


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


@pytest.fixture(scope="module")
def code(sb: Sandbox) -> Path:
    return sb.package({"app.py": TMP_CODE})


def call(sb: Sandbox, env: Any, timeout_s: float = 60, **event: Any) -> Any:
    return sb.call(env, event, timeout_s=timeout_s)


@pytest.mark.sandbox
@pytest.mark.parametrize("size_mb", [512, 2048])
def test_tmp_is_an_empty_ext4_of_ephemeral_storage_size(sb: Sandbox, code: Path,
                                                         size_mb: int) -> None:
    env = sb.start(spec(code, ephemeral_mb=size_mb))
    try:
        df = call(sb, env, op="df")
    finally:
        sb.stop(env)
    assert df["fstype"] == "ext4"
    assert {"nosuid", "nodev", "rw"} <= set(df["options"])
    assert df["ls"] == []  # no lost+found
    assert df["mode"] == 0o1777
    # What df shows as Avail: EphemeralStorage, and 64 kB for the extent tree of a file that big.
    assert df["avail"] == size_mb * MB + 64 * 1024
    assert size_mb * MB <= df["size"] <= (size_mb + 17) * MB


@pytest.mark.sandbox
def test_a_128_mb_function_writes_400_mb_to_tmp(sb: Sandbox, code: Path) -> None:
    env = sb.start(spec(code, memory_mb=128, ephemeral_mb=512, timeout_s=60))
    try:
        outcome = sb.invoke(env, {"op": "write", "mb": 400}, timeout_s=60)
        assert outcome.function_error is None, (outcome.payload, outcome.logs)
        assert json.loads(outcome.payload)["size"] == 400 * MB
        assert outcome.reusable
        # Memory only: the cgroup peaked at 128 MB of page cache, the function used a few.
        assert outcome.max_memory_used_mb < 48, outcome.max_memory_used_mb
        assert call(sb, env, op="ls") == ["big"]  # the same environment keeps its /tmp
    finally:
        sb.stop(env)


@pytest.mark.sandbox
def test_writing_past_ephemeral_storage_is_enospc_not_an_oom_kill(sb: Sandbox,
                                                                   code: Path) -> None:
    env = sb.start(spec(code, memory_mb=128, ephemeral_mb=512, timeout_s=60))
    try:
        outcome = sb.invoke(env, {"op": "write", "mb": 600}, timeout_s=60)
        assert outcome.function_error is None, (outcome.payload, outcome.logs)
        result = json.loads(outcome.payload)
        assert result["errno"] == errno.ENOSPC
        assert result["mb"] == 512  # every byte of EphemeralStorage is usable
        assert outcome.reusable
        assert call(sb, env, op="alloc", mb=1) == MB  # alive and well
    finally:
        sb.stop(env)


@pytest.mark.sandbox
def test_a_new_environment_gets_an_empty_tmp_and_neighbours_are_apart(
        sb: Sandbox, code: Path) -> None:
    first = sb.start(spec(code))
    second = sb.start(spec(code))
    try:
        assert call(sb, first, op="touch", name="first") == ["first"]
        assert call(sb, second, op="touch", name="second") == ["second"]
        assert call(sb, first, op="ls") == ["first"]
    finally:
        sb.stop(first)
        sb.stop(second)
    third = sb.start(spec(code))
    try:
        assert call(sb, third, op="ls") == []
    finally:
        sb.stop(third)


@pytest.mark.sandbox
def test_the_loop_device_goes_with_the_environment(sb: Sandbox, code: Path) -> None:
    work = sb.manager.work_dir
    env = sb.start(spec(code, ephemeral_mb=777))
    try:
        call(sb, env, op="write", mb=8)
        device = env.tmp.device if env.tmp is not None else ""
        assert device and Path(device).name in loops_under(work)
    finally:
        sb.stop(env)
    assert eventually(lambda: Path(device).name not in loops_under(work))


def run_manager(sb: Sandbox, tmp_path: Path, body: Callable[[SandboxManager], Any],
                **options: Any) -> Any:
    async def run() -> Any:
        manager = SandboxManager(tmp_path / "work", **options)
        try:
            return await body(manager)
        finally:
            await manager.close()

    return sb.loop.run(run(), timeout=120)


@pytest.mark.sandbox
def test_forked_from_the_zygote_and_nothing_left_after_close(sb: Sandbox, code: Path,
                                                              tmp_path: Path) -> None:
    async def body(manager: SandboxManager) -> dict:
        envs = [await manager.start(spec(code, ephemeral_mb=512)) for _ in range(2)]
        assert {e.origin for e in envs} == {"zygote"}
        outcome = await envs[0].invoke(invocation(json.dumps({"op": "df"})))
        await envs[0].invoke(invocation(json.dumps({"op": "write", "mb": 20}), timeout_s=30))
        assert loops_under(tmp_path)  # the environments' and the pool's
        return json.loads(outcome.payload)

    df = run_manager(sb, tmp_path, body, stem_cells=0)
    assert df["fstype"] == "ext4" and df["avail"] == 512 * MB + 64 * 1024
    assert eventually(lambda: not loops_under(tmp_path))
    assert list((tmp_path / "work").iterdir()) == []  # run dir, templates, images: gone


@pytest.mark.sandbox
def test_without_the_helper_disks_are_made_in_the_server(sb: Sandbox, code: Path,
                                                         tmp_path: Path) -> None:
    async def body(manager: SandboxManager) -> list[dict]:
        first = await manager.start(spec(code))
        assert manager._tmp is not None
        helper = manager._tmp._helper
        assert helper is not None and helper.alive and helper._proc is not None
        helper._proc.kill()
        await asyncio.to_thread(helper._proc.wait)
        await first.stop()
        found = []
        for _ in range(6):  # more than the pool holds: some made after the helper died
            env = await manager.start(spec(code, ephemeral_mb=640))
            outcome = await env.invoke(invocation(json.dumps({"op": "df"})))
            found.append(json.loads(outcome.payload))
            await env.stop()
        assert not helper.alive
        return found

    for df in run_manager(sb, tmp_path, body):
        assert df["fstype"] == "ext4" and df["avail"] == 640 * MB + 64 * 1024
    assert eventually(lambda: not loops_under(tmp_path))


@pytest.mark.sandbox
def test_tmp_storage_memory_is_a_tmpfs(sb: Sandbox, code: Path, tmp_path: Path) -> None:
    async def body(manager: SandboxManager) -> dict:
        env = await manager.start(spec(code, ephemeral_mb=600))
        outcome = await env.invoke(invocation(json.dumps({"op": "df"})))
        await env.stop()
        return json.loads(outcome.payload)

    df = run_manager(sb, tmp_path, body, tmp_storage="memory")
    assert df["fstype"] == "tmpfs" and df["size"] == 600 * MB
    assert not loops_under(tmp_path)


@pytest.mark.sandbox
def test_no_loop_devices_is_refused_not_a_fallback_to_memory(sb: Sandbox, code: Path,
                                                             tmp_path: Path,
                                                             monkeypatch) -> None:
    def no_loop(self: tmpdisk.TmpDisks) -> None:
        raise tmpdisk.TmpDisksUnavailable("no /dev/loop-control (test)")

    monkeypatch.setattr(tmpdisk.TmpDisks, "check", no_loop)

    async def body(manager: SandboxManager) -> None:
        await manager.start(spec(code))

    with pytest.raises(IsolationUnavailable, match='tmp_storage = "memory"'):
        run_manager(sb, tmp_path, body)


@pytest.mark.sandbox
def test_a_crashed_servers_leftovers_are_swept(sb: Sandbox, code: Path, tmp_path: Path) -> None:
    dead = 2**22 + 7  # above pid_max's default: no such process
    stale = tmp_path / "work" / f"run-{dead}-abcdef" / "tmp" / "images"
    stale.mkdir(parents=True)
    (stale / "0123.img").write_bytes(b"\0" * 4096)

    async def body(manager: SandboxManager) -> None:
        await manager.warm_up([])

    run_manager(sb, tmp_path, body)
    assert not stale.exists()


@pytest.mark.sandbox
def test_sampler_keeps_a_deleted_temp_file_out_of_max_memory_used(
        sb: Sandbox, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(memory_module, "SAMPLE_S", 0.02)
    temp = sb.package({"app.py": (
        "import tempfile, time\n"
        "def handler(event, context):\n"
        "    with tempfile.NamedTemporaryFile(dir='/tmp') as f:\n"
        "        for _ in range(300):\n"
        "            f.write(b'x' * (1 << 20))\n"
        "        f.flush()\n"
        "        time.sleep(0.3)\n"
        "    return 'done'\n")})

    async def body(manager: SandboxManager) -> int:
        env = await manager.start(spec(temp, memory_mb=128, timeout_s=60))
        outcome = await env.invoke(invocation(b"{}", timeout_s=60))
        assert outcome.function_error is None, outcome.payload
        await env.stop()
        return outcome.max_memory_used_mb

    assert run_manager(sb, tmp_path, body) < 48


@pytest.mark.sandbox
def test_doctor_reports_the_tmp_disk() -> None:
    from nimbus.sandbox import host

    check = {c.name: c for c in host.report().checks}["tmp disk"]
    assert check.ok and check.required, check.detail
    assert "512 MB available" in check.detail


def test_probe_says_why_without_loop_devices(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(tmpdisk.os.path, "exists", lambda path: path != "/dev/loop-control")
    monkeypatch.setattr(tmpdisk.os, "geteuid", lambda: 0)
    with pytest.raises(tmpdisk.TmpDisksUnavailable, match="loop-control"):
        tmpdisk.probe(tmp_path)
