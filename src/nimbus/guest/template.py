"""A SnapStart template: a published version initialised once, forking its environments.

The zygote clones the template into a user namespace of its own (with new mount, IPC,
UTS and, as the function's network setting says, network namespaces); the server
writes its uid/gid maps (a block of host uids: namespace root is the block's first
uid, the rest map to themselves) and moves it into its cgroup, then says ``go`` on the
fork socket. The template then builds its root like any environment, creates the PID
namespace its environments will live in (a small ``keeper`` is its init and mounts its
``/proc`` with ``hidepid=invisible``: each environment sees only its own processes),
installs the *template* seccomp filter and runs the function's init (imports, handler
module, ``register_before_snapshot`` hooks). From then on nothing in its memory can be
trusted, so it holds nothing more than init code could use anyway: capabilities over
its own user namespace only, no mount, no new user namespace (``nimbus.guest.seccomp``).

Each fork request brings a control socket and a log pipe, and makes a *cell*: a child
(a sibling of the template: CLONE_PARENT, so the server reaps it) that takes a mount
namespace of its own and waits, running nothing of the function, until the server
claims it (``nimbus.guest.cells.await_function``). The server keeps a few cells per
template forked ahead of time (``nimbus.sandbox.template_cells``), moving each into an
environment cgroup of its own, so a cold start skips the fork of the template's page
tables; without a ready cell it forks one on the spot. Claimed, the cell attaches its
``/tmp`` over the template's, becomes its own uid, drops every capability, sets
no_new_privs, loads the strict filter on top, re-seeds, runs the
``register_after_restore`` hooks and serves invocations as any environment does.

Runs in the zygote's child (Python 3.9+): standard library only.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import os
import signal
import socket
import time
from types import ModuleType

from nimbus.guest import cells, jail, libc, mounts, privileges, seccomp

FORK_FD = 6  # the template's fork socket (SOCK_SEQPACKET)
PROC_FLAGS = libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC


def arrange_fds(ctl: int, log: int, tmp: int | None, fork: int) -> int | None:
    """As ``jail.arrange_fds``, plus the fork socket at FORK_FD. Returns TMP_FD or None."""
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100) for fd in (ctl, log, fork)]
    high_tmp = None if tmp is None else fcntl.fcntl(tmp, fcntl.F_DUPFD_CLOEXEC, 100)
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(high[1], 1)
    os.dup2(high[1], 2)
    os.dup2(high[0], jail.CTL_FD, inheritable=False)
    os.dup2(high[1], jail.LOG_FD, inheritable=False)
    os.dup2(high[2], FORK_FD, inheritable=False)
    if high_tmp is not None:
        os.dup2(high_tmp, jail.TMP_FD, inheritable=False)
    libc.close_range(FORK_FD + 1)
    if high_tmp is None:
        with contextlib.suppress(OSError):
            os.close(jail.TMP_FD)
        return None
    return jail.TMP_FD


NOBODY = 65534


def _keeper(root: str, last_cap: int) -> None:
    """Fork PID 1 of the environments' PID namespace: mounts its /proc, then only reaps."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(ready_w)
        ok = os.read(ready_r, 1)
        os.close(ready_r)
        if ok != b"1":
            raise OSError("the PID namespace's init could not mount /proc")
        return
    status = 70
    try:
        os.close(ready_r)
        libc.mount("proc", root + "/proc", "proc", PROC_FLAGS, "hidepid=invisible")
        # Nothing more for it to do with privileges: it only reaps orphans, as nobody
        # (no uid of the template's block: init code can neither signal nor trace it).
        privileges.limit(last_cap)
        privileges.drop(NOBODY, NOBODY)
        libc.prctl(libc.PR_SET_DUMPABLE, 0)
        seccomp.install()
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        os.write(ready_w, b"1")
        os.close(ready_w)
        libc.close_range(0)
        while True:
            with contextlib.suppress(ChildProcessError):
                while os.waitpid(-1, os.WNOHANG)[0] > 0:
                    pass
            signal.sigwait({signal.SIGCHLD})
    finally:
        os._exit(status)


def setup(req: dict, sock: socket.socket, last_cap: int) -> None:
    """The template's confinement, before any user code. Its root is built as root
    (as any environment's); then it enters a user namespace of its own, whose maps the
    server writes, and a mount namespace owned by it."""
    root = req["root"]
    jail.join_cgroup(req["cgroup_procs"])
    libc.sethostname(req["hostname"])
    if not req["network"]:
        jail.loopback_up()
    libc.unshare(libc.CLONE_NEWPID)
    _keeper(root, last_cap)
    privileges.limit(last_cap)
    mounts.enter(root, req["code_dir"], req["layers"], req["tmp_mb"], req.get("tmp_fd"))
    jail.set_limits(req["nofile"])
    libc.unshare(libc.CLONE_NEWUSER)
    sock.send(b"userns")
    if sock.recv(16) != b"mapped":
        os._exit(0)
    os.setresgid(0, 0, 0)  # namespace root: the first uid of the block
    os.setresuid(0, 0, 0)
    privileges.limit(last_cap)  # a new user namespace came with a full bounding set
    # A mount namespace its user namespace owns: environments unshare their own from it.
    libc.unshare(libc.CLONE_NEWNS)
    libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
    libc.prctl(libc.PR_SET_DUMPABLE, 1)
    seccomp.install_template()


def _cell(received: float, fds: list[int], template_runtime: object, handler: object,
          runtime: ModuleType) -> None:
    """In a forked child (a *cell*): wait for the server to claim it, then confine it as
    its own environment and serve. Nothing of the function runs before the claim."""
    stages = [("received", received), ("forked", time.perf_counter())]
    try:
        jail.arrange_fds(fds[0], fds[1])
        # Its own mount namespace, ahead of time: a claim only attaches /tmp in it.
        libc.unshare(libc.CLONE_NEWNS)
        jail.warm_up()  # copy, while idle, the pages the claim will touch
        # The server has moved this process into the environment's own cgroup before it
        # claims it: one byte with the /tmp mount, then its uid, nonce and variables.
        req, mount_fds = cells.await_function()
        tmp_fd = mount_fds.get("tmp")
        req["stages"] = [*stages, ("claimed", time.perf_counter())]
        if tmp_fd is not None:
            mounts.attach(tmp_fd, "/tmp")
        req["stages"].append(("mounts", time.perf_counter()))
        privileges.drop(req["uid"], req["gid"])
        seccomp.install()
        privileges.verify(req["uid"], req["gid"], seccomp=True)
        req["stages"].append(("privileges", time.perf_counter()))
        # Its orphans come to it (its runtime reaps them, nimbus.guest.reaper), not to the
        # keeper, which is frozen with the template between forks.
        libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
    except BaseException as exc:
        cells.fail_setup(exc)
    env_runtime = runtime.Runtime(req)
    env_runtime.settings = template_runtime.settings  # type: ignore[attr-defined]
    restored = env_runtime.restore(handler)
    if restored is None:
        os._exit(1)
    env_runtime.serve(restored)


def _fork_cell(fds: list[int], template_runtime: object, handler: object,
               runtime: ModuleType) -> int:
    """Fork a cell (a sibling: CLONE_PARENT, so the server reaps it); its pid."""
    received = time.perf_counter()
    pid = libc.clone_process(libc.CLONE_PARENT)
    if pid:
        return pid
    status = 70
    try:
        _cell(received, fds, template_runtime, handler, runtime)
        status = 0
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    finally:
        os._exit(status)
    return 0  # unreachable


def main(req: dict, fds: list[int], runtime: ModuleType, last_cap: int) -> None:
    """The template process (a child of the zygote in its own user namespace)."""
    req["stages"] = [("forked", time.perf_counter())]
    tmp = fds[2] if len(fds) > 3 else None
    req["tmp_fd"] = arrange_fds(fds[0], fds[1], tmp, fds[-1])
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, fileno=FORK_FD)
    try:
        setup(req, sock, last_cap)
    except BaseException as exc:
        cells.fail_setup(exc)
    template_runtime = runtime.Runtime(req)
    handler = template_runtime.init()
    if handler is None:
        os._exit(1)
    # What init made is shared with every environment: collecting it there would write
    # (copy) its pages, so it is kept out of their collections, as the zygote does.
    gc.collect()
    gc.freeze()
    cells.serve_forks(sock, lambda _req, fds: _fork_cell(fds, template_runtime, handler,
                                                         runtime), max_fds=2)
    os._exit(0)  # the server went away
