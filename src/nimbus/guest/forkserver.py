"""The zygote's main loop: a pre-initialised interpreter that forks environments.

Started once per runtime by ``nimbus.sandbox.zygote`` with the runtime's own Python
(3.9+, standard library only). It builds the read-only base root in its private mount
namespace, imports the runtime loop and the stdlib modules functions commonly use, and
freezes the GC so that children share those pages. Then, for each request (JSON plus
the environment's control socket and log pipe by SCM_RIGHTS), it clones a child
straight into new namespaces, as a sibling (CLONE_PARENT: the server reaps it), and
answers with the child's pid. The child confines itself (``jail``) and becomes the
runtime (``nimbus.guest.python`` or the Runtime API server for ``provided``).

A request marked ``stem`` makes a stem cell (see ``nimbus.sandbox.stemcells``): the
child does the function-independent half of its confinement at idle priority, warms
up the code paths of the other half, and waits for a function on its control socket.

The descriptors that come with a request are the control socket, the log pipe and,
for a function (not a stem cell), the mount of its disk-backed /tmp; a stem cell gets
that mount with its function, on the control socket.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import socket
import sys
import time
import traceback
from types import ModuleType

from nimbus.guest import cells, jail, libc, mounts, privileges, seccomp, template

# What a typical handler imports, paid once here instead of in every cold start.
PRELOAD = ["json", "traceback", "logging", "decimal", "datetime", "base64", "re",
           "collections", "uuid", "hashlib", "urllib.parse", "http.client",
           "email.utils", "typing", "dataclasses", "functools", "random", "time"]

NAMESPACES = libc.CLONE_NEWNS | libc.CLONE_NEWPID | libc.CLONE_NEWIPC | libc.CLONE_NEWUTS
TEMPLATE_NAMESPACES = libc.CLONE_NEWNS | libc.CLONE_NEWIPC | libc.CLONE_NEWUTS


def _preload(kind: str) -> ModuleType:
    import importlib

    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    if kind == "python":
        from nimbus.guest import python

        return python
    from nimbus.guest import runtime_api

    return runtime_api


def _child(req: dict, fds: list[int], runtime: ModuleType, last_cap: int) -> None:
    if req.get("netns"):
        # The environment's own network namespace, made by the server
        # (nimbus.sandbox.netns): the last descriptor. Joined before anything else runs.
        netns = fds.pop()
        libc.setns(netns, libc.CLONE_NEWNET)
        os.close(netns)
    if req.get("template"):
        template.main(req, fds, runtime, last_cap)  # a SnapStart template: never returns
        return
    req["stages"] = [("forked", time.perf_counter())]
    try:
        req["tmp_fd"] = jail.arrange_fds(fds[0], fds[1], fds[2] if len(fds) > 2 else None)
        jail.prepare(req, last_cap)
        if req.get("stem"):
            # A stem cell: wait, confined but not yet specialised, for a function.
            jail.warm_up()
            runtime.warm_up(req["warm_dir"])
            if req.get("early_root") and req["isolation"] == "namespace":
                # pivot_root walks every task on the host: paid here, not by a cold
                # start; at normal priority, for it holds the kernel's mount lock.
                os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
                mounts.enter_root(req["root"])
                os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
                req["entered_root"] = True
            jail.prefault(req.get("hot_pages", []))
            function, req["mount_fds"] = cells.await_function()
            if os.sched_getscheduler(0) != os.SCHED_OTHER:
                os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
            req.update(function)
            req["stages"].append(("specialize", time.perf_counter()))
        jail.confine(req)
    except BaseException as exc:
        cells.fail_setup(exc)
    runtime.main(req)


def _exit_status(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    print(exc.code, file=sys.stderr)
    return 1


def _spawn(req: dict, fds: list[int], runtime: ModuleType, last_cap: int) -> int:
    flags = libc.CLONE_PARENT
    if req.get("template"):
        # Its PID and user namespaces come later (nimbus.guest.template): the first so
        # that it can fork environments as the server's children, the second once its
        # root is built.
        flags |= TEMPLATE_NAMESPACES
        if not req["network"]:
            flags |= libc.CLONE_NEWNET
    elif req["isolation"] == "namespace":
        flags |= NAMESPACES
        if not req["network"]:
            flags |= libc.CLONE_NEWNET
    sys.stdout.flush()
    sys.stderr.flush()
    # Leaving SCHED_IDLE again needs root: without it (process isolation on a laptop),
    # stem cells are made at normal priority.
    stem = bool(req.get("stem")) and os.geteuid() == 0
    if stem:
        # Stem cells are made in the background: only idle CPU time for them (and for
        # this clone), so they never slow down a cold start that is happening now.
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    pid = -1
    try:
        pid = libc.clone_process(flags)
    finally:
        if stem and pid != 0:  # the child keeps SCHED_IDLE until it is specialised
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    if pid:
        return pid
    # The child: never return into the zygote's loop, whatever happens.
    status = 70
    try:
        _child(req, fds, runtime, last_cap)
        status = 0
    except SystemExit as exc:
        status = _exit_status(exc)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(status)
    return 0  # unreachable


def serve(sock: socket.socket, config: dict) -> None:
    if config["isolation"] == "namespace":
        mounts.prepare_base(config["root"], config["layout"], config["etc"])
    runtime = _preload(config["kind"])
    runtime.prepare()
    last_cap = privileges.last_capability()
    if config["isolation"] == "namespace":
        seccomp.prepare()
    gc.collect()
    gc.freeze()  # children must not dirty (copy) the zygote's pages by collecting them
    sock.send(json.dumps({"ready": True, "pid": os.getpid()}).encode())
    cells.serve_forks(sock, lambda req, fds: _spawn(req, fds, runtime, last_cap))


def main(sock_fd: int, config_json: str) -> None:
    sock = socket.socket(fileno=sock_fd)
    try:
        serve(sock, json.loads(config_json))
    except Exception as exc:
        with contextlib.suppress(OSError):
            sock.send(json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode())
        raise
