"""HTTP APIs: ``/execute-api/<api-id>/[<stage>/]...`` (or ``Host: <api-id>.execute-api.*``).

A request is matched to a stage and route (``routes.RouteTable``), gets CORS preflights
answered by the API when it has a CORS configuration, is authorised (``AWS_IAM`` routes
need a SigV4 signature for service ``execute-api``), passes the API key / usage plan /
throttling checks (``limits.UsageGate``) and invokes the route's integration within its
timeout, with the event of its payload format version: 2.0 (``event.build_event``, the
result mapped by ``reply.reply_from_result``) or 1.0 (``event.build_event_v1``,
``reply.reply_from_result_v1``); both through ``invocation.invoke``, which records the
stage's trace segment and passes the trace on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.types import Scope

from nimbus.config import Config
from nimbus.errors import GatewayForbidden, GatewayThrottled
from nimbus.gateway.cors import Cors
from nimbus.gateway.event import HttpRequest, Trigger, build_event, build_event_v1
from nimbus.gateway.invocation import HttpTrigger, error_reply, invoke
from nimbus.gateway.limits import UsageGate
from nimbus.gateway.reply import (
    HTTP_API_CONTENT_TYPE,
    HttpReply,
    forbidden_reply,
    reply_from_result_v1,
)
from nimbus.gateway.reply import not_found_reply as not_found
from nimbus.gateway.routes import RouteMatch, RouteTable
from nimbus.invocation.cache import Cache
from nimbus.invocation.invoker import Invoker
from nimbus.models import HttpApiDefinition
from nimbus.sigv4.credentials import Credentials
from nimbus.store.http_apis import HttpApiStore


@dataclass(frozen=True)
class _Api:
    table: RouteTable
    cors: Cors | None


class HttpApis(HttpTrigger):
    """Serves every HTTP API of this nimbus."""

    service = "execute-api"
    domain_suffix = "execute-api.{region}.amazonaws.com"

    def __init__(
        self,
        store: HttpApiStore,
        invoker: Invoker,
        gate: UsageGate,
        credentials: Credentials,
        config: Config,
    ) -> None:
        super().__init__(invoker, gate, credentials, config)
        self._apis: Cache[str, _Api | None] = Cache(
            lambda api_id: _api(store.definition(api_id)), lambda: store.generation
        )
        store.on_change(lambda api_id: self._apis.drop(lambda k, _: k == api_id))

    def cached_ids(self) -> list[str]:
        """The APIs whose route tables are cached here."""
        return self._apis.held_keys()

    async def serve(self, api_id: str, request: HttpRequest, scope: Scope) -> HttpReply:
        api = await self._apis.get(api_id)
        if api is None or api.table.api.disable_execute_api_endpoint:
            return not_found()
        table = api.table
        return await self.with_cors(api.cors, request, lambda: self._route(table, request, scope))

    async def _route(
        self, table: RouteTable, request: HttpRequest, scope: Scope
    ) -> HttpReply:
        match = table.match(request.method, request.raw_path)
        if match is None or match.integration is None:
            return not_found()
        route, stage = match.route, match.stage
        authorizer = None
        if route.authorization_type == "AWS_IAM":
            caller = self.caller(request, scope)
            if caller is None:
                return forbidden_reply()
            authorizer = {"iam": caller.iam_authorizer()}
        burst, rate = stage.throttling(route.route_key)
        try:
            lease = self.gate.admit(
                api_id=table.api.api_id,
                stage=stage.stage_name,
                api_key=request.header("x-api-key"),
                key_required=route.api_key_required,
                stage_rate=rate,
                stage_burst=burst,
                route_key=route.route_key,
            )
            if lease is not None:  # cluster mode: shared tokens to wait for
                await lease
        except (GatewayForbidden, GatewayThrottled) as exc:
            return error_reply(exc)
        return await self._invoke(table, match, request, authorizer)

    async def _invoke(
        self,
        table: RouteTable,
        match: RouteMatch,
        request: HttpRequest,
        authorizer: dict[str, Any] | None,
    ) -> HttpReply:
        integration = match.integration
        assert integration is not None
        trigger = Trigger(
            api_id=table.api.api_id,
            domain_name=self.domain(request, table.api.api_id),
            account_id=self.config.account_id,
            route_key=match.route.route_key,
            stage=match.stage.stage_name,
            path_parameters=match.path_parameters,
            stage_variables=match.stage.stage_variables or None,
            authorizer=authorizer,
        )
        v1 = integration.payload_format_version == "1.0"
        return await invoke(
            self.invoker,
            integration.function_name,
            integration.qualifier,
            (build_event_v1 if v1 else build_event)(request, trigger),
            request,
            function_url=False,
            content_type=HTTP_API_CONTENT_TYPE,
            timeout_s=integration.timeout_ms / 1000,
            result_reply=reply_from_result_v1 if v1 else None,
        )


def _api(definition: HttpApiDefinition | None) -> _Api | None:
    if definition is None:
        return None
    return _Api(RouteTable(definition), Cors.from_config(definition.api.cors))
