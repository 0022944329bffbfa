"""Invocation: qualifier resolution, admission, and the synchronous run.

The invoker is where an invocation's pieces meet: ``Targets`` says which version runs,
``ConcurrencyLimiter`` admits it (or 429), ``Pool`` finds or starts an environment,
and the outcome is turned into a Lambda response plus a log record.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from nimbus import egress_rules, ids
from nimbus.clock import now_ms
from nimbus.config import Config
from nimbus.egress_rules import parse_rules
from nimbus.errors import InvalidParameterValue, ResourceNotFound, TooManyRequests
from nimbus.invocation.concurrency import ClusterAdmission, ConcurrencyLimiter
from nimbus.invocation.pool import Pool, PoolKey
from nimbus.invocation.snapstart import Snapshots, not_ready
from nimbus.invocation.targets import Targets
from nimbus.models import FunctionRecord, FunctionVersion
from nimbus.observe.hooks import (
    ErrorKind,
    Hooks,
    InvocationFinished,
    InvocationStarted,
    InvocationThrottled,
)
from nimbus.observe.log_config import config_of, is_json
from nimbus.observe.logs import InvocationLog, LogStore, billed, render, render_json, tail
from nimbus.observe.tracing import TraceHeader, Tracer, is_active, xray_line
from nimbus.sandbox import EnvironmentSpec, InitError, Invocation
from nimbus.store.code import CodeStore
from nimbus.store.functions import snapstart_on, snapstart_runtime
from nimbus.threads import blocking

NETWORK_TAG = "nimbus:network"  # "none": the function runs with no network at all


@dataclass
class InvokeResult:
    payload: bytes
    function_error: str | None
    executed_version: str
    log_text: str  # the invocation's log, START to REPORT
    request_id: str
    trace_id: str | None = None  # the header the function saw (Parent: its segment)

    @property
    def log_tail(self) -> bytes:
        """What LogType=Tail returns (only computed when asked for)."""
        return tail(self.log_text)


class Remote(Protocol):
    """Where a server sends invocations in a cluster (cluster/forward.py)."""

    async def invoke(self, version: FunctionVersion, name: str, qualifier: str | None,
                     payload: bytes, client_context: str | None, trace_id: str | None,
                     request_id: str | None) -> InvokeResult | None:
        """The invocation run elsewhere; None: run it here."""


class Invoker:
    """Runs invocations synchronously (RequestResponse) and checks DryRun ones."""

    def __init__(
        self,
        config: Config,
        targets: Targets,
        code: CodeStore,
        pool: Pool,
        logs: LogStore,
        limiter: ConcurrencyLimiter,
        hooks: Hooks | None = None,
        tracer: Tracer | None = None,
        cluster: ClusterAdmission | None = None,
    ) -> None:
        self.config = config
        # Cluster mode: the limits are also counted across every server.
        self.cluster = cluster
        # Cluster mode, on a server: worker nodes run what it would (engine.py sets it).
        self.remote: Remote | None = None
        # Segments of every invocation (observe/tracing.py); none recorded without a sink.
        self.tracer = tracer if tracer is not None else Tracer()
        # Lifecycle hooks (observe/hooks.py): started, finished, throttled.
        self.hooks = hooks if hooks is not None else Hooks()
        self.targets = targets
        self.code = code
        self.pool = pool
        self.logs = logs
        self.limiter = limiter
        # SnapStart: published versions' templates, made at PublishVersion.
        self.snapshots = Snapshots(targets.functions, pool.manager, self.spec,
                                   None if code.share is None else self.ensure_code)
        # A function updated or deleted: its stale environments stop now, not when idle.
        targets.functions.on_change(lambda name: pool.changed(name, self._deployment))

    async def dry_run(self, name: str, qualifier: str | None) -> FunctionVersion:
        resolution = await self.targets.resolve(name, qualifier)
        version = resolution.pick()
        self._check_runnable(version)
        self._check_state(version, resolution.record)
        return version

    async def invoke(
        self,
        name: str,
        qualifier: str | None,
        payload: bytes,
        client_context: str | None = None,
        trace_id: str | None = None,
        request_id: str | None = None,
        *,
        placed: bool = False,
        picked: tuple[str, str] | None = None,
        on_run: Callable[[], None] | None = None,
    ) -> InvokeResult:
        """Run one invocation (``placed``: another node chose this one: run it here;
        ``picked``: the version and RevisionId that node resolved; ``on_run``: called
        once it is admitted to run, not throttled; on another node, once that ran it)."""
        resolution = await self.targets.resolve(name, qualifier)
        if picked is None:
            version = resolution.pick()
        else:
            number, revision = picked
            found = resolution.versions.get(number)
            if found is None or found.revision_id != revision:
                # This node's copy is older than the placing server's: read it again.
                self.targets.forget(name)
                resolution = await self.targets.resolve(name, qualifier)
                found = resolution.versions.get(number)
            version = found if found is not None else resolution.pick()
        self._check_runnable(version)
        self._check_state(version, resolution.record)
        # The function's segment is the Parent of everything it calls with its header;
        # it is recorded (``traced``) only for a sampled trace.
        trace = self.tracer.incoming(trace_id)
        active = is_active(version.extra)
        sampled = self.tracer.decide(trace, active)
        # In a cluster, a worker node runs it, unless an environment of its own (one it
        # keeps provisioned, say) is idle here: no hop, no cold start.
        if self.remote is not None and not placed and not self.pool.has_idle(
                PoolKey(name, version.version, version.deployment)):
            # Decided here, and the node told (Sampled=0|1): the hops this process
            # records around the invocation (its trigger, an async event's queue
            # segment) agree with the segments the node records.
            forwarded = await self.remote.invoke(version, name, qualifier, payload,
                                                 client_context,
                                                 str(trace._replace(sampled=sampled)),
                                                 request_id)
            if forwarded is not None:
                if on_run is not None:
                    on_run()
                return forwarded
        record = resolution.record
        reserved_total = await self.targets.reserved_total()
        request_id = request_id or ids.request_id()
        segment_id = ids.segment_id()
        traced = sampled and self.tracer.enabled
        invocation = Invocation(
            request_id=request_id,
            payload=payload,
            deadline_ms=0,  # the pool sets it once an environment is ready
            invoked_function_arn=self.config.function_arn(name, qualifier),
            trace_id=str(trace.child(segment_id, sampled)),
            client_context=client_context,
        )
        started = time.time()
        key = PoolKey(name, version.version, version.deployment)
        hooks = self.hooks
        slot, cluster = None, self.cluster
        try:
            ticket = self.limiter.admit(name, record.reserved_concurrency, reserved_total)
            if cluster is not None:
                try:
                    slot = await cluster.admit(
                        name, record.reserved_concurrency, reserved_total)
                except BaseException:
                    self.limiter.release(ticket)
                    raise
        except TooManyRequests as exc:
            if traced:
                self._segment(trace, segment_id, invocation, version, started, 0.0, False,
                              None, None, throttled=True)
            if hooks.wants(InvocationThrottled):
                hooks.emit(InvocationThrottled(name, qualifier, str(exc.extra.get("Reason", ""))))
            raise
        if hooks.wants(InvocationStarted):
            hooks.emit(InvocationStarted(name, qualifier, version.version, request_id))
        if on_run is not None:
            on_run()
        try:
            ran = await self.pool.run(
                key, lambda: self.spec(version, record), invocation,
                on_cold=None if self.code.share is None else lambda: self.ensure_code(version))
        except InitError as err:
            if traced:
                self._segment(trace, segment_id, invocation, version, started, 0.0, True,
                              err.init_duration_ms, err.error_type)
            return self._init_failed(err, version, request_id, qualifier)
        except TooManyRequests as exc:  # no sandbox capacity: a throttle, not an error
            if traced:
                self._segment(trace, segment_id, invocation, version, started, 0.0, False,
                              None, None, throttled=True)
            if hooks.wants(InvocationThrottled):
                hooks.emit(InvocationThrottled(name, qualifier,
                                               str(exc.extra.get("Reason", "")), started=True))
            raise
        except BaseException:
            if traced:
                self._segment(trace, segment_id, invocation, version, started, 0.0, False,
                              None, "platform")
            # nimbus could not run it (or the caller went away): still an end (an error
            # of kind "platform"), so every InvocationStarted has its InvocationFinished.
            if hooks.wants(InvocationFinished):
                hooks.emit(_finished(version, qualifier, request_id, 0.0, billed(0.0), 0,
                                     False, None, False, "platform", None))
            raise
        finally:
            self.limiter.release(ticket)
            if cluster is not None and slot is not None:
                cluster.release(slot)
        outcome = ran.outcome
        error_type = _error_type(outcome.payload) if outcome.function_error else None
        billed_ms = billed(outcome.duration_ms, ran.init_ms, restored=ran.restored)
        if traced:
            self._segment(trace, segment_id, invocation, version, started,
                          outcome.duration_ms, ran.cold, ran.init_ms,
                          (error_type or "Unhandled") if outcome.function_error else None)
        if hooks.wants(InvocationFinished):
            hooks.emit(_finished(
                version, qualifier, request_id, outcome.duration_ms, billed_ms,
                outcome.max_memory_used_mb, ran.cold, ran.init_ms, ran.restored,
                _error_kind(error_type) if outcome.function_error else None, error_type,
            ))
        if is_json(version.extra):
            text = render_json(
                config_of(version.extra, version.function_name),
                request_id,
                version.version,
                invocation.invoked_function_arn,
                outcome.logs,
                outcome.duration_ms,
                version.memory_size,
                outcome.max_memory_used_mb,
                ran.init_ms,
                ran.init_logs,
                function_name=version.function_name,
                error_type=(error_type or "Unhandled") if outcome.function_error else None,
                produced_bytes=len(outcome.payload),
                restored=ran.restored,
                billed_ms=billed_ms,
            )
        else:
            text = render(
                request_id,
                version.version,
                outcome.logs,
                outcome.duration_ms,
                version.memory_size,
                outcome.max_memory_used_mb,
                ran.init_ms,
                ran.init_logs,
                ran.restored,
                xray=xray_line(trace.root, segment_id) if active and sampled else "",
                billed_ms=billed_ms,
            )
        self.logs.append(
            InvocationLog(
                request_id=request_id,
                function_name=name,
                version=version.version,
                log_stream=ran.log_stream,
                timestamp_ms=now_ms(),
                text=text,
                duration_ms=outcome.duration_ms,
                billed_ms=billed_ms,
                memory_size=version.memory_size,
                max_memory_used=outcome.max_memory_used_mb,
                init_ms=ran.init_ms,
                error_type=error_type,
            )
        )
        return InvokeResult(
            outcome.payload, outcome.function_error, version.version, text, request_id,
            invocation.trace_id,
        )

    def _segment(
        self, trace: TraceHeader, segment_id: str, invocation: Invocation,
        version: FunctionVersion, started: float, duration_ms: float, cold: bool,
        init_ms: float | None, error_type: str | None, *, throttled: bool = False,
    ) -> None:
        self.tracer.function_segment(
            trace, segment_id, function=version.function_name,
            function_arn=invocation.invoked_function_arn, version=version.version,
            request_id=invocation.request_id, start=started, end=time.time(),
            duration_ms=duration_ms, cold=cold, init_ms=init_ms, error_type=error_type,
            fault=error_type is not None, throttled=throttled,
        )

    def _init_failed(
        self, err: InitError, version: FunctionVersion, request_id: str,
        qualifier: str | None = None,
    ) -> InvokeResult:
        billed_ms = billed(err.init_duration_ms, err.init_duration_ms, init_failed=True)
        if self.hooks.wants(InvocationFinished):
            self.hooks.emit(_finished(
                version, qualifier, request_id, err.init_duration_ms, billed_ms, 0, True,
                err.init_duration_ms, False, "init", err.error_type,
            ))
        if is_json(version.extra):
            text = render_json(
                config_of(version.extra, version.function_name),
                request_id,
                version.version,
                self.config.function_arn(version.function_name),
                b"",
                err.init_duration_ms,
                version.memory_size,
                0,
                err.init_duration_ms,
                err.logs,
                function_name=version.function_name,
                error_type=err.error_type,
                init_failed=True,
                billed_ms=billed_ms,
            )
        else:
            text = render(
                request_id,
                version.version,
                b"",
                err.init_duration_ms,
                version.memory_size,
                0,
                err.init_duration_ms,
                err.logs,
                billed_ms=billed_ms,
            )
        self.logs.append(
            InvocationLog(
                request_id=request_id,
                function_name=version.function_name,
                version=version.version,
                log_stream="",
                timestamp_ms=now_ms(),
                text=text,
                duration_ms=err.init_duration_ms,
                billed_ms=billed_ms,
                memory_size=version.memory_size,
                max_memory_used=0,
                init_ms=err.init_duration_ms,
                error_type=err.error_type,
            )
        )
        try:
            body = json.loads(err.payload)
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            # A provided runtime may post any body to /runtime/init/error: keep its text
            # in Lambda's error shape rather than fail the invocation.
            text_body = err.payload.decode("utf-8", "replace")
            body = {"errorMessage": text_body or err.error_message, "errorType": err.error_type}
        body.setdefault("requestId", request_id)
        body.setdefault("stackTrace", [])
        payload = json.dumps(body).encode()
        return InvokeResult(payload, "Unhandled", version.version, text, request_id)

    def _check_runnable(self, version: FunctionVersion) -> None:
        unknown = [layer.arn for layer in version.layers if not layer.code_sha256]
        if unknown:
            raise InvalidParameterValue(
                f"Function {version.function_name} lists layers attached before this nimbus "
                f"stored layers ({', '.join(unknown)}). Publish them with "
                "PublishLayerVersion and set the function's Layers again."
            )

    def _check_state(self, version: FunctionVersion, record: FunctionRecord) -> None:
        """Lambda invokes Active versions only. A SnapStart version left Pending with no
        template under way (the server stopped meanwhile) is prepared again now."""
        if version.state == "Active":
            return
        if (version.state == "Pending" and snapstart_on(version)
                and not self.snapshots.pending(version)):
            self.snapshots.prepare(version, record)
        raise not_ready(version.state)

    def _deployment(self, name: str, version: str) -> str | None:
        """The deployment (function, version) runs now; None if it is gone (blocking)."""
        try:
            return self.targets.functions.get_version(name, version).deployment
        except ResourceNotFound:
            return None

    async def ensure_code(self, version: FunctionVersion) -> None:
        """Bring the version's package and layers onto this node if another node of the
        cluster received them (store/code_share.py; nothing to do on one node)."""
        for sha in [version.code_sha256, *(layer.code_sha256 for layer in version.layers)]:
            if sha:
                await blocking(self.code.ensure, sha)

    def spec(self, version: FunctionVersion, record: FunctionRecord) -> EnvironmentSpec:
        stream_id = ids.hex_id(32)
        day = time.strftime("%Y/%m/%d", time.gmtime())
        logging = config_of(version.extra, version.function_name)
        network = record.tags.get(NETWORK_TAG, "").lower() != "none"
        return EnvironmentSpec(
            function_name=version.function_name,
            version=version.version,
            function_arn=self.config.function_arn(version.function_name),
            runtime=version.runtime or "",
            handler=version.handler or "",
            code_dir=self.code.tree_path(version.code_sha256),
            layer_dirs=[self.code.tree_path(layer.code_sha256) for layer in version.layers],
            memory_mb=version.memory_size,
            timeout_s=version.timeout,
            ephemeral_mb=version.ephemeral_storage,
            environment=dict(version.environment),
            network=network,
            network_allow=tuple(parse_rules(record.tags.get(egress_rules.TAG, ""), "tag",
                                            loopback=False)),
            region=self.config.region,
            log_group=logging.log_group,
            log_stream=f"{day}/[{version.version}]{stream_id}",
            log_format=logging.log_format,
            log_level=logging.application_level or "",
            snapstart=snapstart_applies(version)
            or (self.config.snapstart_all and snapstart_runtime(version.runtime)),
            # TracingConfig Active: the function's X-Ray SDK reaches nimbus's receiver on the
            # host's loopback (forwarded from an isolated environment; not from an empty
            # network namespace).
            xray_daemon=self.tracer.daemon_address()
            if network and is_active(version.extra) else "",
        )


def snapstart_applies(version: FunctionVersion) -> bool:
    """Lambda's rule: SnapStart (ApplyOn PublishedVersions) starts published versions
    from their snapshot, never $LATEST; nimbus does it for Python runtimes."""
    return snapstart_on(version)


def _finished(
    version: FunctionVersion,
    qualifier: str | None,
    request_id: str,
    duration_ms: float,
    billed_ms: int,
    max_memory_mb: int,
    cold: bool,
    init_ms: float | None,
    restored: bool,
    error: ErrorKind | None,
    error_type: str | None,
) -> InvocationFinished:
    # Positional: a NamedTuple built with keywords costs twice as much, on every invocation.
    return InvocationFinished(
        version.function_name, qualifier, version.version, request_id,
        version.architectures[0] if version.architectures else "x86_64",
        version.memory_size, duration_ms, billed_ms, max_memory_mb, cold, init_ms,
        restored, error, error_type,
    )


def _error_kind(error_type: str | None) -> ErrorKind:
    if error_type == "Sandbox.Timedout":
        return "timeout"
    if error_type == "Runtime.OutOfMemory":
        return "oom"
    return "function"


def _error_type(payload: bytes) -> str | None:
    try:
        return json.loads(payload).get("errorType")
    except (ValueError, AttributeError):
        return None
