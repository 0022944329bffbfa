"""Function URLs: ``/lambda-url/<url-id>/...`` (or ``Host: <url-id>.lambda-url.*``).

A request finds its config by URL id, gets CORS preflights answered without invoking
the function, passes the account-wide rate limit, and for ``AuthType: AWS_IAM`` must
carry a valid SigV4 signature (service ``lambda``) over the path as the client sent it.
The function gets Lambda's payload format 2.0 event; ``accountId`` is ``anonymous``
for ``NONE``, as on Lambda.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import Scope

from nimbus.config import Config
from nimbus.errors import GatewayThrottled
from nimbus.gateway.cors import Cors
from nimbus.gateway.event import HttpRequest, Trigger, build_event
from nimbus.gateway.invocation import HttpTrigger, error_reply, invoke
from nimbus.gateway.limits import UsageGate
from nimbus.gateway.reply import FUNCTION_URL_CONTENT_TYPE, HttpReply, forbidden_reply
from nimbus.gateway.reply import not_found_reply as not_found
from nimbus.invocation.cache import Cache
from nimbus.invocation.invoker import Invoker
from nimbus.models import LATEST, FunctionUrlConfig
from nimbus.sigv4.credentials import Credentials
from nimbus.store.function_urls import FunctionUrlStore


@dataclass(frozen=True)
class _Url:
    config: FunctionUrlConfig
    cors: Cors | None


class FunctionUrls(HttpTrigger):
    """Serves every function URL of this nimbus."""

    service = "lambda"
    domain_suffix = "lambda-url.{region}.on.aws"

    def __init__(
        self,
        store: FunctionUrlStore,
        invoker: Invoker,
        gate: UsageGate,
        credentials: Credentials,
        config: Config,
    ) -> None:
        super().__init__(invoker, gate, credentials, config)
        self._urls: Cache[str, _Url | None] = Cache(
            lambda url_id: _url(store.get_by_url_id(url_id)), lambda: store.generation
        )
        store.on_change(
            lambda name: self._urls.drop(lambda _, u: u is None or u.config.function_name == name)
        )

    async def serve(self, url_id: str, request: HttpRequest, scope: Scope) -> HttpReply:
        url = await self._urls.get(url_id)
        if url is None:
            return not_found()
        config = url.config
        return await self.with_cors(url.cors, request, lambda: self._call(config, request, scope))

    async def _call(
        self, config: FunctionUrlConfig, request: HttpRequest, scope: Scope
    ) -> HttpReply:
        try:
            self.gate.admit(api_id=None, stage=None, api_key=None, key_required=False)
        except GatewayThrottled as exc:
            return error_reply(exc)
        account, authorizer = "anonymous", None
        if config.auth_type == "AWS_IAM":
            caller = self.caller(request, scope)
            if caller is None:
                return forbidden_reply(function_url=True)
            account, authorizer = caller.account_id, {"iam": caller.iam_authorizer()}
        trigger = Trigger(
            api_id=config.url_id,
            domain_name=self.domain(request, config.url_id),
            account_id=account,
            authorizer=authorizer,
        )
        return await invoke(
            self.invoker,
            config.function_name,
            None if config.qualifier == LATEST else config.qualifier,
            build_event(request, trigger),
            request,
            function_url=True,
            content_type=FUNCTION_URL_CONTENT_TYPE,
        )


def _url(config: FunctionUrlConfig | None) -> _Url | None:
    return None if config is None else _Url(config, Cors.from_config(config.cors))
