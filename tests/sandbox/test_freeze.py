"""Environments between invocations, as a user sees them through a live nimbus: frozen
(a spinner a function left behind gets no CPU until its next invocation), capped (CPU in
proportion to memory), stopped at once when their function is deleted or updated (in
the server and in async workers alike), and reaped (orphans and abandoned children of a
function never pile up as zombies, while the function still gets the status of the
children it waits for).

The environment's cgroups are found from inside: the function returns (or logs) its
``/proc/self/cgroup``, which names the same cgroups the test reads under /sys/fs/cgroup.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROLE, live_server, make_zip
from tests.nimbus_process import NimbusProcess

pytestmark = pytest.mark.sandbox

APP = r'''
import json, os, signal, subprocess, sys, time

KEPT = []


def cgroups():
    paths = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _id, controllers, path = line.rstrip("\n").split(":", 2)
            for c in controllers.split(",") if controllers else [""]:
                paths[c] = path
    return paths


def spinner():
    pid = os.fork()
    if pid == 0:
        while True:
            pass
    return pid


def zombies():
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        found.append(int(entry))
            except OSError:
                pass
    return found


def dead_children(count):
    """``count`` children that exit at once, left unwaited: zombies until reaped."""
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            os._exit(3)
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # exited, still a zombie


def orphans(count):
    """``count`` grandchildren whose parent exits first: handed to PID 1, then they exit."""
    for _ in range(count):
        told_r, told_w = os.pipe()  # the grandchild's pid, to the handler
        gone_r, gone_w = os.pipe()  # EOF for the grandchild once its parent is gone
        pid = os.fork()
        if pid == 0:
            grandchild = os.fork()
            if grandchild == 0:
                os.close(gone_w)
                os.read(gone_r, 1)
                os._exit(0)
            os.write(told_w, str(grandchild).encode())
            os._exit(0)
        for fd in (told_w, gone_r, gone_w):
            os.close(fd)
        grandchild = int(os.read(told_r, 32))
        os.close(told_r)
        status = os.waitpid(pid, 0)[1]  # the handler's own wait: it gets the status
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
        with open(f"/proc/{grandchild}/stat") as f:  # waits until it is a zombie
            while f.read().rsplit(")", 1)[1].split()[0] != "Z":
                f.seek(0)
                time.sleep(0.001)


def handler(event, context):
    action = event.get("action")
    if action == "spin":  # a spinner left running after the invocation
        KEPT.append(spinner())
        print("cgroups " + json.dumps(cgroups()))
        return {"cgroups": cgroups(), "spinner": KEPT[-1]}
    if action == "alive":
        os.kill(KEPT[-1], 0)  # still there: frozen, not killed
        return {"alive": True}
    if action == "burn":  # the handler and a child, busy for ``seconds`` of wall time
        child = spinner()
        end = time.monotonic() + event["seconds"]
        while time.monotonic() < end:
            pass
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        return {"cgroups": cgroups()}
    if action == "litter":
        dead_children(10)
        orphans(10)
        return {"zombies": len(zombies())}
    if action == "count":
        return {"zombies": zombies()}
    if action == "statuses":
        run = subprocess.run(["/bin/sh", "-c", "exit 7"]).returncode
        kept = subprocess.Popen(["/bin/sh", "-c", "exit 5"])
        os.waitid(os.P_PID, kept.pid, os.WEXITED | os.WNOWAIT)
        KEPT.append(kept)  # waited for in the next invocation
        return {"run": run}
    if action == "kept":
        return {"kept": KEPT.pop().wait()}
    return {"cgroups": cgroups()}
'''


# -- the host's view of an environment's cgroups ----------------------------------------


def _mounts() -> dict[str, tuple[str, str]]:
    """Controller ("" for cgroup v2) -> (mount point, root) of its hierarchy here."""
    found: dict[str, tuple[str, str]] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fields, (fstype, _src, options) = pre.split(), post.split()[:3]
            if fstype == "cgroup2":
                found.setdefault("", (fields[4], fields[3]))
            elif fstype == "cgroup":
                for option in options.split(","):
                    found.setdefault(option, (fields[4], fields[3]))
    return found


class EnvCgroups:
    """An environment's cgroups, from the paths its /proc/self/cgroup gave."""

    def __init__(self, paths: dict[str, str]) -> None:
        mounts = _mounts()
        self.v1 = "memory" in paths and "memory" in mounts
        self.dirs: dict[str, str] = {}
        for controller, path in paths.items():
            if controller in mounts:
                point, root = mounts[controller]
                relative = path[len(root):] if root != "/" and path.startswith(root) else path
                self.dirs[controller] = point.rstrip("/") + relative

    def _read(self, controller: str, name: str) -> str:
        return Path(self.dirs[controller], name).read_text()

    def cpu_ns(self) -> int:
        """CPU time its processes used so far."""
        if self.v1:
            return int(self._read("cpuacct", "cpuacct.usage"))
        stat = dict(line.split() for line in self._read("", "cpu.stat").splitlines())
        return int(stat["usage_usec"]) * 1000

    def frozen(self) -> bool:
        if self.v1:
            return self._read("freezer", "freezer.state").strip() == "FROZEN"
        return "frozen 1" in self._read("", "cgroup.events")

    def quota(self) -> tuple[int, int]:
        """(quota, period) in microseconds."""
        if self.v1:
            return (int(self._read("cpu", "cpu.cfs_quota_us")),
                    int(self._read("cpu", "cpu.cfs_period_us")))
        quota, period = self._read("", "cpu.max").split()
        return int(quota), int(period)

    def procs(self) -> list[int]:
        """Its live processes ([] once the cgroup is gone)."""
        try:
            return [int(p) for p in self._read("memory" if self.v1 else "", "cgroup.procs")
                    .split()]
        except FileNotFoundError:
            return []


def wait_for(condition: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Poll ``condition`` until it is true (the states read here have no notification);
    fails after ``timeout``, far below the 300 s an idle environment lives."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s")
        time.sleep(0.02)


# -- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NimbusProcess]:
    with live_server(tmp_path_factory.mktemp("freeze") / "data") as proc:
        yield proc


def create(server: NimbusProcess, memory: int = 1769, timeout: int = 30) -> str:
    name = f"freeze-{uuid.uuid4().hex[:8]}"
    server.client().create_function(
        FunctionName=name, Runtime="python3.12", Role=ROLE, Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": APP})}, MemorySize=memory, Timeout=timeout,
    )
    return name


def invoke(server: NimbusProcess, name: str, **event: Any) -> dict:
    reply = server.client().invoke(FunctionName=name, Payload=json.dumps(event).encode())
    body = json.loads(reply["Payload"].read())
    assert "FunctionError" not in reply, body
    return body


# -- frozen between invocations --------------------------------------------------------


def test_a_spinner_left_running_gets_no_cpu_between_invocations(server: NimbusProcess) -> None:
    name = create(server)
    env = EnvCgroups(invoke(server, name, action="spin")["cgroups"])
    wait_for(env.frozen)
    before = env.cpu_ns()
    time.sleep(1.0)  # a window to measure over
    used = env.cpu_ns() - before
    assert used < 10_000_000, f"{used / 1e6:.1f} ms of CPU in 1 s while idle"
    # The next invocation thaws it: the spinner is still there, and runs again.
    assert invoke(server, name, action="alive") == {"alive": True}
    assert not env.frozen()
    running = env.cpu_ns()
    wait_for(lambda: env.cpu_ns() > running or env.frozen())


def test_init_left_running_is_frozen_too(server: NimbusProcess) -> None:
    """Processes started at import time (the init phase) are in the same cgroup."""
    name = f"freeze-init-{uuid.uuid4().hex[:8]}"
    app = "import os\nif os.fork() == 0:\n    while True:\n        pass\n" + APP
    server.client().create_function(
        FunctionName=name, Runtime="python3.12", Role=ROLE, Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": app})}, MemorySize=1769,
    )
    env = EnvCgroups(invoke(server, name)["cgroups"])
    wait_for(env.frozen)
    before = env.cpu_ns()
    time.sleep(0.5)
    assert env.cpu_ns() - before < 10_000_000


# -- CPU in proportion to memory -------------------------------------------------------


def test_cpu_quota_follows_memory(server: NimbusProcess) -> None:
    name = create(server, memory=128)
    first = invoke(server, name)
    env = EnvCgroups(first["cgroups"])
    assert env.quota() == (100_000 * 128 // 1769, 100_000)
    big = EnvCgroups(invoke(server, create(server, memory=10240))["cgroups"])
    assert big.quota() == (min(10240 * 100_000 // 1769, (os.cpu_count() or 1) * 100_000),
                           100_000)


def test_a_128_mb_function_gets_its_share_of_a_core(server: NimbusProcess) -> None:
    name = create(server, memory=128)
    env = EnvCgroups(invoke(server, name)["cgroups"])
    before, start = env.cpu_ns(), time.monotonic()
    invoke(server, name, action="burn", seconds=2.0)  # two processes busy for 2 s
    used = (env.cpu_ns() - before) / 1e9
    elapsed = time.monotonic() - start
    # 128/1769 = 0.072 of a core; unthrottled, the two would take up to 2 cores.
    assert used / elapsed < 0.2, f"{used:.2f} s of CPU in {elapsed:.2f} s"


# -- stopped at once when the function changes ----------------------------------------


def test_deleting_a_function_stops_its_environment_at_once(server: NimbusProcess) -> None:
    name = create(server)
    env = EnvCgroups(invoke(server, name, action="spin")["cgroups"])
    assert env.procs()
    server.client().delete_function(FunctionName=name)
    wait_for(lambda: not env.procs())


def test_updating_a_function_stops_its_old_environment(server: NimbusProcess) -> None:
    name = create(server)
    lam = server.client()
    old = EnvCgroups(invoke(server, name, action="spin")["cgroups"])
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": {"MODE": "1"}})
    wait_for(lambda: not old.procs())
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    new = EnvCgroups(invoke(server, name, action="spin")["cgroups"])
    assert new.procs()
    lam.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": APP + "\n"}))
    wait_for(lambda: not new.procs())


def test_an_async_workers_environment_stops_when_its_function_is_deleted(
    server: NimbusProcess,
) -> None:
    name = create(server)
    server.client().invoke(FunctionName=name, InvocationType="Event",
                           Payload=json.dumps({"action": "spin"}).encode())
    logs = server.client("logs")

    def logged() -> dict | None:
        try:
            events = logs.filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
        except logs.exceptions.ResourceNotFoundException:
            return None
        lines = [e["message"] for e in events if e["message"].startswith("cgroups ")]
        return json.loads(lines[0].removeprefix("cgroups ")) if lines else None

    env = EnvCgroups(wait_for(logged))
    assert env.procs()
    server.client().delete_function(FunctionName=name)
    wait_for(lambda: not env.procs())


# -- zombies ---------------------------------------------------------------------------


def test_orphans_and_abandoned_children_are_reaped(server: NimbusProcess) -> None:
    name = create(server)
    for _ in range(10):
        # 10 exited children nobody waits for, 10 orphans: zombies until the runtime
        # (PID 1) reaps them after the invocation.
        assert invoke(server, name, action="litter")["zombies"] >= 20
    assert invoke(server, name, action="count") == {"zombies": []}


def test_a_function_still_gets_the_status_of_children_it_waits_for(
    server: NimbusProcess,
) -> None:
    name = create(server)
    assert invoke(server, name, action="statuses") == {"run": 7}
    # Exited before the previous invocation ended, owned by a Popen kept since: not
    # reaped by the runtime, so the function's own wait gets its status.
    assert invoke(server, name, action="kept") == {"kept": 5}


# -- SnapStart -------------------------------------------------------------------------


def test_a_snapstart_template_and_its_environments_are_frozen_and_reaped(
    server: NimbusProcess,
) -> None:
    """What a template's init left running is frozen with the template between forks; an
    environment forked from it reaps its own orphans (it is their subreaper: the
    template's keeper is frozen)."""
    name = f"freeze-snap-{uuid.uuid4().hex[:8]}"
    app = "import os\nif os.fork() == 0:\n    while True:\n        pass\n" + APP
    lam = server.client()
    lam.create_function(
        FunctionName=name, Runtime="python3.12", Role=ROLE, Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": app})}, MemorySize=1769, Publish=True,
        SnapStart={"ApplyOn": "PublishedVersions"},
    )
    lam.get_waiter("published_version_active").wait(FunctionName=name, Qualifier="1")
    templates = httpx.get(f"{server.endpoint}/_nimbus/snapstart").json()["Templates"]
    (pid,) = [t["Pid"] for t in templates if t["FunctionName"] == name]
    paths = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _id, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else [""]:
            paths[c] = path
    template = EnvCgroups(paths)
    wait_for(template.frozen)
    before = template.cpu_ns()
    time.sleep(0.5)
    assert template.cpu_ns() - before < 10_000_000
    for _ in range(3):
        assert invoke(server, f"{name}:1", action="litter")["zombies"] >= 20
    assert invoke(server, f"{name}:1", action="count") == {"zombies": []}
    env = EnvCgroups(invoke(server, f"{name}:1", action="spin")["cgroups"])
    wait_for(env.frozen)
    lam.delete_function(FunctionName=name)
    wait_for(lambda: not env.procs() and not template.procs())
