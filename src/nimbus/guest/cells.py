"""Forking and handing over, shared by the zygote and SnapStart templates.

Both serve fork requests on a socket (JSON and descriptors in, the child's pid or an
error out: ``serve_forks``). Both make *cells*: children forked ahead of time that wait,
confined as far as they can be without knowing the function, until the server hands
them one (``await_function``): a stem cell (``nimbus.guest.forkserver``) or a cell of a
SnapStart template (``nimbus.guest.template``). A child whose setup fails says so on
its control socket before it exits (``fail_setup``).

Runs in the zygote's children (Python 3.9+): standard library only.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from typing import NoReturn

from nimbus.guest import protocol
from nimbus.guest.jail import CTL_FD

SETUP_FAILED = 70  # the exit status of a child whose confinement failed


def fail_setup(exc: BaseException) -> NoReturn:
    """Report a failed setup on the control socket and exit: the server raises it as
    IsolationUnavailable, naming the cause."""
    message = f"{type(exc).__name__}: {exc}"[:2048]  # the server takes at most 4 kB
    try:
        protocol.write_frame(socket.socket(fileno=CTL_FD), {"t": "setup_error", "message": message})
    finally:
        os._exit(SETUP_FAILED)


MAX_MOUNTS = 3  # /tmp, the code, the layers (nimbus.guest.mounts.MOUNT_TARGETS)


def await_function() -> tuple[dict, dict[str, int]]:
    """Block until the server hands this cell its function: one byte on the control
    socket carrying the descriptors of detached mounts (if any), then a frame whose
    ``req`` is the function's part of the request, ``req["mounts"]`` naming those
    descriptors in order. Exits quietly when the server
    discards the cell (EOF). Returns (``req``, the descriptors by name)."""
    ctl = socket.socket(fileno=CTL_FD)
    try:
        lead, fds, _flags, _addr = socket.recv_fds(ctl, 1, MAX_MOUNTS)
        if not lead:
            raise EOFError
        header, _body = protocol.read_frame(ctl)
    except (EOFError, OSError):
        os._exit(0)
    finally:
        ctl.detach()
    req = header["req"]
    names = req.pop("mounts", [])
    if len(names) != len(fds):
        raise OSError(f"the server named {names} but sent {len(fds)} descriptors")
    return req, dict(zip(names, fds))  # noqa: B905 (no strict= before Python 3.10)


def serve_forks(sock: socket.socket, spawn: Callable[[dict, list[int]], int],
                max_fds: int = 5) -> None:
    """Answer each fork request on ``sock`` (JSON and up to ``max_fds`` descriptors)
    with ``{"pid": spawn(request, fds)}`` or ``{"error": ...}``; returns when the
    server goes away. ``spawn`` returns in the parent only; the descriptors are closed
    here."""
    while True:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(sock, 1 << 20, max_fds)
        except InterruptedError:
            continue
        if not msg:
            return  # the server went away
        try:
            reply: dict[str, object] = {"pid": spawn(json.loads(msg), fds)}
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            for fd in fds:
                os.close(fd)
        sock.send(json.dumps(reply).encode())
