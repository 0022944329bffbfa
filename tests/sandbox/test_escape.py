"""The escape suite: a hostile function tries to get out of its sandbox, and each
attempt must fail in the specific way the isolation makes it fail."""

from __future__ import annotations

import errno
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from nimbus.sandbox import Environment
from tests.sandbox.conftest import Sandbox, invocation, spec

pytestmark = pytest.mark.sandbox

ATTACKS = r'''
import ctypes, errno, json, os, signal, socket, subprocess, sys, time

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def outcome(fn):
    try:
        return {"ok": True, "value": fn()}
    except OSError as e:
        return {"ok": False, "error": type(e).__name__, "errno": e.errno}


def syscall_errno(nr, *args):
    result = libc.syscall(ctypes.c_long(nr), *args)
    return {"result": result, "errno": ctypes.get_errno() if result < 0 else 0}


def read(path):
    with open(path, "rb") as f:
        return f.read().decode(errors="replace")


def write(path, data="x"):
    with open(path, "w") as f:
        f.write(data)
    return "written"


def handler(event, context):
    return ATTACKS[event["attack"]](event)


def fill_tmp(event):
    written = 0
    try:
        with open("/tmp/fill", "wb") as f:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
                written += 1
    except OSError as e:
        return {"errno": e.errno, "mb": written}
    finally:
        os.unlink("/tmp/fill")


def fork_bomb(event):
    children = []
    try:
        while True:
            children.append(subprocess.Popen(["/bin/sleep", "60"]))
    except OSError as e:
        return {"errno": e.errno, "children": len(children)}


def list_pids(event):
    return sorted(int(p) for p in os.listdir("/proc") if p.isdigit())


def kill(event):
    results = {"host pid": outcome(lambda: os.kill(event["pid"], signal.SIGKILL))}
    os.kill(1, signal.SIGKILL)  # PID 1 is this runtime: the kernel ignores it
    results["survived"] = True
    return results


def ptrace(event):
    PTRACE_ATTACH = 16
    libc.ptrace.restype = ctypes.c_long
    r = libc.ptrace(ctypes.c_long(PTRACE_ATTACH), ctypes.c_long(event["pid"]), None, None)
    return {"result": r, "errno": ctypes.get_errno()}


def mount(event):
    r = libc.mount(b"tmpfs", b"/tmp", b"tmpfs", ctypes.c_ulong(0), None)
    return {"result": r, "errno": ctypes.get_errno()}


def chroot(event):
    os.makedirs("/tmp/jail", exist_ok=True)
    return outcome(lambda: os.chroot("/tmp/jail"))


def privileges(event):
    status = dict(line.split(":\t", 1) for line in read("/proc/self/status").splitlines()
                  if ":\t" in line)
    return {"setuid": outcome(lambda: os.setuid(0)),
            "setgid": outcome(lambda: os.setgid(0)),
            "caps": {k: status[k].strip() for k in ("CapEff", "CapPrm", "CapBnd", "CapAmb")},
            "no_new_privs": status["NoNewPrivs"].strip(),
            "seccomp": status["Seccomp"].strip(),
            "uid": os.getuid()}


def connect(event):
    def attempt(addr):
        s = socket.socket()
        s.settimeout(2)
        try:
            return outcome(lambda: s.connect(addr))
        finally:
            s.close()
    return {"host port": attempt(("127.0.0.1", event["port"])),
            "postgres": attempt(("127.0.0.1", 5432)),
            "internet": attempt(("1.1.1.1", 53))}


def raw_socket(event):
    return {"raw": outcome(lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW,
                                                 socket.IPPROTO_ICMP).close()),
            "packet": outcome(lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW).close())}


def hostname(event):
    return {"set": outcome(lambda: socket.sethostname("pwned")), "name": socket.gethostname()}


def kernel_module(event):
    # finit_module(fd, "", 0) and delete_module("loop", 0) on x86_64 / aarch64
    x86 = os.uname().machine == "x86_64"
    fd = os.open("/dev/null", os.O_RDONLY)
    return {"finit": syscall_errno(313 if x86 else 273, fd, b"", 0),
            "delete": syscall_errno(176 if x86 else 106, b"loop", 0)}


def user_namespace(event):
    return {"unshare": libc.unshare(0x10000000), "errno": ctypes.get_errno()}


def devices(event):
    return {"dev": sorted(os.listdir("/dev")),
            "mknod": outcome(lambda: os.mknod("/tmp/sda", 0o600 | 0o60000, os.makedev(8, 0)))}


ATTACKS = {
    "read": lambda e: outcome(lambda: read(e["path"])),
    "write": lambda e: outcome(lambda: write(e["path"])),
    "listdir": lambda e: outcome(lambda: os.listdir(e["path"])),
    "fill_tmp": fill_tmp,
    "fork_bomb": fork_bomb,
    "pids": list_pids,
    "kill": kill,
    "ptrace": ptrace,
    "mount": mount,
    "chroot": chroot,
    "privileges": privileges,
    "connect": connect,
    "raw_socket": raw_socket,
    "hostname": hostname,
    "kernel_module": kernel_module,
    "user_namespace": user_namespace,
    "devices": devices,
}
'''


@pytest.fixture(scope="module")
def secret(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A file in the host's data directory the function must never see."""
    path = tmp_path_factory.mktemp("data-dir") / "nimbus.db"
    path.write_text("host secret")
    path.chmod(0o644)
    return str(path)


@pytest.fixture(scope="module")
def code(sb: Sandbox, secret: str) -> Path:
    return sb.package({"app.py": ATTACKS}, symlinks={"leak": secret})


@pytest.fixture(scope="module")
def env(sb: Sandbox, code: Path) -> Iterator[Environment]:
    environment = sb.start(spec(code, memory_mb=512, ephemeral_mb=16, name="attacker"))
    yield environment
    sb.stop(environment)


def attack(sb: Sandbox, env, name: str, **event) -> dict:
    return sb.call(env, {"attack": name, **event}, timeout_s=20)


def test_cannot_read_the_data_dir(sb: Sandbox, env, secret: str) -> None:
    assert open(secret).read() == "host secret"  # noqa: SIM115 - the control
    assert attack(sb, env, "read", path=secret)["errno"] == errno.ENOENT


def test_symlink_in_package_does_not_reach_the_host(sb: Sandbox, env) -> None:
    assert attack(sb, env, "read", path="/var/task/leak")["errno"] == errno.ENOENT


def test_cannot_read_host_shadow(sb: Sandbox, env) -> None:
    assert attack(sb, env, "read", path="/etc/shadow")["errno"] == errno.ENOENT
    passwd = attack(sb, env, "read", path="/etc/passwd")["value"]
    assert "sbx_user" in passwd and "/bin/bash" not in passwd


def test_cannot_see_another_environments_tmp(sb: Sandbox, code, env) -> None:
    assert attack(sb, env, "write", path="/tmp/mine")["value"] == "written"
    assert attack(sb, env, "read", path="/tmp/mine")["value"] == "x"  # the control
    other = sb.start(spec(code, name="neighbour"))
    try:
        assert attack(sb, other, "read", path="/tmp/mine")["errno"] == errno.ENOENT
    finally:
        sb.stop(other)
    assert not os.path.exists("/tmp/mine")


@pytest.mark.parametrize("path", ["/var/task/app.py", "/var/task/new", "/etc/passwd", "/x",
                                  "/opt/x", "/usr/bin/python3"])
def test_cannot_write_outside_tmp(sb: Sandbox, env, path: str) -> None:
    result = attack(sb, env, "write", path=path)
    assert result["errno"] in (errno.EROFS, errno.EACCES), result


def test_sees_only_its_own_processes(sb: Sandbox, env) -> None:
    pids = attack(sb, env, "pids")
    assert pids[0] == 1 and len(pids) <= 2  # the runtime (and at most a dying child)
    assert os.getpid() not in pids or os.getpid() < 3


def test_cannot_kill_host_processes(sb: Sandbox, env) -> None:
    result = attack(sb, env, "kill", pid=os.getpid())
    assert result["host pid"]["errno"] == errno.ESRCH
    assert result["survived"] is True


def test_cannot_ptrace_the_server(sb: Sandbox, env) -> None:
    result = attack(sb, env, "ptrace", pid=os.getpid())
    assert result["result"] == -1 and result["errno"] == errno.ESRCH


def test_cannot_mount(sb: Sandbox, env) -> None:
    result = attack(sb, env, "mount")
    assert result["result"] == -1 and result["errno"] == errno.EPERM


def test_cannot_chroot(sb: Sandbox, env) -> None:
    assert attack(sb, env, "chroot")["errno"] == errno.EPERM


def test_no_privileges_left(sb: Sandbox, env) -> None:
    result = attack(sb, env, "privileges")
    assert result["setuid"]["errno"] == errno.EPERM
    assert result["setgid"]["errno"] == errno.EPERM
    assert set(result["caps"].values()) == {"0000000000000000"}
    assert result["no_new_privs"] == "1" and result["seccomp"] == "2"
    assert result["uid"] >= 60000


def test_cannot_create_a_user_namespace(sb: Sandbox, env) -> None:
    result = attack(sb, env, "user_namespace")
    assert result == {"unshare": -1, "errno": errno.EPERM}


def test_cannot_open_raw_sockets(sb: Sandbox, env) -> None:
    result = attack(sb, env, "raw_socket")
    assert result["raw"]["errno"] == errno.EPERM
    assert result["packet"]["errno"] == errno.EPERM


def test_cannot_change_the_hosts_name(sb: Sandbox, env) -> None:
    before = socket.gethostname()
    result = attack(sb, env, "hostname")
    assert result["set"]["errno"] == errno.EPERM
    assert result["name"] == "localhost"
    assert socket.gethostname() == before


def test_cannot_reach_cgroups_or_sysfs(sb: Sandbox, env) -> None:
    assert attack(sb, env, "listdir", path="/sys/fs/cgroup")["errno"] == errno.ENOENT
    assert env.cgroup is not None
    own = env.cgroup.dirs[0] + "/memory.limit_in_bytes"
    assert attack(sb, env, "write", path=own)["errno"] == errno.ENOENT


def test_proc_1_is_its_own_runtime(sb: Sandbox, env) -> None:
    os.environ["NIMBUS_TEST_HOST_SECRET"] = "s3cret"
    try:
        environ = attack(sb, env, "read", path="/proc/1/environ")["value"]
    finally:
        del os.environ["NIMBUS_TEST_HOST_SECRET"]
    # PID 1 is the runtime, forked from a zygote started with an empty environment:
    # nothing of the host's (or the server's) environment is there to read.
    assert "s3cret" not in environ and "NIMBUS_TEST" not in environ
    assert "/root" not in environ and "PATH=" not in environ
    result = attack(sb, env, "write", path="/proc/sys/kernel/hostname")
    assert result["errno"] in (errno.EACCES, errno.EROFS, errno.EPERM)


def test_cannot_load_kernel_modules(sb: Sandbox, env) -> None:
    result = attack(sb, env, "kernel_module")
    assert result["finit"]["errno"] == errno.EPERM
    assert result["delete"]["errno"] == errno.EPERM


def test_only_harmless_devices(sb: Sandbox, env) -> None:
    result = attack(sb, env, "devices")
    assert set(result["dev"]) <= {"null", "zero", "full", "random", "urandom", "tty", "fd",
                                  "stdin", "stdout", "stderr"}
    assert result["mknod"]["errno"] == errno.EPERM


def test_tmp_is_limited_to_ephemeral_storage(sb: Sandbox, env) -> None:
    result = attack(sb, env, "fill_tmp")
    assert result["errno"] == errno.ENOSPC
    assert 10 <= result["mb"] <= 16


def test_fork_bomb_hits_the_pids_limit(sb: Sandbox, code) -> None:
    bomb = sb.start(spec(code, memory_mb=1024, name="bomb", timeout_s=30))
    try:
        result = attack(sb, bomb, "fork_bomb")
        assert result["errno"] == errno.EAGAIN
        assert 900 <= result["children"] < 1024
        assert os.fork  # the host still forks: this test is still running
    finally:
        sb.stop(bomb)
    fresh = sb.start(spec(code, name="after-bomb"))
    try:
        assert attack(sb, fresh, "pids") == [1]
    finally:
        sb.stop(fresh)


def test_memory_beyond_memory_size_is_killed(sb: Sandbox, code) -> None:
    greedy = sb.start(spec(code, memory_mb=64, name="greedy"))
    inv = invocation(json.dumps({"attack": "read", "path": "/dev/zero"}), timeout_s=10)
    outcome = sb.loop.run(greedy.invoke(inv))  # reads /dev/zero until memory runs out
    assert json.loads(outcome.payload)["errorType"] == "Runtime.OutOfMemory"
    assert not greedy.alive


def test_no_network_means_no_network(sb: Sandbox, code) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    offline = sb.start(spec(code, network=False, name="offline"))
    try:
        result = attack(sb, offline, "connect", port=port)
        assert result["host port"]["errno"] == errno.ECONNREFUSED
        assert result["postgres"]["errno"] == errno.ECONNREFUSED
        assert result["internet"]["errno"] == errno.ENETUNREACH
    finally:
        sb.stop(offline)
        listener.close()
