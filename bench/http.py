"""Function URL throughput against raw Starlette, measured in one run.

Starts a raw Starlette "hello" app (uvicorn with uvloop + httptools, as nimbus serves)
and a real nimbus with a warm python3.12 hello function behind a function URL, then
drives both with the same load generator (wrk, 16 connections by default) in
interleaved rounds and reports req/s and p50/p99 latency for each and nimbus' share of
raw Starlette's req/s. Writes bench/results/http.json.

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
from tests.nimbus_process import NimbusProcess, free_port

RESULTS = Path(__file__).parent / "results" / "http.json"
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


def function_url(server: NimbusProcess) -> str:
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
    )
    url = lam.create_function_url_config(FunctionName="hello", AuthType="NONE")["FunctionUrl"]
    for _ in range(20):  # warm: one environment per connection is started on demand
        assert httpx.get(url).text == "hello"
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench/http.py needs wrk: apt-get install wrk")
    port = free_port()
    raw = subprocess.Popen([sys.executable, "-c", HELLO_APP.replace("{port}", str(port))])
    with tempfile.TemporaryDirectory() as tmp:
        server = NimbusProcess(Path(tmp) / "data", env={"NIMBUS_ASYNC_WORKERS": "0"}).start()
        try:
            raw_url = f"http://127.0.0.1:{port}/hello"
            wait_ready(raw_url)
            url = function_url(server)
            wrk(url, args.connections, 2)  # let the pool scale to the connection count
            runs: dict[str, list[dict[str, float]]] = {"starlette": [], "nimbus": []}
            for _ in range(args.rounds):
                runs["starlette"].append(wrk(raw_url, args.connections, args.seconds))
                runs["nimbus"].append(wrk(url + "hello", args.connections, args.seconds))
        finally:
            server.stop()
            raw.terminate()
            raw.wait()
    summary = {
        name: {key: statistics.median(r[key] for r in rs) for key in rs[0]}
        for name, rs in runs.items()
    }
    ratio = summary["nimbus"]["req_per_s"] / summary["starlette"]["req_per_s"]
    print(f"{'':<34}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    labels = {"starlette": "raw Starlette hello", "nimbus": "nimbus function URL hello"}
    for name, label in labels.items():
        s = summary[name]
        print(f"{label:<34}{s['req_per_s']:>10.0f}{s['p50_ms']:>10.2f}{s['p99_ms']:>10.2f}")
    print(f"nimbus / Starlette req/s: {ratio:.2f} ({args.connections} connections)")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "connections": args.connections,
                "seconds": args.seconds,
                "rounds": runs,
                "starlette": summary["starlette"],
                "nimbus": summary["nimbus"],
                "ratio": ratio,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
