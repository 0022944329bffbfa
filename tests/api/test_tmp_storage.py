"""/tmp as on Lambda, through boto3 against a live server ([K fidelity] part 6): disk of
EphemeralStorage size that does not count against MemorySize, ENOSPC past it, empty in
every new environment, private to it, and gone (image, loop device, mount) with it."""

from __future__ import annotations

import base64
import errno
import json
import re
import signal
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CLUSTER, ROLE, live_server, make_zip

pytestmark = pytest.mark.sandbox
SERVER_ENV = {"NIMBUS_IDLE_SECONDS": "1"}  # idle environments are stopped within ~1.5 s
MB = 1024 * 1024

APP = '''
import errno, os, time

def handler(event, context):
    op = event["op"]
    if op == "write":  # in chunks, as a function downloading something would
        chunk = b"x" * (1 << 20)
        written = 0
        try:
            with open("/tmp/data", "wb") as f:
                for _ in range(event["mb"]):
                    f.write(chunk)
                    written += 1
        except OSError as exc:
            return {"errno": exc.errno, "error": exc.strerror, "mb": written}
        return {"size": os.path.getsize("/tmp/data")}
    if op == "touch":
        before = sorted(os.listdir("/tmp"))
        with open("/tmp/" + event["name"], "w") as f:
            f.write(event["name"])
        time.sleep(event.get("hold", 0))
        return {"before": before, "after": sorted(os.listdir("/tmp"))}
    if op == "df":
        st = os.statvfs("/tmp")
        device = [line.split()[0] for line in open("/proc/self/mounts")
                  if line.split()[1] == "/tmp"]
        return {"avail": st.f_bavail * st.f_frsize, "size": st.f_blocks * st.f_frsize,
                "device": device[-1], "ls": os.listdir("/tmp")}
    raise ValueError(op)
'''


def create(lam: Any, memory: int = 128, ephemeral: int = 512) -> str:
    name = f"tmp-{uuid.uuid4().hex[:8]}"
    lam.create_function(
        FunctionName=name, Runtime="python3.12", Role=ROLE, Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": APP})}, Timeout=60, MemorySize=memory,
        EphemeralStorage={"Size": ephemeral},
    )
    return name


def invoke(lam: Any, function: str, **event: Any) -> tuple[Any, str]:
    out = lam.invoke(FunctionName=function, Payload=json.dumps(event).encode(), LogType="Tail")
    assert "FunctionError" not in out, out["Payload"].read()
    return json.loads(out["Payload"].read()), base64.b64decode(out["LogResult"]).decode()


def max_memory_used(log: str) -> int:
    found = re.search(r"Max Memory Used: (\d+) MB", log)
    assert found, log
    return int(found.group(1))


def test_a_128_mb_function_writes_400_mb_to_tmp(lam: Any) -> None:
    name = create(lam, memory=128, ephemeral=512)
    result, log = invoke(lam, name, op="write", mb=400)
    assert result == {"size": 400 * MB}
    assert "Memory Size: 128 MB" in log
    # Memory only: the page cache of /tmp filled the 128 MB cgroup, the function did not.
    assert max_memory_used(log) < 48, log


def test_writing_past_ephemeral_storage_fails_with_enospc_inside(lam: Any) -> None:
    name = create(lam, memory=128, ephemeral=512)
    result, _log = invoke(lam, name, op="write", mb=600)
    assert result["errno"] == errno.ENOSPC, result  # the function's own OSError
    assert result["mb"] == 512  # all of EphemeralStorage was usable
    again, _log = invoke(lam, name, op="df")  # the same environment, alive
    assert again["ls"] == ["data"]


def test_tmp_is_empty_in_a_new_environment_and_private_to_it(lam: Any) -> None:
    name = create(lam, ephemeral=1024)
    df, _log = invoke(lam, name, op="df")
    assert df["avail"] == 1024 * MB + 64 * 1024 and df["ls"] == []
    with ThreadPoolExecutor(2) as pool:  # two at once: two environments
        results = list(pool.map(
            lambda n: invoke(lam, name, op="touch", name=n, hold=1.0)[0], ["one", "two"]))
    # Each started from an empty /tmp and, a second later, still sees only its own file.
    assert results == [{"before": [], "after": ["one"]}, {"before": [], "after": ["two"]}]
    # A configuration change means new environments: each starts with an empty /tmp.
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": {"STAGE": "2"}})
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    fresh, _log = invoke(lam, name, op="touch", name="three")
    assert fresh["before"] == []


def loop_images(data_dir: Path) -> dict[str, str]:
    """Loop device name -> backing image, for the images of the server on ``data_dir``."""
    found = {}
    for dev in Path("/sys/block").glob("loop*"):
        try:
            backing = (dev / "loop" / "backing_file").read_text().strip()
        except OSError:
            continue
        if backing.startswith(str(data_dir)):
            found[dev.name] = backing
    return found


def eventually(check: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def test_nothing_is_left_after_the_function_is_deleted_and_the_server_stops(
        tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with live_server(data_dir, env=SERVER_ENV) as server:
        lam = server.client()
        name = create(lam)
        invoke(lam, name, op="write", mb=50)
        df, _log = invoke(lam, name, op="df")
        device = Path(df["device"]).name
        image = loop_images(data_dir).get(device)
        assert image and "(deleted)" in image  # the image file is unlinked at once
        # Not in the host's mount table: only the environment's namespace has it.
        assert str(data_dir) not in Path("/proc/self/mountinfo").read_text()
        assert f"/dev/{device} " not in Path("/proc/1/mountinfo").read_text()
        lam.delete_function(FunctionName=name)
        # The idle environment is stopped, and its file system, loop device and image go.
        assert eventually(lambda: image not in loop_images(data_dir).values())
    # The server is gone: the pool of ready disks and every file with it.
    assert eventually(lambda: not loop_images(data_dir))
    sandboxes = data_dir / "sandboxes"
    assert not list(sandboxes.glob("run-*")), list(sandboxes.rglob("*"))


@pytest.mark.skipif(
    CLUSTER, reason="kills the server to show its sandboxes' file systems go with it; in "
    "cluster mode the sandboxes are the worker node's, which the server's crash leaves alone")
def test_nothing_is_left_after_a_crash_and_the_next_start_sweeps_the_rest(
        tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with live_server(data_dir, env=SERVER_ENV) as server:
        lam = server.client()
        name = create(lam)
        invoke(lam, name, op="write", mb=20)
        assert loop_images(data_dir)
        assert server.proc is not None
        crashed = server.proc.pid
        server.stop(signal.SIGKILL)
        # The descriptors went with the process: file systems, loop devices, images too.
        assert eventually(lambda: not loop_images(data_dir))
        sandboxes = data_dir / "sandboxes"
        assert [p.name.split("-")[1] for p in sandboxes.glob("run-*")] == [str(crashed)]
        server.start()  # sweeps the dead server's run dir
        df, _log = invoke(lam, name, op="df")
        assert df["ls"] == []
        assert [p.name.split("-")[1] for p in sandboxes.glob("run-*")] != [str(crashed)]
