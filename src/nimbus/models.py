"""Records that cross a boundary between the API, the store and (later) the invoker."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

LATEST = "$LATEST"
# Lambda's invocation payload quotas (request and response), in bytes.
MAX_SYNC_PAYLOAD = 6 * 1024 * 1024
MAX_ASYNC_PAYLOAD = 256 * 1024
# A function's name as Lambda allows it (no ARN, no qualifier): it also names folders.
FUNCTION_NAME_PATTERN = r"[a-zA-Z0-9-_]{1,64}"

# Settings Lambda accepts and reports back but nimbus stores without interpreting yet
# (LoggingConfig is interpreted: nimbus.api.logging_config, nimbus.observe.log_config).
PASSTHROUGH_SETTINGS = (
    "TracingConfig",
    "DeadLetterConfig",
    "VpcConfig",
    "KMSKeyArn",
    "SnapStart",
    "FileSystemConfigs",
    "ImageConfig",
)


@dataclass(frozen=True)
class LayerRef:
    """A layer version a function uses, with the content it had when it was attached:
    as on Lambda, deleting the layer version later does not take it from the function."""

    arn: str
    code_sha256: str = ""  # "": attached before nimbus stored layers (cannot run)
    code_size: int = 0
    unzipped_size: int = 0

    @classmethod
    def stored(cls, value: Any) -> LayerRef:
        """From the store's JSON (an ARN alone in rows written before layers existed)."""
        if isinstance(value, str):
            return cls(value)
        return cls(
            value["arn"],
            value.get("code_sha256", ""),
            value.get("code_size", 0),
            value.get("unzipped_size", 0),
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
    layers: list[LayerRef] = field(default_factory=list)
    state: str = "Active"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.layers = [LayerRef.stored(x) if not isinstance(x, LayerRef) else x
                       for x in self.layers]

    def replace(self, **changes: Any) -> FunctionVersion:
        return dataclasses.replace(self, **changes)

    @functools.cached_property
    def deployment(self) -> str:
        """What this version's environments are built from, as a digest of every setting
        but the RevisionId and the time of the change: warm environments are kept while
        it stays the same (publishing gives $LATEST a new RevisionId, not new code) and
        retired when it changes."""
        values = dataclasses.asdict(self)
        del values["revision_id"], values["last_modified"]
        encoded = json.dumps(values, sort_keys=True, default=str).encode()
        return hashlib.sha256(encoded).hexdigest()[:32]


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


@dataclass
class FunctionUrlConfig:
    """A function URL: an HTTP endpoint, ``/lambda-url/{url_id}/``, for the unqualified
    function ($LATEST) or one of its aliases."""

    function_name: str
    qualifier: str  # "$LATEST" (unqualified) or an alias name, never a version
    url_id: str  # 32 lowercase letters and digits, unique across all functions
    auth_type: str  # "NONE" or "AWS_IAM"
    cors: dict[str, Any] | None  # Lambda's Cors structure as the client gave it
    invoke_mode: str  # "BUFFERED" (the only mode nimbus serves)
    creation_time: str  # Lambda's timestamp format, 2024-01-31T12:00:00.000+0000
    last_modified: str


@dataclass
class HttpApi:
    """An HTTP API (API Gateway v2, protocol HTTP): routes to Lambda integrations."""

    api_id: str  # 10 lowercase letters and digits, as AWS's
    name: str
    created_date: str  # ISO 8601, UTC
    protocol_type: str = "HTTP"
    description: str | None = None
    route_selection_expression: str = "${request.method} ${request.path}"
    api_key_selection_expression: str = "$request.header.x-api-key"
    cors: dict[str, Any] | None = None  # CorsConfiguration as on the wire (camelCase keys)
    disable_execute_api_endpoint: bool = False
    ip_address_type: str = "ipv4"
    version: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class ApiIntegration:
    """An AWS_PROXY integration of an HTTP API: invokes one Lambda function."""

    api_id: str
    integration_id: str  # 7 lowercase letters and digits
    integration_uri: str  # as the client gave it: a function ARN or an apigateway URI
    function_name: str  # parsed from the URI
    qualifier: str | None  # a version or an alias; None: $LATEST
    integration_type: str = "AWS_PROXY"
    payload_format_version: str = "2.0"
    timeout_ms: int = 30000
    description: str | None = None
    integration_method: str = "POST"
    connection_type: str = "INTERNET"
    api_gateway_managed: bool = False  # created by quick create


@dataclass
class ApiRoute:
    """A route of an HTTP API: ``$default`` or ``METHOD /path`` to an integration."""

    api_id: str
    route_id: str  # 7 lowercase letters and digits
    route_key: str
    target: str | None = None  # "integrations/{integrationId}"
    api_key_required: bool = False
    authorization_type: str = "NONE"  # "NONE" or "AWS_IAM"
    operation_name: str | None = None
    api_gateway_managed: bool = False

    @property
    def integration_id(self) -> str | None:
        if self.target is None:
            return None
        return self.target.removeprefix("integrations/")


@dataclass
class RouteSettings:
    """Per-route settings of a stage; nimbus acts on the throttling limits."""

    throttling_burst_limit: int | None = None
    throttling_rate_limit: float | None = None
    detailed_metrics_enabled: bool | None = None
    data_trace_enabled: bool | None = None
    logging_level: str | None = None


@dataclass
class ApiStage:
    """A stage of an HTTP API. nimbus has no deployments: every route is live on every
    stage as soon as it is written."""

    api_id: str
    stage_name: str  # "$default" or [A-Za-z0-9_-]{1,128}
    created_date: str
    last_updated_date: str
    auto_deploy: bool = False
    description: str | None = None
    stage_variables: dict[str, str] = field(default_factory=dict)
    default_route_settings: RouteSettings = field(default_factory=RouteSettings)
    route_settings: dict[str, RouteSettings] = field(default_factory=dict)  # by route key
    tags: dict[str, str] = field(default_factory=dict)
    api_gateway_managed: bool = False

    def throttling(self, route_key: str) -> tuple[int | None, float | None]:
        """(burst, rate per second) for a route: its own settings, else the stage's
        defaults; None where neither sets a limit."""
        own = self.route_settings.get(route_key, RouteSettings())
        default = self.default_route_settings
        burst = own.throttling_burst_limit
        rate = own.throttling_rate_limit
        return (
            default.throttling_burst_limit if burst is None else burst,
            default.throttling_rate_limit if rate is None else rate,
        )


@dataclass
class HttpApiDefinition:
    """Everything the data plane needs to serve one HTTP API, read together."""

    api: HttpApi
    routes: list[ApiRoute]
    integrations: list[ApiIntegration]
    stages: list[ApiStage]


@dataclass
class ApiKey:
    """An API key (API Gateway v1 ``ApiKey``): callers send ``value`` in ``x-api-key`` to
    routes that require a key; its usage plans throttle and meter them."""

    id: str  # 10 lowercase letters and digits, as AWS's
    value: str  # the secret; at least 20 characters
    enabled: bool
    created_date: float  # epoch seconds, as API Gateway's timestamps on the wire
    last_updated_date: float
    name: str | None = None
    description: str | None = None
    customer_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class UsagePlanStage:
    """A stage of an HTTP API that a usage plan applies to."""

    api_id: str
    stage: str


@dataclass
class UsagePlan:
    """Per-key throttling (token bucket: ``rate_limit``/s, ``burst_limit`` capacity) and
    quota (``quota_limit`` requests per DAY/WEEK/MONTH) for the API stages it lists."""

    id: str  # 6 lowercase letters and digits
    name: str
    description: str | None = None
    api_stages: list[UsagePlanStage] = field(default_factory=list)
    rate_limit: float | None = None
    burst_limit: int | None = None
    quota_limit: int | None = None
    quota_period: str | None = None  # "DAY", "WEEK" or "MONTH"
    quota_offset: int = 0  # the day a period starts: WEEK 0 = Sunday; MONTH 0 = the 1st
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class ApiKeyIndex:
    """Everything the usage gate needs in memory, read from the store in one go."""

    keys_by_value: dict[str, ApiKey]
    plans: dict[str, UsagePlan]
    # (key id, api id, stage) -> the one plan that meters that key on that stage
    plan_for: dict[tuple[str, str, str], str]
    # (key id, plan id) -> {UTC day (ISO date): requests} for the last ~5 weeks
    usage: dict[tuple[str, str], dict[str, int]]


@dataclass
class FunctionPolicy:
    """A resource-based policy: the statements AddPermission added to the unqualified
    function ($LATEST), a version or an alias. Stored and reported, not enforced."""

    function_name: str
    qualifier: str  # "$LATEST" (unqualified), a version number or an alias name
    statements: list[dict[str, Any]]  # Lambda's statement objects, in the order added
    revision_id: str  # new on every AddPermission/RemovePermission


@dataclass
class LayerVersion:
    """One published version of a layer: an immutable zip with some metadata."""

    layer_name: str
    version: int
    code_sha256: str  # hex digest of the zip
    code_size: int
    unzipped_size: int
    created_date: str
    description: str = ""
    compatible_runtimes: list[str] = field(default_factory=list)
    compatible_architectures: list[str] = field(default_factory=list)
    license_info: str | None = None
    statements: list[dict[str, Any]] = field(default_factory=list)  # its policy
    policy_revision: str | None = None
