"""Invocation: qualifier resolution, admission, and the synchronous run.

The invoker is where an invocation's pieces meet: ``Targets`` says which version runs,
``ConcurrencyLimiter`` admits it (or 429), ``Pool`` finds or starts an environment,
and the outcome is turned into a Lambda response plus a log record.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from nimbus import ids
from nimbus.clock import now_ms
from nimbus.config import Config
from nimbus.errors import InvalidParameterValue
from nimbus.invocation.concurrency import ConcurrencyLimiter
from nimbus.invocation.pool import Pool, PoolKey
from nimbus.invocation.snapstart import Snapshots, not_ready
from nimbus.invocation.targets import Targets
from nimbus.models import FunctionRecord, FunctionVersion
from nimbus.observe.log_config import config_of, is_json
from nimbus.observe.logs import InvocationLog, LogStore, billed, render, render_json, tail
from nimbus.sandbox import EnvironmentSpec, InitError, Invocation
from nimbus.store.code import CodeStore
from nimbus.store.functions import snapstart_on

NETWORK_TAG = "nimbus:network"  # "none": the function runs with no network at all


@dataclass
class InvokeResult:
    payload: bytes
    function_error: str | None
    executed_version: str
    log_text: str  # the invocation's log, START to REPORT
    request_id: str

    @property
    def log_tail(self) -> bytes:
        """What LogType=Tail returns (only computed when asked for)."""
        return tail(self.log_text)


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
    ) -> None:
        self.config = config
        self.targets = targets
        self.code = code
        self.pool = pool
        self.logs = logs
        self.limiter = limiter
        # SnapStart: published versions' templates, made at PublishVersion.
        self.snapshots = Snapshots(targets.functions, pool.manager, self.spec)

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
    ) -> InvokeResult:
        resolution = await self.targets.resolve(name, qualifier)
        version = resolution.pick()
        self._check_runnable(version)
        self._check_state(version, resolution.record)
        record = resolution.record
        reserved_total = await self.targets.reserved_total()
        request_id = request_id or ids.request_id()
        invocation = Invocation(
            request_id=request_id,
            payload=payload,
            deadline_ms=0,  # the pool sets it once an environment is ready
            invoked_function_arn=self.config.function_arn(name, qualifier),
            trace_id=trace_id or ids.trace_id(),
            client_context=client_context,
        )
        key = PoolKey(name, version.version, version.deployment)
        ticket = self.limiter.admit(name, record.reserved_concurrency, reserved_total)
        try:
            ran = await self.pool.run(key, lambda: self.spec(version, record), invocation)
        except InitError as err:
            return self._init_failed(err, version, request_id)
        finally:
            self.limiter.release(ticket)
        outcome = ran.outcome
        error_type = _error_type(outcome.payload) if outcome.function_error else None
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
                billed_ms=billed(outcome.duration_ms),
                memory_size=version.memory_size,
                max_memory_used=outcome.max_memory_used_mb,
                init_ms=ran.init_ms,
                error_type=error_type,
            )
        )
        return InvokeResult(
            outcome.payload, outcome.function_error, version.version, text, request_id
        )

    def _init_failed(
        self, err: InitError, version: FunctionVersion, request_id: str
    ) -> InvokeResult:
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
                billed_ms=billed(err.init_duration_ms),
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

    def spec(self, version: FunctionVersion, record: FunctionRecord) -> EnvironmentSpec:
        stream_id = ids.hex_id(32)
        day = time.strftime("%Y/%m/%d", time.gmtime())
        logging = config_of(version.extra, version.function_name)
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
            network=record.tags.get(NETWORK_TAG, "").lower() != "none",
            region=self.config.region,
            log_group=logging.log_group,
            log_stream=f"{day}/[{version.version}]{stream_id}",
            log_format=logging.log_format,
            log_level=logging.application_level or "",
            snapstart=snapstart_applies(version),
        )


def snapstart_applies(version: FunctionVersion) -> bool:
    """Lambda's rule: SnapStart (ApplyOn PublishedVersions) starts published versions
    from their snapshot, never $LATEST; nimbus does it for Python runtimes."""
    return snapstart_on(version)


def _error_type(payload: bytes) -> str | None:
    try:
        return json.loads(payload).get("errorType")
    except (ValueError, AttributeError):
        return None
