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
