"""The rows of the ``make bench`` table: each figure beside its same-run baseline.

``rows(results)`` reads the JSON the benchmarks wrote under ``results`` and returns one
``Row`` per figure: its value, the baseline it is compared with (a floor, a peer, the
work done in-process, measured in the same run), their ratio (value / baseline), and
the target of issue [G bench] where there is one. A file that is missing (its step
failed or was not run) leaves its rows out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass
class Row:
    figure: str
    value: float
    unit: str
    baseline: str = ""
    baseline_value: float | None = None
    target: str = ""
    met: bool | None = None

    @property
    def ratio(self) -> float | None:
        if self.baseline_value in (None, 0):
            return None
        return self.value / self.baseline_value

    def value_text(self) -> str:
        return _fmt(self.value, self.unit)

    def baseline_text(self) -> str:
        return "" if self.baseline_value is None else _fmt(self.baseline_value, self.unit)

    def ratio_text(self) -> str:
        r = self.ratio
        return "" if r is None else (f"{r:.2f}x" if r < 100 else f"{r:.0f}x")

    def met_text(self) -> str:
        return {True: "yes", False: "NO", None: ""}[self.met]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": None if self.ratio is None else round(self.ratio, 3)}


def _fmt(v: float, unit: str) -> str:
    if unit == "ms":
        return f"{v:.3f} ms" if v < 1 else f"{v:.2f} ms"
    if unit == "MiB":
        return f"{v:.2f} MiB"
    return f"{v:,.0f} {unit}"


def _load(results: Path, name: str) -> Any:
    path = results / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def cold_rows(results: Path) -> Iterator[Row]:
    cold, peers = _load(results, "coldstart"), _load(results, "peers")
    if cold:
        floor = cold["floor_p50_ms"]
        p50, p99 = cold["cold_p50_ms"], cold["cold_p99_ms"]
        yield Row("cold start + first invoke p50 (hello)", p50, "ms", "fork floor p50", floor,
                  "<= 2.5x fork floor", p50 <= 2.5 * floor)
        yield Row("cold start + first invoke p99 (hello)", p99, "ms", "fork floor p50", floor,
                  "<= 20 ms", p99 <= 20)
        yield Row("cold start, zygote fork (stem cells off) p50", cold["cold_zygote_p50_ms"],
                  "ms", "fork floor p50", floor)
        if "prefork_floor_p50_ms" in cold:
            yield Row("cold start + first invoke p50 (hello)", p50, "ms",
                      "pre-forked Python floor p50 (no isolation)", cold["prefork_floor_p50_ms"])
        if "namespace_floor_p50_ms" in cold:
            yield Row("namespace sandbox floor p50 (kernel only: clone into namespaces, "
                      "mounts, pivot_root, setuid)", cold["namespace_floor_p50_ms"], "ms",
                      "fork floor p50", floor)
            yield Row("namespace floor, clone + exit only (stem cells pay it ahead)",
                      cold["namespace_clone_p50_ms"], "ms", "fork floor p50", floor)
        wl = _load(results, "workloads")
        in_process = wl["workloads"]["hello"]["in_process"]["p50_ms"] if wl else None
        yield Row("warm invoke p50 (hello)", cold["warm_p50_ms"], "ms",
                  "same handler in-process p50" if wl else "", in_process)
    if cold and peers:
        p50 = cold["cold_p50_ms"]
        for key, label in (("python_c_pass", "python3 -c pass p50"),
                           ("python_exec_handler", "python3 exec per invocation p50 (hello)"),
                           ("bwrap_exec", "bubblewrap + exec python p50 (hello)")):
            if "p50_ms" in peers[key]:
                peer = peers[key]["p50_ms"]
                target = ">= 10x nimbus cold p50" if key == "bwrap_exec" else ""
                yield Row(label, peer, "ms", "nimbus cold start p50", p50, target,
                          peer >= 10 * p50 if target else None)
            else:
                yield Row(f"{label}: {peers[key].get('missing', 'not measured')}", 0, "ms")
        if "namespace_floor_p50_ms" in cold and "p50_ms" in peers["bwrap_exec"]:
            # How far any namespace sandbox could be from bubblewrap + exec here.
            yield Row("bubblewrap + exec python p50 (hello)", peers["bwrap_exec"]["p50_ms"],
                      "ms", "namespace sandbox floor p50", cold["namespace_floor_p50_ms"])
        if "prefork_floor_p50_ms" in cold and "p50_ms" in peers["bwrap_exec"]:
            # ... and from a pre-forked Python process with no isolation at all: the 10x
            # target asks nimbus for (this ratio / 10) times that floor.
            yield Row("bubblewrap + exec python p50 (hello)", peers["bwrap_exec"]["p50_ms"],
                      "ms", "pre-forked Python floor p50 (no isolation)",
                      cold["prefork_floor_p50_ms"])
    if peers:
        yield Row("fork floor p50, bare python3", peers["fork_floor"]["p50_ms"], "ms")


def workload_rows(results: Path) -> Iterator[Row]:
    wl = _load(results, "workloads")
    if not wl:
        return
    floor = wl["fork_floor"]["p50_ms"]
    for name, r in wl["workloads"].items():
        base = r["in_process"]
        yield Row(f"{name}: warm invoke p50", r["warm"]["p50_ms"], "ms",
                  "same handler in-process p50", base["p50_ms"])
        yield Row(f"{name}: warm invoke p99", r["warm"]["p99_ms"], "ms",
                  "same handler in-process p99", base["p99_ms"])
        yield Row(f"{name}: cold start + first invoke p50", r["cold"]["p50_ms"], "ms",
                  "fork floor p50", floor)
    curve = wl["concurrent_cold"]
    if "1" in curve:
        for k, r in curve.items():
            yield Row(f"hello: {k} cold starts at once, p50", r["p50_ms"], "ms",
                      "1 at a time, p50", curve["1"]["p50_ms"])
            yield Row(f"hello: {k} cold starts at once, p99", r["p99_ms"], "ms",
                      "1 at a time, p99", curve["1"]["p99_ms"])


def snapstart_rows(results: Path) -> Iterator[Row]:
    snap = _load(results, "snapstart")
    if not snap:
        return
    floor = snap["floor_p50_ms"]
    yield Row("import-heavy: cold start + first invoke p50", snap["without_snapstart"]
              ["first_p50_ms"], "ms", "fork floor p50", floor)
    yield Row("import-heavy, SnapStart: cold start + first invoke p50",
              snap["snapstart"]["first_p50_ms"], "ms", "fork floor p50", floor,
              "<= 3x fork floor", snap["snapstart"]["first_p50_ms"] <= 3 * floor)
    yield Row("import-heavy, SnapStart p50", snap["snapstart"]["first_p50_ms"], "ms",
              "import-heavy without SnapStart p50", snap["without_snapstart"]["first_p50_ms"])


def http_rows(results: Path) -> Iterator[Row]:
    main = _load(results, "http")
    runs = [main] if main else []
    runs += [r for c in (1, 4, 64) if (r := _load(results, f"http_c{c}"))]
    for r in sorted(runs, key=lambda r: r["connections"]):
        c, nim, hop = r["connections"], r["nimbus"], r["starlette_process_hop"]
        is_main = r is main
        yield Row(f"function URL req/s, {c} connections", nim["req_per_s"], "req/s",
                  "Starlette + process hop (floor)", hop["req_per_s"],
                  ">= 0.9x floor" if is_main else "",
                  nim["req_per_s"] >= 0.9 * hop["req_per_s"] if is_main else None)
        yield Row(f"function URL req/s, {c} connections", nim["req_per_s"], "req/s",
                  "raw Starlette in-process", r["starlette"]["req_per_s"])
        yield Row(f"function URL p99, {c} connections", nim["p99_ms"], "ms",
                  "process-hop floor p99", hop["p99_ms"],
                  "< 5 ms" if is_main else "", nim["p99_ms"] < 5 if is_main else None)
    peers = _load(results, "peers")
    if main and peers and "req_per_s" in peers["fork_exec_http"]:
        yield Row(f"function URL req/s, {main['connections']} connections",
                  main["nimbus"]["req_per_s"], "req/s",
                  f"python3 per request behind HTTP ({peers['fork_exec_http']['connections']})",
                  peers["fork_exec_http"]["req_per_s"])


def async_rows(results: Path) -> Iterator[Row]:
    a, brokers = _load(results, "async"), _load(results, "brokers") or {}
    if not a:
        return
    done = a["executed_per_s"]
    yield Row("async events/s executed (no-op, embedded queue)", done, "ev/s",
              "/health req/s, same clients", a["baseline_health_per_s"],
              ">= 4,000 ev/s", done >= 4000)
    yield Row("async events/s accepted (202, durably queued)", a["accepted_per_s"], "ev/s",
              "/health req/s, same clients", a["baseline_health_per_s"])
    yield Row("async events lost", a["lost"], "events", target="0", met=a["lost"] == 0)
    for key, label in (("dramatiq_redis", "Dramatiq + Redis"),
                       ("dramatiq_rabbitmq", "Dramatiq + RabbitMQ"),
                       ("celery_redis", "Celery + Redis"),
                       ("celery_rabbitmq", "Celery + RabbitMQ")):
        peer = brokers.get(key, {})
        if "executed_per_s" in peer:
            yield Row("async events/s executed", done, "ev/s", f"{label} no-op jobs/s",
                      peer["executed_per_s"], "> peer", done > peer["executed_per_s"])
        elif peer:
            yield Row(f"{label}: {peer.get('skipped', 'not measured')}", 0, "ev/s")
    for size in (10_000, 256_000):  # the main run's events are the curve's 0.1 KB point
        if p := _load(results, f"async_payload_{size}"):
            main_kb = a.get("payload_bytes", 0) / 1000
            yield Row(f"async events/s executed, {size / 1000:g} KB events",
                      p["executed_per_s"], "ev/s", f"{main_kb:g} KB events (main run)", done)


def density_rows(results: Path) -> Iterator[Row]:
    d = _load(results, "density")
    if not d:
        return
    for r in d["by_count"]:
        n = r["environments"]
        uss = r["uss_median_bytes"] / 1048576
        yield Row(f"idle warm environment USS p50, {n} environments", uss, "MiB",
                  "its RSS p50", r["rss_median_bytes"] / 1048576, "<= 10 MB", uss <= 10)
        yield Row(f"idle warm environment PSS p50, {n} environments",
                  r["pss_median_bytes"] / 1048576, "MiB")
    last = d["by_count"][-1]
    yield Row(f"warm environments one 24 GiB machine holds (est., from {last['environments']})",
              last["estimated_max_on_24gib"], "envs", target=">= 500",
              met=last["estimated_max_on_24gib"] >= 500)
    yield Row("warm environments held at once in this run", last["environments"], "envs",
              target=">= 500", met=last["environments"] >= 500)


def other_rows(results: Path) -> Iterator[Row]:
    if q := _load(results, "queue_throughput"):
        yield Row("embedded queue put + lease/ack, steady", q["steady_per_s"], "ev/s",
                  "put alone, 64 producers", q["put_per_s_64_producers"])
    if s := _load(results, "sqs"):
        yield Row("SQS send -> receive -> delete, end to end", s["end_to_end_per_s"], "msg/s",
                  "send alone", s["send_per_s"])
    if e := _load(results, "esm"):
        yield Row("SQS event source mapping, end to end", e["end_to_end_per_s"], "msg/s",
                  "enqueue alone", e["enqueue_only_per_s"], ">= 4,000 msg/s",
                  e["end_to_end_per_s"] >= 4000)
    if s3 := _load(results, "s3"):
        m = s3["summary"]
        yield Row("S3 PUT 1 MiB objects", m["nimbus_put"]["mb_per_s"], "MB/s",
                  "raw write + fsync, same disk", m["raw_write"]["mb_per_s"])
        yield Row("S3 GET 1 MiB objects", m["nimbus_get"]["mb_per_s"], "MB/s",
                  "raw read (page cache)", m["raw_read"]["mb_per_s"])
    if d := _load(results, "dev_reload"):
        for case in ("folder", "template"):
            if case in d:
                yield Row(f"nimbus dev edit-to-ready p50 ({case})", d[case]["p50_ms"], "ms",
                          target="max < 1000 ms", met=d[case]["max_ms"] < 1000)


SECTIONS: list[Callable[[Path], Iterator[Row]]] = [
    cold_rows, workload_rows, snapstart_rows, http_rows, async_rows, density_rows, other_rows,
]


def rows(results: Path) -> list[Row]:
    out: list[Row] = []
    for section in SECTIONS:
        try:
            out += list(section(results))
        except (KeyError, TypeError, ValueError) as e:  # a result file of another shape
            out.append(Row(f"{section.__name__}: unreadable results ({type(e).__name__}: {e})",
                           0, ""))
    return out
