"""The SnapStart escape suite: hostile code in a template's init (the function's module
top level, run once in the template) and in environments forked from it tries to get
out, and each attempt must fail, or stay inside what the design grants it."""

from __future__ import annotations

import dataclasses
import errno
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from nimbus.sandbox import Environment
from nimbus.sandbox.templates import Template
from tests.sandbox.conftest import Sandbox, spec

pytestmark = pytest.mark.sandbox

APP = r'''
import ctypes, json, os, signal, socket

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
X86 = os.uname().machine == "x86_64"
NR = {"open_tree": 428, "move_mount": 429, "fsopen": 430, "fsmount": 432, "pidfd_open": 434,
      "setns": 308 if X86 else 268}
CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000


def call(fn, *args):
    """A libc call: {"rc", "errno"} (errno 0 when it succeeded)."""
    rc = fn(*args)
    return {"rc": rc, "errno": ctypes.get_errno() if rc < 0 else 0}


def sys(name, *args):
    return call(libc.syscall, ctypes.c_long(NR[name]), *args)


def outcome(fn):
    try:
        return {"ok": True, "value": fn()}
    except OSError as e:
        return {"ok": False, "errno": e.errno}


def setns_into(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        return {"rc": -1, "errno": e.errno, "opened": False}
    try:
        return {**sys("setns", fd, 0), "opened": True}
    finally:
        os.close(fd)


def pidfd_setns(pid):
    """setns through a pidfd (Linux 5.8+): the template lives in the host's PID
    namespace, so it can open a pidfd of the host's init."""
    fd = libc.syscall(ctypes.c_long(NR["pidfd_open"]), pid, 0)
    if fd < 0:
        return {"rc": -1, "errno": ctypes.get_errno(), "opened": False}
    try:
        return {**sys("setns", fd, CLONE_NEWNS), "opened": True}
    finally:
        os.close(fd)


def connect(port):
    s = socket.socket()
    s.settimeout(2)
    try:
        return outcome(lambda: s.connect(("127.0.0.1", port)))
    finally:
        s.close()


def mount_tmpfs(target):
    return call(libc.mount, b"tmpfs", target, b"tmpfs", ctypes.c_ulong(0), None)


# The init phase, in the template: capabilities over its own user namespace only.
INIT = {
    "mount": mount_tmpfs(b"/tmp"),
    "mount_task": mount_tmpfs(b"/var/task"),
    "userns": call(libc.unshare, CLONE_NEWUSER),
    "pidns": call(libc.unshare, 0x20000000),
    "netns": call(libc.unshare, 0x40000000),
    "setns_mnt": setns_into("/proc/1/ns/mnt"),
    "setns_self": setns_into("/proc/self/ns/mnt"),
    "setns_host": pidfd_setns(1),
    "kill_host": outcome(lambda: os.kill(1, signal.SIGKILL)),
    "fsopen": sys("fsopen", b"tmpfs", 0),
    "open_tree": sys("open_tree", -100, b"/", 1),  # OPEN_TREE_CLONE
    "move_tmp": sys("move_mount", -100, b"/tmp", -100, b"/var/task", 0),
    "loopback": connect(int(os.environ["HOST_PORT"])),
    "write_task": outcome(lambda: open("/var/task/pwned", "w").close()),
    "chroot": outcome(lambda: os.chroot("/tmp")),
    "procs": sorted(p for p in os.listdir("/proc") if p.isdigit()),
}


def status():
    fields = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines()
                  if ":\t" in line)
    return {k: fields[k].strip() for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
                                           "NoNewPrivs", "Seccomp", "Uid")}


def read(path):
    with open(path, "rb") as f:
        return f.read(64).decode(errors="replace")


def handler(event, context):
    what = event.get("attack")
    if what == "init":
        return INIT
    if what == "whoami":
        open("/tmp/secret-" + str(os.getpid()), "w").write("mine")
        return {"pid": os.getpid(), "procs": sorted(p for p in os.listdir("/proc") if p.isdigit())}
    if what == "sibling":
        pid = event["pid"]
        libc.ptrace.restype = ctypes.c_long
        return {
            "kill": outcome(lambda: os.kill(pid, signal.SIGKILL)),
            "ptrace": call(libc.ptrace, ctypes.c_long(16), ctypes.c_long(pid), None, None),
            "proc": os.path.exists(f"/proc/{pid}"),
            "tmp": outcome(lambda: read(f"/tmp/secret-{pid}")),
            "root_tmp": outcome(lambda: read(f"/proc/{pid}/root/tmp/secret-{pid}")),
        }
    if what == "env":
        return {
            "userns": call(libc.unshare, CLONE_NEWUSER),
            "mntns": call(libc.unshare, CLONE_NEWNS),
            "mount": mount_tmpfs(b"/tmp"),
            "setns_mnt": setns_into("/proc/1/ns/mnt"),
            "setns_self": setns_into("/proc/self/ns/mnt"),
            "write_task": outcome(lambda: open("/var/task/pwned", "w").close()),
            "template_mem": outcome(lambda: read(f"/proc/{event['template_pid']}/mem")),
            "keeper_mem": outcome(lambda: read("/proc/1/mem")),
            "open_tree": sys("open_tree", -100, b"/", 1),
            "fsopen": sys("fsopen", b"tmpfs", 0),
            "move_mount": sys("move_mount", 3, b"", -100, b"/tmp", 4),
            "move_tmp": sys("move_mount", -100, b"/tmp", -100, b"/var/task", 0),
            "setuid": outcome(lambda: os.setuid(0)),
            "status": status(),
            "loopback": connect(event["port"]),
        }
    return {}
'''

EPERM = errno.EPERM
Envs = tuple[Environment, Environment, Template]  # two environments of one template, and it


@pytest.fixture(scope="module")
def listener() -> Iterator[int]:
    """A TCP port listening on the host's loopback: functions without network must not
    reach it."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    yield s.getsockname()[1]
    s.close()


@pytest.fixture(scope="module")
def envs(sb: Sandbox, listener: int) -> Iterator[Envs]:
    code: Path = sb.package({"app.py": APP})
    s = dataclasses.replace(spec(code, name="snap-attacker", network=False,
                                 environment={"HOST_PORT": str(listener)}),
                            version="1", snapstart=True)
    one, two = sb.start(s), sb.start(s)
    template = sb.manager.templates.get(s.function_arn, s.version)
    assert template is not None
    yield one, two, template
    sb.stop(one)
    sb.stop(two)
    sb.loop.run(sb.manager.templates.drop(s.function_arn))


def _attack(sb: Sandbox, env: Environment, name: str, **event: object) -> dict:
    return sb.call(env, {"attack": name, **event})


def _denied(result: dict, *errnos: int) -> None:
    assert result["rc"] == -1 and result["errno"] in (errnos or (EPERM,)), result


def test_init_code_cannot_leave_the_template(sb: Sandbox, envs: Envs, listener: int) -> None:
    """The template's init holds capabilities in its own user namespace only; its filter
    denies mount, the new mount API but move_mount, setns, and every namespace but a
    mount namespace; what move_mount could touch is locked; no network means none."""
    one, _two, _template = envs
    init = _attack(sb, one, "init")
    for name in ("mount", "mount_task", "userns", "pidns", "netns", "fsopen", "open_tree"):
        _denied(init[name])
    # setns: the template's /proc is its environments' PID namespace, where it has no
    # pid (/proc/self does not resolve) and the keeper is invisible (hidepid); a
    # namespace file it could open, setns would deny.
    for name in ("setns_mnt", "setns_self"):
        assert init[name]["rc"] == -1 and init[name]["errno"] in (errno.ENOENT, EPERM), init
    # The template is in the host's PID namespace (its cells must be the server's
    # children): it can name the host's init, not enter its namespaces nor signal it.
    _denied(init["setns_host"])
    assert init["kill_host"] == {"ok": False, "errno": EPERM}
    # move_mount is allowed (cells attach /tmp with it), but every mount the template
    # inherited is locked to its user namespace: none can be moved.
    _denied(init["move_tmp"], errno.EINVAL, EPERM)
    assert init["loopback"] == {"ok": False, "errno": errno.ECONNREFUSED}  # its own lo
    assert not init["write_task"]["ok"] and init["write_task"]["errno"] in (errno.EROFS,
                                                                            errno.EACCES)
    assert not init["chroot"]["ok"] and init["chroot"]["errno"] == EPERM
    assert init["procs"] == []  # it sees none of its environments' processes


def test_environment_is_confined_as_any_other(sb: Sandbox, envs: Envs, listener: int) -> None:
    one, _two, template = envs
    got = _attack(sb, one, "env", template_pid=template.process.pid, port=listener)
    for name in ("userns", "mntns", "mount", "open_tree", "fsopen", "move_mount", "move_tmp"):
        _denied(got[name])
    for name in ("setns_mnt",):
        assert got[name]["rc"] == -1 and got[name]["errno"] in (errno.ENOENT, EPERM), got[name]
    _denied(got["setns_self"])
    assert got["write_task"] == {"ok": False, "errno": errno.EROFS}
    # The template is not in the environment's PID namespace; its keeper is hidden.
    assert not got["template_mem"]["ok"] and got["template_mem"]["errno"] == errno.ENOENT
    assert not got["keeper_mem"]["ok"] and got["keeper_mem"]["errno"] == errno.ENOENT
    assert got["setuid"] == {"ok": False, "errno": EPERM}
    st = got["status"]
    assert all(int(st[k], 16) == 0 for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"))
    assert st["NoNewPrivs"] == "1" and st["Seccomp"] == "2"
    uid = int(st["Uid"].split()[0])
    assert uid not in (0, template.uid_first) and template.uid_first < uid < template.uid_first + 32
    assert got["loopback"] == {"ok": False, "errno": errno.ECONNREFUSED}


def test_sibling_environment_is_out_of_reach(sb: Sandbox, envs: Envs) -> None:
    """Two environments of one template: each sees only itself, cannot signal or trace
    the other, nor read its /tmp."""
    one, two, _template = envs
    me, other = _attack(sb, one, "whoami"), _attack(sb, two, "whoami")
    assert me["pid"] != other["pid"]
    assert me["procs"] == [str(me["pid"])] and other["procs"] == [str(other["pid"])]
    got = _attack(sb, one, "sibling", pid=other["pid"])
    assert got["kill"] == {"ok": False, "errno": EPERM}  # another uid, no capability
    _denied(got["ptrace"], EPERM, errno.ESRCH)
    assert got["proc"] is False
    assert got["tmp"] == {"ok": False, "errno": errno.ENOENT}
    assert got["root_tmp"] == {"ok": False, "errno": errno.ENOENT}
    assert _attack(sb, two, "whoami")["pid"] == other["pid"]  # alive and well


def test_template_memory_is_unreachable_from_the_host_uid_of_an_environment(
        sb: Sandbox, envs: Envs) -> None:
    """The template and its cells run as uids an environment never has: even a process
    outside every namespace with an environment's uid could not read their memory."""
    one, _two, template = envs
    env_uid = os.stat(f"/proc/{one.pid}").st_uid
    assert env_uid != os.stat(f"/proc/{template.process.pid}").st_uid
    for pid in template.cells.pids:
        assert os.stat(f"/proc/{pid}").st_uid == template.uid_first
