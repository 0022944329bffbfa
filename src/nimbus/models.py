"""Records that cross a boundary between the API, the store and (later) the invoker."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

LATEST = "$LATEST"

# Settings Lambda accepts and reports back but nimbus stores without interpreting yet.
PASSTHROUGH_SETTINGS = (
    "TracingConfig",
    "DeadLetterConfig",
    "VpcConfig",
    "KMSKeyArn",
    "LoggingConfig",
    "SnapStart",
    "FileSystemConfigs",
    "ImageConfig",
)


@dataclass
class FunctionVersion:
    """One version of a function: ``$LATEST`` (mutable) or a published number (frozen)."""

    function_name: str
    version: str
    runtime: str | None
    handler: str | None
    role: str
    code_sha256: str  # hex digest of the zip
    code_size: int
    last_modified: str
    revision_id: str
    description: str = ""
    timeout: int = 3
    memory_size: int = 128
    ephemeral_storage: int = 512
    package_type: str = "Zip"
    architectures: list[str] = field(default_factory=lambda: ["x86_64"])
    environment: dict[str, str] = field(default_factory=dict)
    layers: list[str] = field(default_factory=list)
    state: str = "Active"
    extra: dict[str, Any] = field(default_factory=dict)

    def replace(self, **changes: Any) -> FunctionVersion:
        return dataclasses.replace(self, **changes)

    def same_deployment(self, other: FunctionVersion) -> bool:
        """True when publishing ``self`` after ``other`` would publish nothing new."""
        ignored = {"version", "last_modified", "revision_id", "description", "state"}
        mine = {k: v for k, v in dataclasses.asdict(self).items() if k not in ignored}
        theirs = {k: v for k, v in dataclasses.asdict(other).items() if k not in ignored}
        return mine == theirs


@dataclass
class FunctionRecord:
    """What belongs to the function as a whole rather than to one version."""

    name: str
    created_at: str
    last_published: int = 0
    reserved_concurrency: int | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class Alias:
    """A named pointer to a version, optionally splitting traffic with a second one."""

    function_name: str
    name: str
    function_version: str
    revision_id: str
    description: str = ""
    routing: dict[str, float] = field(default_factory=dict)


@dataclass
class Page:
    """One page of a listing, with the marker for the next one (None at the end)."""

    items: list[Any]
    next_marker: str | None


@dataclass
class EventInvokeConfig:
    """Async invocation settings for a function or one of its qualifiers."""

    function_name: str
    qualifier: str  # "$LATEST", a version number or an alias
    maximum_retry_attempts: int | None = None  # None: Lambda's default, 2
    maximum_event_age: int | None = None  # seconds; None: Lambda's default, 21600
    on_success: str | None = None  # function ARN or http(s) URL
    on_failure: str | None = None
    last_modified: float = 0.0

    @property
    def retries(self) -> int:
        return 2 if self.maximum_retry_attempts is None else self.maximum_retry_attempts

    @property
    def max_age_seconds(self) -> int:
        return 21600 if self.maximum_event_age is None else self.maximum_event_age


@dataclass
class DeadLetter:
    """An accepted event that could not be processed, kept with the reason."""

    queue: str
    function_name: str
    qualifier: str | None
    request_id: str
    payload: str
    condition: str  # RetriesExhausted, EventAgeExceeded, DestinationFailed, ...
    error: str | None
    attempts: int
    enqueued_ms: int
    failed_ms: int
    redriven_ms: int | None = None
    id: int | None = None


@dataclass
class ProvisionedConfig:
    function_name: str
    qualifier: str
    requested: int
    last_modified: str
