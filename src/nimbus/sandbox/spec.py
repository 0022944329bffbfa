"""What the execution layer is asked to run: an environment's spec, an invocation,
and what came out of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nimbus.egress_rules import Rule

NOFILE = 1024  # Lambda's file descriptor limit: what every environment may open


@dataclass(frozen=True)
class EnvironmentSpec:
    """One function version's execution environment, as Lambda configures it."""

    function_name: str
    version: str
    function_arn: str  # unqualified
    runtime: str  # "python3.12", "provided.al2023", ... (nimbus.sandbox.catalog)
    handler: str  # "app.handler"; the module may be a path, "pkg/mod.fn"
    code_dir: Path  # extracted package: world-readable, mounted read-only at /var/task
    layer_dirs: list[Path] = field(default_factory=list)  # /opt; later layers win
    memory_mb: int = 128
    timeout_s: int = 3
    ephemeral_mb: int = 512  # size of the private /tmp
    environment: dict[str, str] = field(default_factory=dict)
    network: bool = True  # False: an empty network namespace with only lo
    network_allow: tuple[Rule, ...] = ()  # the tag nimbus:network-allow (sandbox/egress.py)
    region: str = "us-east-1"
    log_group: str = ""  # default /aws/lambda/<function_name>
    log_stream: str = ""  # default YYYY/MM/DD/[<version>]<hex>
    log_format: str = "Text"  # LoggingConfig.LogFormat: "JSON" sets AWS_LAMBDA_LOG_FORMAT
    log_level: str = ""  # LoggingConfig.ApplicationLogLevel (JSON): AWS_LAMBDA_LOG_LEVEL
    snapstart: bool = False  # start from the version's initialised template (SnapStart)
    xray_daemon: str = ""  # TracingConfig Active: "host:port" of nimbus's X-Ray receiver


@dataclass
class Invocation:
    request_id: str
    payload: bytes
    deadline_ms: int  # epoch milliseconds
    invoked_function_arn: str
    trace_id: str | None = None
    client_context: str | None = None  # raw JSON, as Lambda-Runtime-Client-Context
    cognito_identity: str | None = None  # raw JSON


@dataclass
class Outcome:
    payload: bytes  # the result, or Lambda's error JSON
    function_error: str | None  # None on success, "Unhandled" on error
    logs: bytes  # stdout+stderr written during this invocation only
    duration_ms: float
    max_memory_used_mb: int
    reusable: bool  # False after timeout, OOM or crash: discard the environment
