"""One typed configuration for nimbus.

Values come, lowest precedence first, from the embedded defaults, a TOML file
(``--config`` or ``NIMBUS_CONFIG``), ``NIMBUS_*`` environment variables, and command-line
flags. The defaults run everything on one machine with nothing but Python.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from nimbus.egress_rules import parse_rules
from nimbus.net_policy import parse_allowance, split_entries

PARALLELISM_PER_CPU = 8


def default_async_parallelism() -> int:
    """Eight async events in flight per usable CPU. Beyond that, CPU-light functions
    only queue for the CPU in more processes (each sandbox costs more per event: 102 vs
    62 us at 64 vs 8 in flight on a 2-core host). In 7 interleaved bench/async.py pairs
    there, 16 in flight executed 0.91-1.49x (median 1.12x) the events/s of 64, and
    accepted 1.2-2.2x as many. Functions that mostly wait on I/O want more: set
    async_parallelism."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return PARALLELISM_PER_CPU * max(1, cpus)


class PriceTier(BaseModel):
    """From ``above_gb_seconds`` GB-seconds a month on, each GB-second costs ``gb_second``."""

    above_gb_seconds: float = Field(ge=0)
    gb_second: float = Field(ge=0)

    model_config = {"extra": "forbid"}


class ArchitecturePrices(BaseModel):
    """What Lambda charges for one architecture: per request and per GB-second (the
    first tier's price in ``gb_second``, cheaper tiers by monthly volume after it)."""

    request: float = Field(ge=0)
    gb_second: float = Field(ge=0)
    tiers: list[PriceTier] = Field(default_factory=list)

    model_config = {"extra": "forbid"}

    @field_validator("tiers")
    @classmethod
    def _ascending(cls, tiers: list[PriceTier]) -> list[PriceTier]:
        starts = [t.above_gb_seconds for t in tiers]
        if starts != sorted(starts) or len(set(starts)) != len(starts) or 0 in starts:
            raise ValueError("tiers must have distinct, ascending above_gb_seconds above 0")
        return tiers


class Pricing(BaseModel):
    """The price table nimbus's cost figures use (``[pricing.x86_64]``, ``[pricing.arm64]``
    in the TOML file). Defaults: Lambda's public on-demand prices in us-east-1 as
    published in 2024 (tiers since 2022), without the free tier: $0.20 per million
    requests; x86_64 $0.0000166667 per GB-second for the first 6 billion GB-seconds a
    month, $0.000015 for the next 9 billion, $0.0000133334 beyond 15 billion; arm64
    $0.0000133334 for the first 7.5 billion, $0.0000120001 for the next 11.25 billion,
    $0.0000106667 beyond 18.75 billion."""

    currency: str = "USD"
    x86_64: ArchitecturePrices = ArchitecturePrices(
        request=0.0000002,
        gb_second=0.0000166667,
        tiers=[
            PriceTier(above_gb_seconds=6e9, gb_second=0.000015),
            PriceTier(above_gb_seconds=15e9, gb_second=0.0000133334),
        ],
    )
    arm64: ArchitecturePrices = ArchitecturePrices(
        request=0.0000002,
        gb_second=0.0000133334,
        tiers=[
            PriceTier(above_gb_seconds=7.5e9, gb_second=0.0000120001),
            PriceTier(above_gb_seconds=18.75e9, gb_second=0.0000106667),
        ],
    )

    model_config = {"extra": "forbid"}


class ConfigError(Exception):
    """The configuration cannot be used; the message says which value and why."""


class Config(BaseModel):
    """Everything nimbus reads at start-up."""

    host: str = "127.0.0.1"
    port: int = Field(9000, ge=0, le=65535)
    data_dir: Path = Path(".nimbus")
    database_url: str | None = None  # None: SQLite under data_dir
    # The async queue: None is the embedded SQLite one (<data_dir>/queue.db);
    # "nats://host:4222[/STREAM]" is NATS JetStream (queue/backends/nats_jetstream.py).
    queue_url: str | None = None
    region: str = "us-east-1"
    account_id: str = Field("000000000000", pattern=r"^\d{12}$")
    log_level: str = Field("info", pattern=r"^(critical|error|warning|info|debug)$")
    # Account-wide concurrency, as Lambda's default quota; at least 100 stays unreserved.
    concurrency_limit: int = Field(1000, ge=1, le=1_000_000)  # < cluster_slots.MAX_SLOTS
    unreserved_minimum: int = Field(100, ge=0)
    # Lambda's quotas for deployment packages, in bytes.
    max_zip_size: int = 50 * 1024 * 1024
    max_unzipped_size: int = 250 * 1024 * 1024
    max_zip_entries: int = Field(20_000, ge=1)
    total_code_size: int = 75 * 1024 * 1024 * 1024
    # "namespace": real isolation (root, namespaces, cgroups). "process": no isolation,
    # for laptops without root; loudly logged, never chosen silently.
    isolation: str = Field("namespace", pattern=r"^(namespace|process)$")
    idle_seconds: float = Field(300.0, gt=0)  # warm environments idle longer are stopped
    # Sandboxes forked and half-confined ahead of time per runtime, so a cold start only
    # binds the code and imports the handler (0: fork from the zygote on demand).
    stem_cells: int = Field(2, ge=0)
    # After a burst of cold starts of one runtime, its pool holds as many cells as the
    # burst took, up to this (at least stem_cells), for 5 minutes.
    stem_cells_burst: int = Field(8, ge=0)
    # SnapStart for every Python 3.12+ function, $LATEST included (Lambda: published
    # versions that ask for it only). Each configuration's first cold start makes its
    # template (init runs there, once); later ones fork from it. Off by default: what a
    # function draws at init (random seeds aside) is shared by its environments, and each
    # template holds its function's memory while it lives.
    snapstart_all: bool = False
    # Each environment's /tmp. "disk" (as Lambda): a file system of its own of
    # EphemeralStorage size on the data dir's disk (loop devices), not counted against
    # MemorySize. "memory": a tmpfs, counted against MemorySize, for hosts without loop
    # devices; never chosen silently (without loop devices, "disk" refuses to run).
    tmp_storage: Literal["disk", "memory"] = "disk"
    # Async invocations: Lambda retries after 1 then 2 minutes (base * 2^n); tests shrink it.
    retry_base_seconds: float = Field(60.0, ge=0)
    throttle_delay_seconds: float = Field(1.0, ge=0)
    # Async events in flight at once, per dispatcher (each async worker, or the server).
    async_parallelism: int = Field(default_factory=default_async_parallelism, ge=1)
    async_visibility_seconds: float = Field(960.0, gt=0)  # > the 900 s maximum timeout
    # Processes that run async events (each with its own event loop and sandboxes) while
    # the server keeps HTTP, sync invokes and the queue; 0 dispatches in the server.
    async_workers: int = Field(1, ge=0, le=15)
    # The one key pair nimbus accepts for SigV4 (function URLs with AuthType AWS_IAM, and
    # the control plane with api_auth="sigv4"); unset: generated once into
    # <data_dir>/credentials.json. Set both or neither (see gateway/credentials.py).
    access_key_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_.+=@-]{1,128}$")
    secret_access_key: SecretStr | None = None
    # "sigv4": every control-plane request must be signed with those keys (boto3, AWS CLI
    # and the nimbus CLI sign); "none": anyone who can reach the port may call the API.
    api_auth: Literal["none", "sigv4"] = "none"
    # IAM users besides the admin pair, with their own keys and policies (iam/principals.py);
    # unset: <data_dir>/principals.json if it exists.
    principals_file: Path | None = None
    # The key environment variables are encrypted at rest with (store/env_cipher.py: 32
    # bytes, base64); unset: <data_dir>/env.key, generated. Nodes sharing a database share
    # it, so with PostgreSQL it must be set (nimbus refuses to start otherwise).
    env_key_file: Path | None = None
    # Allows api_auth = "none" on an address other than loopback (`nimbus up --insecure`):
    # otherwise anyone who can reach the port could call the API, so nimbus refuses.
    insecure: bool = False
    # Account-wide throttle of HTTP-trigger requests (token bucket: requests per second,
    # burst capacity), API Gateway's account defaults; stages and usage plans go lower.
    http_rate_limit: float = Field(10000.0, gt=0)
    http_burst_limit: int = Field(5000, ge=1)
    # Slow clients (server/http.py): a request's line and headers must arrive within
    # http_header_timeout seconds; a body that stops for http_body_timeout ends it.
    http_header_timeout: float = Field(10.0, gt=0)
    http_body_timeout: float = Field(30.0, gt=0)
    # Invocation logs older than this are deleted (0: kept forever, CloudWatch's default;
    # on one machine's disk, unbounded logs end in a full disk).
    log_retention_days: float = Field(30.0, ge=0)
    # An OpenTelemetry collector's OTLP/HTTP base URL (http://localhost:4318): every
    # trace segment is also exported to <url>/v1/traces (observe/otlp_export.py). Unset:
    # OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT if set, else none.
    otlp_endpoint: str | None = Field(None, pattern=r"^https?://[^\s/]+(/\S*)?$")
    # What invocations would cost on Lambda (observe/cost.py): a [pricing] TOML table.
    pricing: Pricing = Field(default_factory=Pricing)
    # Where webhook destinations and SNS http(s) subscriptions may send besides public
    # internet addresses (nimbus/net_policy.py): CIDRs, address:port or host[:port]
    # entries, e.g. ["127.0.0.1:8080"] (NIMBUS_WEBHOOK_ALLOW: comma-separated). Loopback,
    # link-local, private and other non-public addresses are refused otherwise (SSRF).
    webhook_allow: list[str] = Field(default_factory=list)
    # Functions' network (sandbox/egress.py). "isolated": each environment has a network
    # namespace of its own, NATed to the outside; the host's addresses and non-public
    # networks are unreachable unless function_network_allow (NIMBUS_FUNCTION_NETWORK_ALLOW:
    # CIDR or ADDRESS:PORT entries, e.g. "127.0.0.1:8080 10.0.0.0/8") or a function's
    # nimbus:network-allow tag allows them. "host": functions share the host's network,
    # unisolated (a host without nftables, or on purpose).
    function_network: Literal["isolated", "host"] = "isolated"
    function_network_allow: list[str] = Field(default_factory=list)
    # One of several servers of one installation (`nimbus up --cluster`, NIMBUS_CLUSTER=1):
    # the account and reserved concurrency limits (store/cluster_slots.py) and HTTP
    # triggers' rate limits and usage plans' quotas (gateway/shared_allowance.py) are
    # counted across every server, in the shared PostgreSQL database, instead of by this
    # host alone. Needs a PostgreSQL database_url and a nats:// queue_url.
    cluster: bool = False
    # In a cluster: "server" (`nimbus up --cluster`) answers the APIs and, while worker
    # nodes announce themselves, sends invocations to them (cluster/placement.py);
    # "worker" (`nimbus worker`) runs the invocations servers send it, and async events.
    role: Literal["server", "worker"] = "server"
    # The URL the other nodes reach this one at (a worker's, announced with its
    # heartbeats); unset: http://host:port, which needs host to be a reachable address.
    advertise_url: str | None = Field(None, pattern=r"^https?://[^\s/]+/?$")
    # Several servers of one cluster on one host, on one port (`nimbus up --reuse-port`,
    # NIMBUS_REUSE_PORT=1): each binds it with SO_REUSEPORT and the kernel spreads new
    # connections over them, so the front door uses more than one core.
    reuse_port: bool = False

    model_config = {"extra": "forbid", "validate_default": True}

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @field_validator("queue_url")
    @classmethod
    def _queue_scheme(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(
                r"nats://[^\s/?]+(/[A-Za-z0-9_-]+)?/?(\?ack_wait=[0-9]+(\.[0-9]+)?)?", value):
            raise ValueError(
                f"unsupported queue URL {value!r}: use nats://host:port[/STREAM][?ack_wait=S] "
                "for NATS JetStream, or leave it unset for the embedded SQLite queue"
            )
        return value

    @field_validator("webhook_allow", mode="before")
    @classmethod
    def _allow_entries(cls, value: object) -> list[str]:
        # AllowEntryError (a ValueError) says what is wrong with an entry.
        return _entries(value, "CIDR, address:port or host[:port]",
                        lambda entries: [parse_allowance(entry) for entry in entries])

    @field_validator("function_network_allow", mode="before")
    @classmethod
    def _function_allow_entries(cls, value: object) -> list[str]:
        return _entries(value, "CIDR or ADDRESS:PORT",
                        lambda entries: parse_rules(entries, "function_network_allow"))

    @field_serializer("secret_access_key", when_used="json")
    def _reveal_secret(self, value: SecretStr | None) -> str | None:
        # JSON is how the supervisor hands the config to its workers (which inherit the
        # environment, secret included, anyway); repr and logs keep showing "**********".
        return value.get_secret_value() if value is not None else None

    @model_validator(mode="after")
    def _key_pair(self) -> Config:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError(
                "set both access_key_id and secret_access_key (NIMBUS_ACCESS_KEY_ID, "
                "NIMBUS_SECRET_ACCESS_KEY) or neither, to use the generated pair"
            )
        return self

    @model_validator(mode="after")
    def _cluster_needs_shared_state(self) -> Config:
        if self.cluster and not (self.database_url or "").startswith("postgresql"):
            raise ValueError(
                "cluster mode shares state through PostgreSQL: set database_url "
                "(NIMBUS_DATABASE_URL=postgresql://...) as well as NIMBUS_CLUSTER=1"
            )
        if self.role == "worker" and not self.cluster:
            raise ValueError("a worker node is part of a cluster: run `nimbus worker` "
                             "(it implies --cluster) with the cluster's settings")
        if self.cluster and self.api_auth == "sigv4" and self.access_key_id is None:
            raise ValueError(
                "the servers of a cluster sign what they send each other with the "
                "installation's key pair: set access_key_id and secret_access_key "
                "(NIMBUS_ACCESS_KEY_ID, NIMBUS_SECRET_ACCESS_KEY), the same on every node"
            )
        if self.cluster and self.queue_url is None:
            raise ValueError(
                "cluster mode shares the async queue through NATS JetStream: set queue_url "
                "(NIMBUS_QUEUE_URL=nats://host:4222/STREAM) as well as NIMBUS_CLUSTER=1"
            )
        if self.reuse_port and not self.cluster:
            raise ValueError(
                "reuse_port shares a port between servers of one cluster (each answers any "
                "request): without --cluster they would be separate installations behind "
                "one address; add --cluster (NIMBUS_CLUSTER=1) with its shared settings"
            )
        if self.reuse_port and self.role == "worker":
            raise ValueError("reuse_port is for servers: the servers reach each worker node "
                             "at an address of its own (give each its own --port)")
        return self

    def unprotected_bind(self) -> str | None:
        """Why serving on ``host`` would expose an API anyone can call (auth off on an
        address other than loopback, without ``insecure``), or None when it would not."""
        if self.api_auth != "none" or self.insecure or _loopback(self.host):
            return None
        return (
            f'refusing to listen on {self.host} with api_auth = "none": anyone who can '
            "reach that address could create, change and invoke functions and read their "
            "environment. Turn authentication on (NIMBUS_API_AUTH=sigv4, then `nimbus "
            "credentials` prints the keys clients sign with), listen on 127.0.0.1, or pass "
            "--insecure (NIMBUS_INSECURE=1) if the network is trusted."
        )

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "nimbus.db"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.sqlite_path}"

    @property
    def node_url(self) -> str:
        """Where the other nodes of a cluster reach this one."""
        if self.advertise_url:
            return self.advertise_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def function_arn(self, name: str, qualifier: str | None = None) -> str:
        arn = f"arn:aws:lambda:{self.region}:{self.account_id}:function:{name}"
        return f"{arn}:{qualifier}" if qualifier else arn


def _entries(value: object, kinds: str, check: Callable[[list[str]], object]) -> list[str]:
    """An allow-list setting: a list, or one string of entries separated by commas or
    whitespace (an environment variable); ``check`` raises on a bad entry."""
    if not isinstance(value, str | list | tuple):
        raise ValueError(f"expected a list of {kinds} entries")
    entries = split_entries(value)
    check(entries)
    return entries


ENV_PREFIX = "NIMBUS_"

# A full Lambda function ARN, as ``Config.function_arn`` builds them (a qualifier is a
# version, an alias or $LATEST): destinations and integrations name functions this way.
FUNCTION_ARN = re.compile(
    r"arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):function:"
    r"(?P<name>[a-zA-Z0-9_-]{1,64})(?::(?P<qualifier>\$LATEST|[a-zA-Z0-9_-]{1,128}))?"
)


def _loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback one (a name is resolved)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, None)
    except OSError:
        return False  # cannot tell: treat as exposed
    return bool(found) and all(
        ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]).is_loopback for info in found
    )


def load_config(file: Path | None = None, **flags: Any) -> Config:
    """Build the Config from file, environment and flags (``None`` flags are ignored)."""
    values: dict[str, Any] = {}
    file = file or (Path(os.environ["NIMBUS_CONFIG"]) if os.environ.get("NIMBUS_CONFIG") else None)
    if file is not None:
        try:
            values.update(tomllib.loads(file.read_text()))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {file}: {exc}") from exc
    for name in Config.model_fields:
        env = os.environ.get(ENV_PREFIX + name.upper())
        if env is not None and env != "":
            values[name] = env
    values.update({k: v for k, v in flags.items() if v is not None})
    try:
        return Config(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from exc
