"""Function URL throughput against raw Starlette, measured in one run.

Starts a raw Starlette "hello" app (uvicorn with uvloop + httptools, as nimbus serves),
the same app making one JSON round trip to a worker process per request (the floor of
any design that runs functions outside the server process), and a real nimbus with a
warm python3.12 hello function behind a function URL; drives all three with the same
load generator (wrk, 16 connections by default) in interleaved rounds and reports req/s,
p50/p99 latency and CPU per request (the app's process, the processes under it) for
each, and nimbus' share of each baseline's req/s. Writes bench/results/http.json.

    .venv/bin/python bench/http.py [--connections 16] [--seconds 8] [--rounds 3]

Needs ``wrk`` (Debian: ``apt-get install wrk``).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run from the repo root's view: this directory's http.py must not shadow the
# standard library's http package for the imports below.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import io
import json
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import zipfile

import httpx
from bench.cpu import Snapshot
from tests.nimbus_process import NimbusProcess, free_port

RESULTS = Path(__file__).parent / "results" / "http.json"
# One full vCPU, as the floor's workers have: nimbus caps an environment's CPU by its
# MemorySize as Lambda does (1,769 MB per vCPU, a CFS quota per 100 ms period), and at
# Lambda's default 128 MB a busy environment spends most of each period throttled.
MEMORY_MB = 1769
HELLO_APP = """
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

async def hello(request):
    return PlainTextResponse("hello")

app = Starlette(routes=[Route("/{path:path}", hello, methods=["GET", "POST"])])
uvicorn.run(app, host="127.0.0.1", port={port}, loop="uvloop", http="httptools",
            log_level="warning", access_log=False)
"""
# The floor of any design that runs the function in another process: the same app, but
# each request is a JSON round trip to one of N worker processes over a unix socket
# (what nimbus does per invocation, without sandboxing, logs or Lambda's shapes).
HOP_APP = """
import asyncio, json, os, socket
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

def serve(sock):
    while True:
        data = sock.recv(65536)
        if not data:
            os._exit(0)
        event = json.loads(data)
        sock.sendall(json.dumps({"statusCode": 200, "body": "hello", "echo": event}).encode())

channels = asyncio.Queue()
pending = []
for _ in range({workers}):
    parent, child = socket.socketpair()
    if os.fork() == 0:
        parent.close()
        serve(child)
    child.close()
    pending.append(parent)

async def hello(request):
    if pending:
        for sock in pending:
            channels.put_nowait(await asyncio.open_unix_connection(sock=sock))
        pending.clear()
    reader, writer = await channels.get()
    try:
        writer.write(json.dumps({"rawPath": request.url.path}).encode())
        reply = json.loads(await reader.read(65536))
    finally:
        channels.put_nowait((reader, writer))
    return PlainTextResponse(reply["body"])

app = Starlette(routes=[Route("/{path:path}", hello, methods=["GET", "POST"])])
uvicorn.run(app, host="127.0.0.1", port={port}, loop="uvloop", http="httptools",
            log_level="warning", access_log=False)
"""
FUNCTION = (
    "def handler(event, context):\n"
    "    return {'statusCode': 200, 'headers': {'content-type': 'text/plain'},"
    " 'body': 'hello'}\n"
)


def _seconds(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def wrk(url: str, connections: int, seconds: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"{url} answered {errors[1]} errors under load:\n{out}")
    percentile = dict(re.findall(r"^\s+(\d+)%\s+(\S+)$", out, re.M))
    return {
        "req_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),  # type: ignore[index]
        "p50_ms": _seconds(percentile["50"]) * 1000,
        "p99_ms": _seconds(percentile["99"]) * 1000,
    }


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


def function_url(server: NimbusProcess, memory_mb: int = MEMORY_MB) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", FUNCTION)
    lam = server.client()
    lam.create_function(
        FunctionName="hello",
        Runtime="python3.12",
        Handler="app.handler",
        Role="arn:aws:iam::000000000000:role/bench",
        Code={"ZipFile": buf.getvalue()},
        MemorySize=memory_mb,
    )
    url = lam.create_function_url_config(FunctionName="hello", AuthType="NONE")["FunctionUrl"]
    for _ in range(20):  # warm: one environment per connection is started on demand
        assert httpx.get(url).text == "hello"
    return url


def _medians(rounds: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over the rounds."""
    return {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--memory", type=int, default=MEMORY_MB, help="the function's MemorySize")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench/http.py needs wrk: apt-get install wrk")
    port, hop_port = free_port(), free_port()
    raw = subprocess.Popen([sys.executable, "-c", HELLO_APP.replace("{port}", str(port))])
    hop_app = HOP_APP.replace("{port}", str(hop_port)).replace("{workers}", str(args.connections))
    hop = subprocess.Popen([sys.executable, "-c", hop_app])
    with tempfile.TemporaryDirectory() as tmp:
        server = NimbusProcess(Path(tmp) / "data", env={"NIMBUS_ASYNC_WORKERS": "0"}).start()
        try:
            raw_url = f"http://127.0.0.1:{port}/hello"
            hop_url = f"http://127.0.0.1:{hop_port}/hello"
            wait_ready(raw_url)
            wait_ready(hop_url)
            url = function_url(server, args.memory)
            # Let the pool scale to the connection count (unparsed: on a loaded host every
            # request of this warm-up may outlive wrk's timeout, leaving no latencies).
            subprocess.run(
                ["wrk", "-t1", f"-c{args.connections}", "-d3s", url],
                check=False,
                capture_output=True,
            )
            runs: dict[str, list[dict[str, float]]] = {"starlette": [], "hop": [], "nimbus": []}
            cpu_runs: dict[str, list[dict[str, float]]] = {name: [] for name in runs}
            urls = {"starlette": raw_url, "hop": hop_url, "nimbus": url + "hello"}
            roots = {"starlette": raw.pid, "hop": hop.pid, "nimbus": server.proc.pid}
            for _ in range(args.rounds):
                for name, target in urls.items():
                    before = Snapshot.take(roots[name])
                    run = wrk(target, args.connections, args.seconds)
                    requests = int(run["req_per_s"] * args.seconds)
                    cpu_runs[name].append(before.per_event(Snapshot.take(roots[name]), requests))
                    runs[name].append(run)
        finally:
            server.stop()
            for process in (raw, hop):
                process.terminate()
                process.wait()
    summary = {name: _medians(rs) for name, rs in runs.items()}
    # CPU per request by process: "server" is the app's own process, "sandbox" the
    # processes under it (nimbus' sandboxes, the hop app's workers), "load_generator" wrk.
    cpu = {name: _medians(rs) for name, rs in cpu_runs.items()}
    ratio = summary["nimbus"]["req_per_s"] / summary["starlette"]["req_per_s"]
    hop_ratio = summary["nimbus"]["req_per_s"] / summary["hop"]["req_per_s"]
    print(f"{'':<44}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'server µs':>10}{'others µs':>10}")
    labels = {
        "starlette": "raw Starlette hello",
        "hop": "Starlette + a worker-process round trip",
        "nimbus": "nimbus function URL hello",
    }
    for name, label in labels.items():
        s = summary[name]
        print(
            f"{label:<44}{s['req_per_s']:>10.0f}{s['p50_ms']:>10.2f}{s['p99_ms']:>10.2f}"
            f"{cpu[name].get('server', 0):>10.0f}{cpu[name].get('sandbox', 0):>10.0f}"
        )
    print(f"nimbus / Starlette req/s: {ratio:.2f} ({args.connections} connections)")
    print(f"nimbus / Starlette + process hop req/s: {hop_ratio:.2f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "connections": args.connections,
                "seconds": args.seconds,
                "rounds": runs,
                "starlette": summary["starlette"],
                "starlette_process_hop": summary["hop"],
                "nimbus": summary["nimbus"],
                "ratio": ratio,
                "ratio_vs_process_hop": hop_ratio,
                "cpu_us_per_request": cpu,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
