"""A host without the cgroup cpu controller cannot cap functions' CPU: nimbus still runs
them (memory and pids are what isolation needs), but never silently: ``nimbus doctor``
says so in a check of its own and the server's log says so (at the latest when it
prepares its sandboxes). The host without it is this one, seen from a mount namespace
where the cpu hierarchy is unmounted."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from tests.conftest import HELLO, ROLE, python_runtime
from tests.nimbus_process import free_port

pytestmark = pytest.mark.sandbox

WARNING = "CPU quota unavailable: no cgroup v1 hierarchy with the cpu controller is mounted"


def cpu_mount() -> str | None:
    """Where this host mounts the cgroup v1 hierarchy holding the cpu controller."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        after = fields[fields.index("-") + 1 :]
        if after[0] == "cgroup" and "cpu" in after[2].split(","):
            return fields[4]
    return None


@pytest.fixture
def without_cpu() -> Iterator[list[str]]:
    """A command prefix running its command where the cpu controller is not mounted."""
    mount = cpu_mount()
    if mount is None:
        pytest.skip("this host has no cgroup v1 cpu hierarchy to hide")
    yield ["unshare", "--mount", "--propagation", "private", "sh", "-c",
           f'umount "{mount}" && exec "$@"', "sh"]  # fmt: skip


def doctor(prefix: list[str]) -> dict[str, dict]:
    out = subprocess.run(
        [*prefix, sys.executable, "-m", "nimbus", "doctor", "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return {c["name"]: c for c in json.loads(out.stdout)["checks"]}


def test_doctor_says_whether_cpu_can_be_capped(without_cpu: list[str]) -> None:
    here = doctor([])["cpu quota"]
    assert here["ok"] and "capped in proportion to its memory" in here["detail"]
    hidden = doctor(without_cpu)
    check = hidden["cpu quota"]
    assert not check["ok"] and not check["required"]
    assert "one function can take every core" in check["detail"]
    assert hidden["cgroups"]["ok"]  # the rest of isolation stands


def test_the_server_log_warns(without_cpu: list[str], tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [*without_cpu, sys.executable, "-m", "nimbus", "up", "--port", str(port),
         "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    output: list[str] = []
    ready, warned = threading.Event(), threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            if line.startswith("nimbus ready:"):
                ready.set()
            if WARNING in line:
                warned.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        assert ready.wait(120) and proc.poll() is None, "".join(output)
        # Sandboxes are prepared at the latest for the first cold start.
        lam = boto3.client(
            "lambda", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
            aws_access_key_id="x", aws_secret_access_key="x",
        )  # fmt: skip
        lam.create_function(FunctionName="f", Runtime=python_runtime(), Role=ROLE,
                            Handler="app.handler", Code={"ZipFile": HELLO})  # fmt: skip
        assert lam.invoke(FunctionName="f", Payload=b"{}")["StatusCode"] == 200
        assert warned.wait(60), "".join(output)
        assert sum(WARNING in line for line in output) == 1
    finally:
        proc.terminate()
        proc.wait(timeout=60)
