"""Edit-to-ready time of ``nimbus dev``: from saving a changed app.py to the first
invocation that returns the new result, for a function folder and for a SAM template.

Starts ``nimbus dev`` (a child process, as a user runs it) on a temporary project, then N
times: writes app.py returning a new value, and invokes the function in a tight loop (one
keep-alive connection) until it answers with that value. The time runs from just before
the write to that answer, so it holds the file watcher's notice and its settling step,
the redeploy and the new environment's cold start. Cases:

- ``folder``: a folder without a template, one function: zipping and
  UpdateFunctionCode (the package unpacked, warm environments replaced).
- ``template``: a SAM template of two functions in folders of their own (one behind an
  HTTP API route, one with a function URL); one function's app.py is edited, so a save
  also costs the stack's redeploy through ``nimbus deploy``'s machinery (AWS's transform,
  every resource compared with what was applied) while the other function's package is
  reused.

Target: < 1 s. Prints a table and writes ``bench/results/dev_reload.json``. Needs root
(namespace isolation), like ``nimbus dev`` itself.
Usage: ``python bench/dev_reload.py [-n 20] [--case folder|template|both]``.
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
import re
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from typing import Any

import httpx

CODE = "def handler(event, context):\n    return {value!r}\n"
RELOADED = re.compile(r"reloaded .* in (\d+) ms")
TEMPLATE = """\
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.12
    Handler: app.handler
Resources:
  Edited:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: edited/
      FunctionUrlConfig:
        AuthType: NONE
  Other:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: other/
      Events:
        Get:
          Type: HttpApi
          Properties:
            Path: /other
            Method: get
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def folder_project(root: Path) -> tuple[Path, Path, str]:
    """(what `nimbus dev` is given, the file edited, the function invoked)."""
    folder = root / "reloaded"
    folder.mkdir()
    (folder / "app.py").write_text(CODE.format(value="v0"))
    return folder, folder / "app.py", "reloaded"


def template_project(root: Path) -> tuple[Path, Path, str]:
    app = root / "stack"
    for name in ("edited", "other"):
        (app / name).mkdir(parents=True)
        (app / name / "app.py").write_text(CODE.format(value=f"{name} v0"))
    (app / "edited" / "app.py").write_text(CODE.format(value="v0"))
    (app / "template.yaml").write_text(TEMPLATE)
    return app / "template.yaml", app / "edited" / "app.py", "stack-Edited"


def measure(case: str, edits: int) -> tuple[list[float], list[float]]:
    """Seconds from each save to the first invocation returning the new result, and the
    redeploys' own seconds as ``nimbus dev`` reports them ("reloaded X in N ms")."""
    with tempfile.TemporaryDirectory() as tmp:
        make = folder_project if case == "folder" else template_project
        target, edited, function = make(Path(tmp))
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "nimbus", "dev", str(target), "--port", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
        ready = threading.Event()
        said: list[str] = []

        def pump() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                said.append(line)
                if line.startswith("ready:"):
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        times = []
        try:
            if not ready.wait(180) or proc.poll() is not None:
                sys.exit(f"nimbus dev did not start ({case}):\n{''.join(said)}")
            url = f"http://127.0.0.1:{port}/2015-03-31/functions/{function}/invocations"
            with httpx.Client(timeout=30) as http:
                assert http.post(url, content=b"{}").json() == "v0"
                for i in range(1, edits + 1):
                    value = f"v{i}"
                    start = time.perf_counter()
                    edited.write_text(CODE.format(value=value))
                    while http.post(url, content=b"{}").json() != value:
                        if time.perf_counter() - start > 30:
                            sys.exit(f"{case}: edit {i} never became ready")
                    times.append(time.perf_counter() - start)
                    time.sleep(0.3)  # let the watcher settle: edits are seconds apart in life
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    redeploys = [int(m[1]) / 1000 for line in said if (m := RELOADED.match(line))]
    return times, redeploys


def summary(times: list[float], redeploys: list[float]) -> dict[str, Any]:
    ms = sorted(t * 1000 for t in times)
    return {
        "edits": len(ms),
        "p50_ms": round(statistics.median(ms), 1),
        "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 1),
        "max_ms": round(ms[-1], 1),
        "redeploy_p50_ms": round(statistics.median(redeploys) * 1000, 1) if redeploys else None,
        "target_ms": 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=20, help="edits to time, per case")
    parser.add_argument("--case", choices=("folder", "template", "both"), default="both")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "results" / "dev_reload.json")
    args = parser.parse_args()
    cases = ("folder", "template") if args.case == "both" else (args.case,)
    results = {case: summary(*measure(case, args.n)) for case in cases}
    print(f"{'case':<9} {'edits':>6} {'p50 ms':>8} {'p90 ms':>8} {'max ms':>8} "
          f"{'redeploy p50':>13}  target < 1000 ms")
    for case, r in results.items():
        print(f"{case:<9} {r['edits']:>6} {r['p50_ms']:>8} {r['p90_ms']:>8} {r['max_ms']:>8} "
              f"{r['redeploy_p50_ms']!s:>13}  {'met' if r['max_ms'] < 1000 else 'MISSED'}")
    out = {**results, "host": platform.node(), "python": platform.python_version(),
           "date": time.strftime("%Y-%m-%d")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
