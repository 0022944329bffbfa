"""Function URLs: ``/lambda-url/<url-id>/...`` (or ``Host: <url-id>.lambda-url.*``).

A request finds its config by URL id, gets CORS preflights answered without invoking
the function, passes the account-wide rate limit, and for ``AuthType: AWS_IAM`` must
carry a valid SigV4 signature (service ``lambda``) over the path as the client sent it,
by the admin or by a principal allowed ``lambda:InvokeFunctionUrl`` on the function by
its identity policies or by the function's resource-based policy (AddPermission, with
``FunctionUrlAuthType=AWS_IAM``): anyone else gets 403 AccessDeniedException.
The function gets Lambda's payload format 2.0 event; ``accountId`` is ``anonymous``
for ``NONE``, as on Lambda.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import Scope

from nimbus.config import Config
from nimbus.errors import AccessDenied, GatewayThrottled, InvalidSignature, SignatureRejected
from nimbus.gateway.cors import Cors
from nimbus.gateway.event import HttpRequest, Trigger, build_event
from nimbus.gateway.invocation import HttpTrigger, error_reply, invoke
from nimbus.gateway.limits import UsageGate
from nimbus.gateway.reply import FUNCTION_URL_CONTENT_TYPE, HttpReply, forbidden_reply
from nimbus.gateway.reply import not_found_reply as not_found
from nimbus.iam.decision import Access, authorize
from nimbus.iam.policy import Policy, resource_policy_of
from nimbus.iam.principals import Principals
from nimbus.invocation.cache import Cache
from nimbus.invocation.invoker import Invoker
from nimbus.models import LATEST, FunctionUrlConfig
from nimbus.sigv4.credentials import Credentials
from nimbus.sigv4.verification import Caller, verify
from nimbus.store.function_urls import FunctionUrlStore
from nimbus.store.policies import PolicyStore
from nimbus.threads import blocking

INVOKE_URL = "lambda:InvokeFunctionUrl"


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
        # Blocking (reads the principals file): built with the server, in Node.open.
        self.principals = Principals.load(config)
        self._policies = PolicyStore(store.functions)
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
            lease = self.gate.admit(api_id=None, stage=None, api_key=None, key_required=False)
            if lease is not None:  # cluster mode: shared tokens to wait for
                await lease
        except GatewayThrottled as exc:
            return error_reply(exc)
        account, authorizer = "anonymous", None
        if config.auth_type == "AWS_IAM":
            caller = self._signer(request, scope)
            if caller is None or not await self._allowed(caller, config):
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

    def _signer(self, request: HttpRequest, scope: Scope) -> Caller | None:
        """Who signed the request, among every principal's keys (None: nobody valid)."""
        try:
            return verify(
                request.method,
                scope.get("raw_path") or scope["path"],
                scope.get("query_string", b""),
                request.headers,
                request.body,
                self.principals.keyring,
                region=self.config.region,
                service=self.service,
            )
        except (SignatureRejected, InvalidSignature):
            return None

    async def _allowed(self, caller: Caller, url: FunctionUrlConfig) -> bool:
        principal = self.principals.find(caller.access_key)
        if principal is None:
            return False
        if principal.admin:
            return True
        qualifier = None if url.qualifier == LATEST else url.qualifier
        access = Access(
            INVOKE_URL,
            self.config.function_arn(url.function_name, qualifier),
            {"lambda:functionurlauthtype": "AWS_IAM"},
            (url.function_name, url.qualifier),
        )
        try:
            await authorize(principal, access, self._resource_policy)
        except AccessDenied:
            return False
        return True

    async def _resource_policy(self, function: str, qualifier: str) -> Policy | None:
        found = await blocking(self._policies.find, function, qualifier)
        return None if found is None else resource_policy_of(found.statements)


def _url(config: FunctionUrlConfig | None) -> _Url | None:
    return None if config is None else _Url(config, Cors.from_config(config.cors))
