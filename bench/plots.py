"""The scale curves as PNGs under bench/results/, from the JSON the benchmarks wrote:

* ``coldstart_concurrency.png``  cold start p50/p99 vs cold starts at once (workloads.json)
* ``http_connections.png``       warm req/s vs connections: raw Starlette, the process-hop
                                  floor and nimbus' function URL (http.json, http_c<N>.json)
* ``async_payload.png``          async events/s vs payload size (async_payload_<N>.json)
* ``density.png``                USS/PSS per idle warm environment vs environments
                                  (density.json)

A curve whose inputs are missing is skipped, saying so. Needs matplotlib (the ``bench``
extra). Usage: ``python bench/plots.py [--results bench/results]``.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def _load(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def _series(results: Path, pattern: str) -> list[tuple[int, dict]]:
    """(N, json) of every ``pattern`` file (a regex with one number group), by N."""
    found = []
    for path in results.glob("*.json"):
        if match := re.fullmatch(pattern, path.name):
            found.append((int(match[1]), json.loads(path.read_text())))
    return sorted(found, key=lambda item: item[0])


def _figure(title: str, xlabel: str, ylabel: str) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _save(fig: Any, ax: Any, path: Path) -> Path:
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def coldstart_concurrency(results: Path) -> Path | None:
    data = _load(results / "workloads.json")
    if not data or not data.get("concurrent_cold"):
        return None
    ks = sorted(int(k) for k in data["concurrent_cold"])
    fig, ax = _figure("Cold start + first invoke vs cold starts at once", "cold starts at once",
                      "ms")
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99")):
        ax.plot(ks, [data["concurrent_cold"][str(k)][key] for k in ks], marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    return _save(fig, ax, results / "coldstart_concurrency.png")


def http_connections(results: Path) -> Path | None:
    runs = _series(results, r"http_c(\d+)\.json")
    main = _load(results / "http.json")  # the main run, at its own connection count
    if main and main["connections"] not in {c for c, _ in runs}:
        runs = sorted([*runs, (main["connections"], main)], key=lambda item: item[0])
    if not runs:
        return None
    cs = [c for c, _ in runs]
    fig, ax = _figure("Warm hello req/s vs connections", "connections (wrk)", "requests/s")
    for key, label in (("starlette", "raw Starlette (in-process)"),
                       ("starlette_process_hop", "Starlette + process hop (floor)"),
                       ("nimbus", "nimbus function URL")):
        ax.plot(cs, [r[key]["req_per_s"] for _, r in runs], marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(cs, [str(c) for c in cs])
    return _save(fig, ax, results / "http_connections.png")


def async_payload(results: Path) -> Path | None:
    runs = _series(results, r"async_payload_(\d+)\.json")
    main = _load(results / "async.json")  # the main run: the curve's smallest payload
    if main and main.get("payload_bytes") and main["payload_bytes"] not in {n for n, _ in runs}:
        runs = sorted([*runs, (main["payload_bytes"], main)], key=lambda item: item[0])
    if not runs:
        return None
    sizes = [n / 1000 for n, _ in runs]
    fig, ax = _figure("nimbus async events/s vs payload size", "payload (KB)", "events/s")
    for key, label in (("accepted_per_s", "accepted (202, durably queued)"),
                       ("executed_per_s", "executed (first enqueue to empty queue)")):
        ax.plot(sizes, [r[key] for _, r in runs], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(sizes, [f"{s:g}" for s in sizes])
    return _save(fig, ax, results / "async_payload.png")


def density(results: Path) -> Path | None:
    data = _load(results / "density.json")
    if not data or not data.get("by_count"):
        return None
    rows = data["by_count"]
    ns = [r["environments"] for r in rows]
    fig, ax = _figure("Memory per idle warm environment", "idle warm environments", "MiB")
    for key, label in (("uss_median_bytes", "USS (unique) p50"),
                       ("pss_median_bytes", "PSS (proportional) p50"),
                       ("mem_available_drop_per_env_bytes", "MemAvailable drop / env")):
        ax.plot(ns, [r[key] / 1048576 for r in rows], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set_ylim(bottom=0)
    return _save(fig, ax, results / "density.png")


def plot_all(results: Path = RESULTS) -> dict[str, str | None]:
    """Every curve that has its inputs: name -> PNG path (None: inputs missing)."""
    out: dict[str, str | None] = {}
    for curve in (coldstart_concurrency, http_connections, async_payload, density):
        path = curve(results)
        out[curve.__name__] = str(path) if path else None
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    for name, png in plot_all(parser.parse_args().results).items():
        print(f"{name}: {png or 'skipped (its results are missing)'}")
