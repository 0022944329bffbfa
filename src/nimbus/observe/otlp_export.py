"""Every stored segment, also sent to an OpenTelemetry collector over OTLP/HTTP.

Off unless an endpoint is configured: nimbus's ``otlp_endpoint`` setting
(``NIMBUS_OTLP_ENDPOINT``: the collector's base URL, ``http://localhost:4318``, to which
``/v1/traces`` is added), else OpenTelemetry's own variables,
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (the full URL, used as is) or
``OTEL_EXPORTER_OTLP_ENDPOINT`` (a base URL), unless ``OTEL_SDK_DISABLED=true`` or
``OTEL_TRACES_EXPORTER=none``. The exporter (opentelemetry-exporter-otlp-proto-http)
reads the rest of its settings from the usual variables: ``OTEL_EXPORTER_OTLP_HEADERS``,
``..._TIMEOUT``, ``..._COMPRESSION``, ``..._CERTIFICATE``.

Every process that records segments (the server, each async worker) exports its own:
the function and trigger segments it records and those its X-Ray receiver gets from
functions' SDKs, converted by otlp_spans.py. ``submit`` runs on the event loop and only
appends to a bounded queue (``OTEL_BSP_MAX_QUEUE_SIZE`` documents, 20,000 by default;
the oldest are dropped when it is full); a thread of its own converts and sends them in
batches (``OTEL_BSP_MAX_EXPORT_BATCH_SIZE``, 512) every ``OTEL_BSP_SCHEDULE_DELAY`` ms
(1000) or as soon as a batch is full. A collector that is down or refuses a batch costs
that batch, logged once until an export succeeds again; invocations never wait for it.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from nimbus.config import Config

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger("nimbus.observe.otlp_export")
# Where the OTLP/HTTP span exporter logs each failed batch: while an outage lasts, the
# first failure's reason is enough (see SpanExport._quiet).
SDK_LOGGER = "opentelemetry.exporter.otlp.proto.http.trace_exporter"

TRACES_PATH = "/v1/traces"
MAX_QUEUE = 20_000
BATCH = 512
DELAY_MS = 1000
CLOSE_TIMEOUT_S = 5.0


def traces_endpoint(configured: str | None, environ: Mapping[str, str]) -> str | None:
    """The URL spans are POSTed to, or None when no export is configured."""
    if configured:
        base = configured.rstrip("/")
        return base if base.endswith(TRACES_PATH) else base + TRACES_PATH
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return None
    if environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"].strip()
    if environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return environ["OTEL_EXPORTER_OTLP_ENDPOINT"].strip().rstrip("/") + TRACES_PATH
    return None


def _env_int(environ: Mapping[str, str], name: str, default: int) -> int:
    try:
        value = int(environ.get(name, "") or default)
    except ValueError:
        log.warning("%s=%r is not a whole number; using %d", name, environ[name], default)
        return default
    return value if value > 0 else default


class SpanExport:
    """Segments queued on the event loop, converted and exported from a thread."""

    def __init__(
        self,
        exporter: SpanExporter,
        resource: Resource,
        *,
        endpoint: str = "",
        max_queue: int = MAX_QUEUE,
        batch: int = BATCH,
        delay_ms: int = DELAY_MS,
    ) -> None:
        self.exporter = exporter
        self.resource = resource
        self.endpoint = endpoint
        self.batch = batch
        self.delay_s = delay_ms / 1000
        # deque.append is atomic: the loop's side takes no lock; maxlen drops the oldest.
        self._queue: collections.deque[dict[str, Any]] = collections.deque(maxlen=max_queue)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped = 0  # documents lost to a full queue
        self.exported = 0  # spans a collector accepted
        self.failed = 0  # spans of batches that could not be exported
        self._failing = False

    def submit(self, doc: dict[str, Any]) -> None:
        """Queue ``doc`` for export (from the event loop; never blocks)."""
        queue = self._queue
        if len(queue) == queue.maxlen:
            self.dropped += 1
        queue.append(doc)
        if len(queue) >= self.batch:
            self._wake.set()

    def start(self) -> None:
        logging.getLogger(SDK_LOGGER).addFilter(self._quiet)
        self._thread = threading.Thread(target=self._run, name="nimbus-otlp-export", daemon=True)
        self._thread.start()

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Export what is queued (for at most about ``timeout`` seconds), then stop
        (blocking: run it off the loop)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.exporter.shutdown()
        logging.getLogger(SDK_LOGGER).removeFilter(self._quiet)

    def _quiet(self, record: logging.LogRecord) -> bool:
        """The exporter's own log lines pass until an outage is known (logged once)."""
        return not self._failing

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.delay_s)
            self._wake.clear()
            self.drain()
        self.drain()

    def drain(self) -> None:
        """Export everything queued, a batch at a time (the export thread's work; a test
        may call it while no thread runs)."""
        from nimbus.observe.otlp_spans import spans_of

        while self._queue:
            spans = []
            for _ in range(min(self.batch, len(self._queue))):
                spans.extend(spans_of(self._queue.popleft(), self.resource))
            if spans:
                self._export(spans)

    def _export(self, spans: list[Any]) -> None:
        from opentelemetry.sdk.trace.export import SpanExportResult

        try:
            result = self.exporter.export(spans)
        except Exception:  # an exporter bug must not end the thread
            log.exception("exporting %d spans to %s failed", len(spans), self.endpoint)
            result = SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            self.exported += len(spans)
            if self._failing:
                self._failing = False
                log.info(
                    "exporting traces to %s works again (%d spans were lost)",
                    self.endpoint,
                    self.failed,
                )
            return
        self.failed += len(spans)
        if not self._failing:
            self._failing = True
            log.warning(
                "exporting traces to %s failed: %d spans dropped; nimbus keeps "
                "trying with later spans and says when it works again",
                self.endpoint,
                len(spans),
            )


ExporterFactory = Callable[[str], "SpanExporter"]


def _otlp_http(endpoint: str) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint)


def span_export(
    config: Config,
    environ: Mapping[str, str] | None = None,
    exporter: ExporterFactory = _otlp_http,
) -> SpanExport | None:
    """The process's span export, or None when no endpoint is configured."""
    environ = os.environ if environ is None else environ
    endpoint = traces_endpoint(config.otlp_endpoint, environ)
    if endpoint is None:
        return None
    from nimbus.observe.otlp_spans import resource

    log.info("exporting traces over OTLP/HTTP to %s", endpoint)
    return SpanExport(
        exporter(endpoint),
        resource(config.region, config.account_id),
        endpoint=endpoint,
        max_queue=_env_int(environ, "OTEL_BSP_MAX_QUEUE_SIZE", MAX_QUEUE),
        batch=_env_int(environ, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", BATCH),
        delay_ms=_env_int(environ, "OTEL_BSP_SCHEDULE_DELAY", DELAY_MS),
    )
