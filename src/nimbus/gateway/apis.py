"""HTTP APIs: ``/execute-api/<api-id>/[<stage>/]...`` (or ``Host: <api-id>.execute-api.*``).

A request is matched to a stage and route (``routes.RouteTable``), gets CORS preflights
answered by the API when it has a CORS configuration, is authorised (``AWS_IAM`` routes
need a SigV4 signature for service ``execute-api``), passes the API key / usage plan /
throttling checks (``limits.UsageGate``) and invokes the route's integration within its
timeout, with the event of its payload format version: 2.0 (``event.build_event``, the
result mapped by ``reply.reply_from_result``) or 1.0 (``event.build_event_v1``,
``reply.reply_from_result_v1``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from starlette.types import Scope

from nimbus import codec
from nimbus.config import Config
from nimbus.errors import GatewayForbidden, GatewayThrottled, NimbusError, TooManyRequests
from nimbus.gateway.cors import Cors
from nimbus.gateway.event import HttpRequest, Trigger, build_event, build_event_v1
from nimbus.gateway.invocation import HttpTrigger, _within, error_reply, invoke
from nimbus.gateway.limits import UsageGate
from nimbus.gateway.reply import (
    HTTP_API_CONTENT_TYPE,
    HttpReply,
    InvalidFunctionResponse,
    forbidden_reply,
    function_error_reply,
    plain_reply,
    reply_from_result_v1,
    throttled_reply,
    too_large_reply,
)
from nimbus.gateway.reply import not_found_reply as not_found
from nimbus.gateway.routes import RouteMatch, RouteTable
from nimbus.invocation.cache import Cache
from nimbus.invocation.invoker import Invoker
from nimbus.models import MAX_SYNC_PAYLOAD, ApiIntegration, HttpApiDefinition
from nimbus.sigv4.credentials import Credentials
from nimbus.store.http_apis import HttpApiStore

log = logging.getLogger("nimbus.gateway")


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
            self.gate.admit(
                api_id=table.api.api_id,
                stage=stage.stage_name,
                api_key=request.header("x-api-key"),
                key_required=route.api_key_required,
                stage_rate=rate,
                stage_burst=burst,
                route_key=route.route_key,
            )
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
        if integration.payload_format_version == "1.0":
            return await self._invoke_v1(integration, build_event_v1(request, trigger), request)
        return await invoke(
            self.invoker,
            integration.function_name,
            integration.qualifier,
            build_event(request, trigger),
            request,
            function_url=False,
            content_type=HTTP_API_CONTENT_TYPE,
            timeout_s=integration.timeout_ms / 1000,
        )


    async def _invoke_v1(
        self, integration: ApiIntegration, event: dict[str, Any], request: HttpRequest
    ) -> HttpReply:
        """``invocation.invoke`` for payload format 1.0, whose results map differently.

        The same steps and answers: 413 over 6 MB, 504 past the integration's timeout,
        429 when throttled, 500 when the function fails or its response is malformed."""
        payload = codec.dumps(event)
        if len(payload) > MAX_SYNC_PAYLOAD:
            return too_large_reply()
        function = integration.function_name
        call = self.invoker.invoke(
            function,
            integration.qualifier,
            payload,
            trace_id=request.trace_id,
            request_id=request.request_id,
        )
        try:
            result = await _within(call, integration.timeout_ms / 1000)
        except TooManyRequests:
            return throttled_reply(1)
        except NimbusError as exc:
            log.info("%s could not be invoked over HTTP: %s", function, exc.message)
            return error_reply(exc)
        if result is None:
            return plain_reply(504, "Endpoint request timed out", "IntegrationTimeoutException")
        if result.function_error:
            return function_error_reply(function_url=False)
        try:
            return reply_from_result_v1(result.payload)
        except InvalidFunctionResponse as exc:
            log.info("%s returned a response payload format 1.0 cannot carry: %s", function, exc)
            return function_error_reply(function_url=False)


def _api(definition: HttpApiDefinition | None) -> _Api | None:
    if definition is None:
        return None
    return _Api(RouteTable(definition), Cors.from_config(definition.api.cors))
