"""What the control plane's handlers work with: the process's ``Engine`` and the stores
of everything else the Lambda and API Gateway APIs manage, built once at start-up by
the server and found by a handler through ``services(request)``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from nimbus.api.code_location import CodeSigner
from nimbus.config import Config
from nimbus.engine import Engine
from nimbus.gateway.limits import UsageGate
from nimbus.invocation.cluster_provisioner import ClusterProvisioner
from nimbus.invocation.provisioner import Provisioner
from nimbus.protocol.service import RequestContext
from nimbus.s3.store import S3Store
from nimbus.sigv4.credentials import Credentials, load_credentials
from nimbus.store.api_keys import ApiKeyStore
from nimbus.store.env_cipher import shared_database
from nimbus.store.function_urls import FunctionUrlStore
from nimbus.store.http_apis import HttpApiStore
from nimbus.store.layers import LayerStore
from nimbus.store.policies import PolicyStore
from nimbus.store.provisioned import ProvisionedStore
from nimbus.store.provisioned_slots import ProvisionedSlots
from nimbus.store.schedules import ScheduleStore


@dataclass
class Services:
    config: Config
    engine: Engine  # functions, aliases, code, logs, invoker, dispatcher, queue...
    signer: CodeSigner
    provisioned: ProvisionedStore
    provisioner: Provisioner
    function_urls: FunctionUrlStore
    http_apis: HttpApiStore
    api_keys: ApiKeyStore
    policies: PolicyStore  # resource-based policies: stored and reported, not enforced
    layers: LayerStore
    credentials: Credentials  # what SigV4-signed requests are checked against
    usage_gate: UsageGate  # rate limits, API keys and quotas of HTTP triggers
    schedules: ScheduleStore  # EventBridge Scheduler's schedules and groups
    s3: S3Store  # S3-compatible buckets (api/s3.py)
    # Where else events are dispatched (the async workers, through the queue server).
    remote_counters: Callable[[], Mapping[str, int]] | None = field(default=None)

    @classmethod
    def open(cls, config: Config, engine: Engine) -> Services:
        """The control plane's stores over the engine's database (blocking)."""
        functions, db = engine.functions, engine.db
        provisioned = ProvisionedStore(functions)
        api_keys = ApiKeyStore(db)
        return cls(
            config=config,
            engine=engine,
            signer=CodeSigner(config.data_dir / "code-signing.key",
                              functions.cipher.derive("code links")
                              if shared_database(config) and functions.cipher else None),
            provisioned=provisioned,
            provisioner=(ClusterProvisioner(provisioned, engine.invoker,
                                            ProvisionedSlots(db.url, config.role))
                         if config.cluster else Provisioner(provisioned, engine.invoker)),
            function_urls=FunctionUrlStore(functions),
            http_apis=HttpApiStore(db, config.account_id),
            api_keys=api_keys,
            policies=PolicyStore(functions),
            layers=LayerStore(db, f"arn:aws:lambda:{config.region}:{config.account_id}:layer:"),
            credentials=load_credentials(config),
            usage_gate=UsageGate(api_keys, config),
            schedules=ScheduleStore(db),
            s3=S3Store.open(db, config.data_dir, config.region),
        )

    def dispatcher_counters(self) -> dict[str, int]:
        """The dispatcher counters since start, wherever the dispatching happens."""
        counters = Counter(self.engine.dispatcher.counters)
        if self.remote_counters is not None:
            counters.update(self.remote_counters())
        return dict(counters)


def services(request: Request) -> Services:
    """The running server's services, for a Starlette handler."""
    return services_of(request.scope)


def services_of_context(ctx: RequestContext) -> Services:
    """The running server's services, for a handler of an AWS service (``nimbus.protocol``)."""
    found: Services = ctx.state
    return found


def services_of(scope: Any) -> Services:
    """The running server's services, from an ASGI scope the server has routed."""
    found: Services = scope["app"].state.services
    return found
