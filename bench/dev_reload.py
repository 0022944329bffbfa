"""Edit-to-ready time of ``nimbus dev``: from saving a changed app.py to the first
invocation that returns the new result.

Starts ``nimbus dev`` on a temporary function folder (a child process, as a user runs it),
then N times: writes app.py returning a new value, and invokes the function in a tight
loop (one keep-alive connection) until it answers with that value. The time runs from
just before the write to that answer, so it holds the file watcher's notice and its
settling step, zipping, UpdateFunctionCode (the package unpacked, warm environments
replaced) and the new environment's cold start. Target: < 1 s. Prints a table and
writes ``bench/results/dev_reload.json``. Needs root (namespace isolation), like
``nimbus dev`` itself. Usage: ``python bench/dev_reload.py [-n 20]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This directory's http.py must not shadow the standard library's http package.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time

import httpx

CODE = "def handler(event, context):\n    return {value!r}\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=20, help="edits to time")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "dev_reload.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "reloaded"
        folder.mkdir()
        (folder / "app.py").write_text(CODE.format(value="v0"))
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "nimbus", "dev", str(folder), "--port", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
        ready = threading.Event()

        def pump() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                if line.startswith("ready:"):
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        try:
            if not ready.wait(120) or proc.poll() is not None:
                sys.exit("nimbus dev did not start")
            url = f"http://127.0.0.1:{port}/2015-03-31/functions/reloaded/invocations"
            times = []
            with httpx.Client(timeout=30) as http:
                assert http.post(url, content=b"{}").json() == "v0"
                for i in range(1, args.n + 1):
                    value = f"v{i}"
                    start = time.perf_counter()
                    (folder / "app.py").write_text(CODE.format(value=value))
                    while http.post(url, content=b"{}").json() != value:
                        if time.perf_counter() - start > 30:
                            sys.exit(f"edit {i} never became ready")
                    times.append(time.perf_counter() - start)
                    time.sleep(0.3)  # let the watcher settle: edits are seconds apart in life
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    ms = sorted(t * 1000 for t in times)
    result = {
        "edits": len(ms),
        "p50_ms": round(statistics.median(ms), 1),
        "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 1),
        "max_ms": round(ms[-1], 1),
        "target_ms": 1000,
        "host": platform.node(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }
    print(f"{'edits':>6} {'p50 ms':>8} {'p90 ms':>8} {'max ms':>8}  target < 1000 ms")
    print(f"{result['edits']:>6} {result['p50_ms']:>8} {result['p90_ms']:>8} "
          f"{result['max_ms']:>8}  {'met' if result['max_ms'] < 1000 else 'MISSED'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
