"""The pre-forked Python floor of a cold start: no isolation at all, only what any
runtime that keeps a Python process forked ahead must do.

Run by ``bench/coldstart.py`` with the runtime's own interpreter (standard library only).
Per sample: this process (warmed as a stem cell is: one import from a directory, JSON)
forks a child that blocks on a socket pair, as an idle cell does; timed from the
request to the reply: the child wakes, reads a JSON request, imports ``app`` from a new
directory, calls its handler and sends the JSON result. No namespaces, cgroup, mounts,
privileges, seccomp, logs or Lambda protocol: what a sandbox adds, a cold start pays on
top of this. Prints the times in ms as one JSON list.
Usage: ``python3.12 bench/prefork.py [samples]``.
"""

import importlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time

HELLO = "def handler(event, context):\n    return {'hello': event.get('name', 'world')}\n"


def _warm(base: str) -> None:
    os.makedirs(f"{base}/warm")
    with open(f"{base}/warm/_warm.py", "w") as f:
        f.write(HELLO)
    sys.path.insert(0, f"{base}/warm")
    json.dumps(importlib.import_module("_warm").handler({}, None))
    sys.path.pop(0)
    sys.modules.pop("_warm")


def _child(sock: socket.socket) -> None:
    request = json.loads(sock.recv(65536))
    sys.path.insert(0, request["dir"])
    handler = importlib.import_module("app").handler
    sock.sendall(json.dumps(handler(request["event"], None)).encode())
    sock.recv(1)  # until the parent has its reply


def main() -> None:
    samples = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    sys.dont_write_bytecode = True  # as in a sandbox: the code directory is read-only
    base = tempfile.mkdtemp(prefix="nimbus-prefork-")
    times = []
    try:
        _warm(base)
        for i in range(samples):
            code = f"{base}/code{i}"
            os.makedirs(code)
            with open(f"{code}/app.py", "w") as f:
                f.write(HELLO)
            ours, theirs = socket.socketpair()
            pid = os.fork()
            if pid == 0:
                ours.close()
                try:
                    _child(theirs)
                finally:
                    os._exit(0)
            theirs.close()
            time.sleep(0.02)  # it blocks on its socket, as an idle cell does
            start = time.perf_counter()
            ours.sendall(json.dumps({"dir": code, "event": {"name": "bench"}}).encode())
            json.loads(ours.recv(65536))
            times.append((time.perf_counter() - start) * 1000)
            ours.close()
            os.waitpid(pid, 0)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(times))


if __name__ == "__main__":
    main()
