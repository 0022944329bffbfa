"""``make bench``: every benchmark in one run, with fixed workloads, and one table.

Runs each benchmark script of this directory as a subprocess with the settings in
``steps()`` (``--quick``: far smaller ones, for trying the suite out; its figures mean
little), each writing its JSON under bench/results/ and its output to
bench/results/logs/<step>.log; then the rows of ``bench/summary_rows.py`` put every
figure beside its same-run baseline as a ratio, with the issue's target where there is
one. Prints the table, writes ``bench/results/summary.json`` and
``bench/results/summary.md`` (date, machine: cores, CPU model, memory, load average at
the start), and plots the scale curves (bench/plots.py).

A step that fails (or takes longer than its limit) is reported in the table and the
run goes on; the exit status is then 1.

    .venv/bin/python bench/suite.py [--quick] [--only coldstart,http] [--skip s3]

Needs root (namespace isolation, as nimbus itself), wrk, bubblewrap, and the machine's
Redis and RabbitMQ for the Dramatiq/Celery rows (skipped, saying so, without them);
``make bench`` installs what it can.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This directory's http.py must not shadow the standard library's http package.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import datetime
import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from bench.summary_rows import Row, rows

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
CONNECTIONS = (1, 4, 16, 64)  # the warm throughput curve; 16 is the main http run
PAYLOADS = {10_000: 2000, 256_000: 300}  # async curve: bytes -> events (100: "async")


@dataclass
class Step:
    name: str
    argv: list[str]
    quick: list[str]
    limit_s: int = 300


def steps() -> list[Step]:
    """The fixed workloads of a full run (and of --quick), in the order they run."""
    out = [
        Step("coldstart", ["coldstart.py", "-n", "60", "--warm", "500"],
             ["-n", "10", "--warm", "100", "--floor", "50"]),
        Step("snapstart", ["snapstart.py", "-n", "20", "--n-cold", "5"],
             ["-n", "5", "--n-cold", "3", "--layer-mb", "4", "--floor", "50"]),
        Step("workloads", ["workloads.py", "--warm", "150", "--cold", "15",
                           "--curve-samples", "24"],
             ["--warm", "30", "--cold", "5", "--curve-samples", "8"]),
        Step("density", ["density.py", "--counts", "10,100,500"], ["--counts", "10,50"]),
        Step("peers", ["peers.py", "-n", "50", "--requests", "100"],
             ["-n", "10", "--requests", "32"]),
        Step("http", ["http.py", "--connections", "16", "--seconds", "5", "--rounds", "3"],
             ["--seconds", "2", "--rounds", "1"]),
    ]
    for c in CONNECTIONS:
        if c != 16:
            out.append(Step(f"http_c{c}", ["http.py", "--connections", str(c), "--seconds", "2",
                                           "--rounds", "1", "--output",
                                           str(RESULTS / f"http_c{c}.json")],
                            ["--seconds", "1"]))
    # The main async run is also the curve's 0.1 KB point.
    out.append(Step("async", ["async.py", "--events", "10000", "--warmup", "2000",
                              "--payload-bytes", "100"],
                    ["--events", "2000", "--warmup", "300"]))
    for size, events in PAYLOADS.items():
        out.append(Step(f"async_payload_{size}",
                        ["async.py", "--events", str(events), "--warmup", "300",
                         "--payload-bytes", str(size), "--output",
                         str(RESULTS / f"async_payload_{size}.json")],
                        ["--events", str(max(50, events // 10)), "--warmup", "100"]))
    out += [
        Step("brokers", ["brokers.py", "--jobs", "2000"], ["--jobs", "300"]),
        Step("queue_throughput", ["queue_throughput.py", "--events", "10000"],
             ["--events", "2000"]),
        Step("sqs", ["sqs.py", "--messages", "20000"], ["--messages", "2000"]),
        Step("esm", ["esm.py", "--messages", "5000"], ["--messages", "1000"]),
        Step("s3", ["s3.py", "--objects", "50", "--rounds", "1", "--notifications", "10"],
             ["--objects", "20", "--rounds", "1", "--notifications", "5"]),
        Step("dev_reload", ["dev_reload.py", "-n", "5"], ["-n", "3"]),
    ]
    return out


def machine() -> dict:
    """What the figures were measured on, read at the start of the run."""
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    with open("/proc/loadavg") as f:
        load = [float(v) for v in f.read().split()[:3]]
    return {"cpus": os.cpu_count(), "cpu_model": model, "memory_gib": round(mem_kb / 2**20, 1),
            "load_average_at_start": load, "kernel": platform.release(),
            "python": platform.python_version()}


def run_step(step: Step, quick: bool, logs: Path) -> dict:
    argv = [sys.executable, str(BENCH / step.argv[0]), *step.argv[1:]]
    if quick:  # later options win with argparse
        argv += step.quick
    log = logs / f"{step.name}.log"
    # Every step writes results/<name>.json: a stale one must not pass for this run's.
    (RESULTS / f"{step.name}.json").unlink(missing_ok=True)
    start = time.monotonic()
    with log.open("w") as out:
        try:
            proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=step.limit_s, cwd=BENCH.parent, check=False)
            status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
        except subprocess.TimeoutExpired:
            status = f"timed out after {step.limit_s} s"
    elapsed = round(time.monotonic() - start, 1)
    tail = "" if status == "ok" else log.read_text()[-400:]
    print(f"  {step.name:<24} {status:<24} {elapsed:>7.1f} s", flush=True)
    return {"status": status, "seconds": elapsed, "argv": argv[1:], "log_tail": tail}


def print_table(title: str, table_rows: list[Row]) -> None:
    """The table on stdout, one line a row whatever the terminal's width."""
    header = ("figure", "value", "baseline", "baseline value", "ratio", "target", "met")
    cells = [header] + [(r.figure, r.value_text(), r.baseline, r.baseline_text(),
                         r.ratio_text(), r.target, r.met_text()) for r in table_rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    right = {1, 3, 4}
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print("  ".join(c.rjust(w) if i in right else c.ljust(w)
                        for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def markdown(meta: dict, table_rows: list[Row], runs: dict, plots: dict) -> str:
    m = meta["machine"]
    lines = [
        f"# nimbus benchmarks ({meta['mode']} run)", "",
        f"- date: {meta['date']} (suite took {meta['seconds']:.0f} s)",
        f"- machine: {m['cpus']} cores, {m['cpu_model']}, {m['memory_gib']} GiB, "
        f"kernel {m['kernel']}, Python {m['python']}",
        f"- load average at start: {' / '.join(str(v) for v in m['load_average_at_start'])} "
        "(1 / 5 / 15 min)",
        "", "Ratio = figure / baseline, both measured in this run.", "",
        "| figure | value | baseline | baseline value | ratio | target | met |",
        "| --- | ---: | --- | ---: | ---: | --- | --- |",
    ]
    for r in table_rows:
        lines.append(f"| {r.figure} | {r.value_text()} | {r.baseline} | {r.baseline_text()} | "
                     f"{r.ratio_text()} | {r.target} | {r.met_text()} |")
    failed = {k: v for k, v in runs.items() if v["status"] != "ok"}
    if failed:
        lines += ["", "Steps that did not finish: " + ", ".join(
            f"{k} ({v['status']})" for k, v in failed.items())]
    pngs = [Path(p).name for p in plots.values() if p]
    if pngs:
        lines += ["", "Plots: " + ", ".join(f"[{p}]({p})" for p in pngs)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny workloads, to try it out")
    parser.add_argument("--only", help="comma-separated step names (default: all)")
    parser.add_argument("--skip", default="", help="comma-separated step names to leave out")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/suite.py needs root (namespace isolation), as nimbus does")
    now = datetime.datetime.now(datetime.UTC)
    meta: dict[str, Any] = {"date": now.strftime("%Y-%m-%d %H:%M UTC"),
                            "mode": "quick" if args.quick else "full", "machine": machine()}
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    chosen = [s for s in steps() if (not args.only or s.name in args.only.split(","))
              and s.name not in args.skip.split(",")]
    print(f"running {len(chosen)} benchmarks ({meta['mode']}); logs in {logs}", flush=True)
    start = time.monotonic()
    runs = {step.name: run_step(step, args.quick, logs) for step in chosen}
    meta["seconds"] = round(time.monotonic() - start, 1)
    try:
        from bench.plots import plot_all

        plots = plot_all(RESULTS)
    except ImportError as e:
        plots = {"error": f"no plots: {e} (pip install -e '.[bench]')"}
    table_rows = rows(RESULTS)
    print_table(f"nimbus benchmarks, {meta['date']} ({meta['mode']} run)", table_rows)
    summary = {**meta, "steps": runs, "plots": plots, "rows": [r.as_dict() for r in table_rows]}
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (RESULTS / "summary.md").write_text(markdown(meta, table_rows, runs, plots))
    print(f"wrote {RESULTS / 'summary.json'} and {RESULTS / 'summary.md'} "
          f"({meta['seconds']:.0f} s)")
    if any(r["status"] != "ok" for r in runs.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
