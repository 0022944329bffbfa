"""Floors and peer execution models, measured on this host for the same run's ratios.

* ``fork_floor``    fork + _exit + waitpid of a bare interpreter of the runtime (the floor
                    of a small process; coldstart.py measures it of its own, larger one);
* ``python_c_pass`` ``python3 -c pass``: a fresh interpreter of the function's runtime,
                    started and exited (what any exec-per-invocation design pays first);
* ``bwrap_exec``    the container cold-start model: per invocation, Debian's bubblewrap
                    makes a sandbox (all namespaces unshared, the runtime's prefix and the
                    code read-only, a private /tmp, /proc, /dev) and execs python in it,
                    which imports the hello handler, calls it with the event read from
                    stdin and prints the result;
* ``fork_exec_http`` the classic fork/exec watchdog model behind HTTP: a uvicorn +
                    Starlette app (uvloop, httptools, as nimbus) that runs a fresh
                    ``python3`` per request (the same runner, no sandbox) and returns its
                    output; ``--requests`` requests from ``--connections`` concurrent
                    keep-alive clients (httpx: each request takes ~100 ms here, so the
                    client's own cost does not matter; wrk's 2 s timeout would).

Writes ``bench/results/peers.json``. bwrap_exec needs ``bwrap`` (``apt-get install
bubblewrap``) and is reported missing without it.
Usage: ``python bench/peers.py [-n 100] [--connections 16] [--requests 100]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This directory's http.py must not shadow the standard library's http package.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import inspect
import json
import shutil
import statistics
import subprocess
import tempfile
import time

import httpx
from bench.common import HELLO, fork_floor, pct, runtime_interpreter, table, write_code
from bench.http import wait_ready
from tests.nimbus_process import free_port

RESULTS = Path(__file__).parent / "results" / "peers.json"
EVENT = b'{"name": "bench"}'
# What runs per invocation in both exec models: import the handler, call it, print.
RUNNER = ("import json, sys\nsys.path.insert(0, sys.argv[1])\nimport app\n"
          "print(json.dumps(app.handler(json.load(sys.stdin), None)))\n")
FORK_EXEC_APP = """
import asyncio, sys
import uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

async def invoke(request):
    proc = await asyncio.create_subprocess_exec(
        {interpreter!r}, "-I", "-c", {runner!r}, {code!r},
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate(await request.body() or b'{{"name": "bench"}}')
    return Response(out, status_code=200 if proc.returncode == 0 else 502,
                    media_type="application/json")

app = Starlette(routes=[Route("/{{path:path}}", invoke, methods=["GET", "POST"])])
uvicorn.run(app, host="127.0.0.1", port={port}, loop="uvloop", http="httptools",
            log_level="warning", access_log=False)
"""


FORK_FLOOR = f"""
import json, os, time
{inspect.getsource(fork_floor)}
print(json.dumps(fork_floor(200)))
"""


def _timed(argv: list[str], n: int, stdin: bytes = b"") -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(argv, input=stdin, check=True, capture_output=True)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def bwrap_argv(interpreter: str, prefix: str, code: Path) -> list[str]:
    argv = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session",
            "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc",
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
            "--ro-bind", str(code), "/var/task"]
    for name in ("lib", "lib64", "bin", "sbin"):  # merged /usr: /lib -> usr/lib, ...
        if Path(f"/{name}").is_symlink():
            argv += ["--symlink", f"usr/{name}", f"/{name}"]
    if not prefix.startswith("/usr/"):
        argv += ["--ro-bind", prefix, prefix]
    return [*argv, interpreter, "-I", "-c", RUNNER, "/var/task"]


def _stats(times: list[float]) -> dict[str, float]:
    return {"p50_ms": round(statistics.median(times), 3), "p99_ms": round(pct(times, 0.99), 3),
            "n": len(times)}


async def _drive(url: str, connections: int, requests: int) -> tuple[list[float], float]:
    """``requests`` POSTs of the event from ``connections`` clients at once: the latency
    of each (ms) and the wall time of all (s)."""
    latencies: list[float] = []
    left = iter(range(requests))

    async def client(http: httpx.AsyncClient) -> None:
        for _ in left:
            t0 = time.perf_counter()
            response = await http.post(url, content=EVENT)
            latencies.append((time.perf_counter() - t0) * 1000)
            assert response.json() == {"hello": "bench"}, response.text

    limits = httpx.Limits(max_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=60) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(connections)))
        return latencies, time.perf_counter() - start


def fork_exec_http(interpreter: str, code: Path, connections: int, requests: int) -> dict:
    port = free_port()
    source = FORK_EXEC_APP.format(interpreter=interpreter, runner=RUNNER, code=str(code),
                                  port=port)
    app = subprocess.Popen([sys.executable, "-c", source])
    try:
        url = f"http://127.0.0.1:{port}/hello"
        wait_ready(url)
        asyncio.run(_drive(url, connections, connections))  # warm up
        latencies, elapsed = asyncio.run(_drive(url, connections, requests))
    finally:
        app.terminate()
        app.wait()
    return {**_stats(latencies), "req_per_s": round(len(latencies) / elapsed, 1),
            "connections": connections}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", default="python3.12")
    parser.add_argument("-n", type=int, default=100, help="iterations of each exec model")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    interpreter = runtime_interpreter(args.runtime)
    prefix = subprocess.run([interpreter, "-c", "import sys; print(sys.base_prefix)"],
                            capture_output=True, text=True, check=True).stdout.strip()
    result: dict = {"runtime": args.runtime, "interpreter": interpreter,
                    "fork_floor": _stats(json.loads(subprocess.run(
                        [interpreter, "-c", FORK_FLOOR], capture_output=True, check=True,
                        text=True).stdout)),
                    "python_c_pass": _stats(_timed([interpreter, "-c", "pass"], args.n))}
    with tempfile.TemporaryDirectory(prefix="nimbus-bench-") as tmp:
        base = Path(tmp)
        base.chmod(0o755)
        code = write_code(base / "code", HELLO)
        direct = _timed([interpreter, "-I", "-c", RUNNER, str(code)], args.n, EVENT)
        result["python_exec_handler"] = _stats(direct)
        if shutil.which("bwrap"):
            argv = bwrap_argv(interpreter, prefix, code)
            out = subprocess.run(argv, input=EVENT, capture_output=True, check=True).stdout
            assert json.loads(out) == {"hello": "bench"}, out
            result["bwrap_exec"] = _stats(_timed(argv, args.n, EVENT))
        else:
            result["bwrap_exec"] = {"missing": "bwrap not installed: apt-get install bubblewrap"}
        result["fork_exec_http"] = fork_exec_http(interpreter, code, args.connections,
                                                  args.requests)
    rows: list[tuple[str, ...]] = []
    for key, label in (("fork_floor", "fork + exit + wait (bare python3)"),
                       ("python_c_pass", "python3 -c pass"),
                       ("python_exec_handler", "python3 per invocation (hello handler)"),
                       ("bwrap_exec", "bubblewrap sandbox + exec python (hello)"),
                       ("fork_exec_http", f"python3 per request behind HTTP, "
                                          f"{args.connections} conns")):
        r = result[key]
        rows.append((label, f"{r['p50_ms']:.2f}" if "p50_ms" in r else r.get("missing", ""),
                     f"{r['p99_ms']:.2f}" if "p99_ms" in r else "",
                     f"{r['req_per_s']:.0f}" if "req_per_s" in r else ""))
    table("floors and peer execution models (ms)", ("model", "p50", "p99", "req/s"), rows)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
