"""The 1-minute series of several nodes as one: what a cluster server shows.

Each node keeps the minutes of the invocations it ran itself (``Metrics.series``). A
server of a cluster whose invocations run on worker nodes asks each live worker for its
minutes (``export``, served at ``GET /_nimbus/metrics/minutes``) and adds them to its
own (``merge``), so the dashboard and ``GET /_nimbus/metrics`` and ``/_nimbus/cost``
show the whole cluster. Durations travel as their fine buckets, so merged percentiles
are those of all the invocations, not an average of each node's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from nimbus.observe.cost import Usage
from nimbus.observe.metrics import Minute, Series


def export(series: Series, since_minute: int) -> list[dict[str, Any]]:
    """The minutes from ``since_minute`` (epoch minutes) on, as JSON-ready rows."""
    return [
        {"FunctionName": function, "Minute": minute, "Invocations": bucket.invocations,
         "Errors": bucket.errors, "Throttles": bucket.throttles,
         "Durations": {str(k): v for k, v in bucket.durations.items()},
         "Requests": dict(bucket.usage.requests), "MbMs": dict(bucket.usage.mb_ms)}
        for function, minutes in series.items()
        for minute, bucket in minutes.items() if minute >= since_minute
    ]


def parse(rows: Iterable[dict[str, Any]]) -> list[tuple[str, int, Minute]]:
    """One node's exported rows read back: (function, minute, its figures). Raises
    ``KeyError``/``ValueError``/``TypeError``/``AttributeError`` on a malformed row."""
    return [
        (str(row["FunctionName"]), int(row["Minute"]), Minute(
            invocations=int(row["Invocations"]), errors=int(row["Errors"]),
            throttles=int(row["Throttles"]),
            durations={int(k): int(v) for k, v in row["Durations"].items()},
            usage=Usage({str(k): int(v) for k, v in row["Requests"].items()},
                        {str(k): int(v) for k, v in row["MbMs"].items()}),
        ))
        for row in rows
    ]


def merge(series: Series, since_minute: int,
          others: Iterable[tuple[str, int, Minute]]) -> Series:
    """A new series: ``series``'s minutes from ``since_minute`` on (every function it
    holds keeps its entry) plus the ``parse``d minutes of other nodes; neither changes."""
    merged: Series = {}
    for function, minutes in series.items():
        merged[function] = {}
        for minute, bucket in minutes.items():
            if minute >= since_minute:
                _add(merged, function, minute, bucket)
    for function, minute, bucket in others:
        _add(merged, function, minute, bucket)
    return merged


def _add(series: Series, function: str, minute: int, bucket: Minute) -> None:
    minutes = series.setdefault(function, {})
    mine = minutes.get(minute)
    if mine is None:
        minutes[minute] = mine = Minute()
    mine.merge(bucket)
