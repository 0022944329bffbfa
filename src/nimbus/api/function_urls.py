"""Function URL configs: Create/Get/Update/Delete/ListFunctionUrlConfig(s).

A function URL belongs to the unqualified function ($LATEST, no ``Qualifier``) or to
one of its aliases (``Qualifier=<alias>``), never to a version, as in Lambda.

``FunctionUrl`` is ``{base}/lambda-url/{url_id}/``, where ``base`` is the address the
client used to reach nimbus (``request.base_url``: scheme://host:port, from the request's
Host header), so the URL works from wherever the API call came from. Lambda's own form,
``https://{url_id}.lambda-url.{region}.on.aws/``, needs DNS nimbus does not control;
the data plane also accepts ``Host: {url_id}.lambda-url.<anything>`` for setups that
provide it.

Only ``InvokeMode=BUFFERED`` is served; ``RESPONSE_STREAM`` is refused rather than
silently buffered. Create's and Update's answers have ``InvokeMode`` only when the request
set it, as Lambda's do; Get and List always show it.

What does not exist is said in Lambda's words, by the store (``nimbus.store.function_urls``).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nimbus.api.cors import validate_cors
from nimbus.api.names import parse_function_ref, unqualified
from nimbus.api.services import Services, services
from nimbus.api.shapes import lambda_timestamp
from nimbus.api.wire import (
    Params,
    empty_response,
    json_response,
    page_response,
    read_json,
    settings_page,
)
from nimbus.config import Config
from nimbus.errors import InvalidParameterValue
from nimbus.models import LATEST, FunctionUrlConfig
from nimbus.threads import blocking

AUTH_TYPES = ("NONE", "AWS_IAM")
INVOKE_MODES = ("BUFFERED", "RESPONSE_STREAM")
# The service model's FunctionUrlFunctionName and FunctionUrlQualifier: no version and
# no $LATEST, either in the name or in Qualifier.
FUNCTION_NAME_PATTERN = (
    r"(arn:(aws[a-zA-Z-]*)?:lambda:)?((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?"
    r"(\d{12}:)?(function:)?([a-zA-Z0-9-_]{1,64})(:((?!\d+$)[0-9a-zA-Z-_]+))?"
)
QUALIFIER_PATTERN = r"((?!^\d+$)^[0-9a-zA-Z-_]+$)"


def function_url(base_url: str, url_id: str) -> str:
    """The URL a client calls: ``base_url`` is scheme://host[:port][/root]."""
    return f"{base_url.rstrip('/')}/lambda-url/{url_id}/"


def render(
    cfg: FunctionUrlConfig,
    config: Config,
    base_url: str,
    modified: bool = True,
    invoke_mode: bool = True,
) -> dict[str, Any]:
    """Lambda's FunctionUrlConfig shape (Create's response has no LastModifiedTime;
    Create's and Update's have InvokeMode only when the request set it)."""
    qualifier = None if cfg.qualifier == LATEST else cfg.qualifier
    body: dict[str, Any] = {
        "FunctionUrl": function_url(base_url, cfg.url_id),
        "FunctionArn": config.function_arn(cfg.function_name, qualifier),
        "AuthType": cfg.auth_type,
        "CreationTime": cfg.creation_time,
    }
    if invoke_mode:
        body["InvokeMode"] = cfg.invoke_mode
    if modified:
        body["LastModifiedTime"] = cfg.last_modified
    if cfg.cors is not None:
        body["Cors"] = cfg.cors
    return body


def _target(svc: Services, request: Request) -> tuple[str, str]:
    """(function, "$LATEST" or alias) from the path and ``Qualifier``; no database."""
    raw = request.path_params["name"]
    qualifier = request.query_params.get("Qualifier")
    params = Params({"FunctionName": raw, "Qualifier": qualifier})
    params.string("FunctionName", min_len=1, max_len=140, pattern=FUNCTION_NAME_PATTERN)
    params.string("Qualifier", min_len=1, max_len=128, pattern=QUALIFIER_PATTERN)
    params.check()
    ref = parse_function_ref(raw, svc.config, qualifier)
    return ref.name, ref.qualifier or LATEST


def _enum(params: Params, member: str, allowed: tuple[str, ...], required: bool = False) -> Any:
    value = params.string(member, required=required)
    if value is not None and value not in allowed:
        params._fail(value, member, f"satisfy enum value set: [{', '.join(allowed)}]")
        return None
    return value


def _cors(params: Params) -> dict[str, Any] | None:
    """Cors as the client gave it (null members dropped), checked against the model
    and the methods a function URL serves; None when absent."""
    return validate_cors(params.data.get("Cors"), api="lambda")


def _invoke_mode(value: str | None) -> str | None:
    if value == "RESPONSE_STREAM":
        raise InvalidParameterValue(
            "InvokeMode RESPONSE_STREAM is not supported: nimbus function URLs return "
            "buffered responses only. Omit InvokeMode or set it to BUFFERED."
        )
    return value


async def create_config(request: Request) -> Response:
    svc = services(request)
    function, qualifier = _target(svc, request)
    params = Params(await read_json(request, "CreateFunctionUrlConfig"))
    auth_type = _enum(params, "AuthType", AUTH_TYPES, required=True)
    invoke_mode = _enum(params, "InvokeMode", INVOKE_MODES)
    params.check()
    cors = _cors(params)
    asked = _invoke_mode(invoke_mode)
    cfg = await blocking(
        svc.function_urls.create,
        function,
        qualifier,
        auth_type,
        cors,
        asked or "BUFFERED",
        lambda_timestamp(),
    )
    base = str(request.base_url)
    body = render(cfg, svc.config, base, modified=False, invoke_mode=asked is not None)
    return json_response(body, 201)


async def update_config(request: Request) -> Response:
    svc = services(request)
    function, qualifier = _target(svc, request)
    params = Params(await read_json(request, "UpdateFunctionUrlConfig"))
    changes: dict[str, Any] = {}
    auth_type = _enum(params, "AuthType", AUTH_TYPES)
    invoke_mode = _enum(params, "InvokeMode", INVOKE_MODES)
    params.check()
    cors = _cors(params)
    if auth_type is not None:
        changes["auth_type"] = auth_type
    if cors is not None:
        changes["cors"] = cors  # replaces the whole Cors settings, as Lambda does
    if _invoke_mode(invoke_mode) is not None:
        changes["invoke_mode"] = invoke_mode
    cfg = await blocking(svc.function_urls.update, function, qualifier, changes, lambda_timestamp())
    shown = invoke_mode is not None
    return json_response(render(cfg, svc.config, str(request.base_url), invoke_mode=shown))


async def get_config(request: Request) -> Response:
    svc = services(request)
    function, qualifier = _target(svc, request)
    cfg = await blocking(svc.function_urls.get, function, qualifier)
    return json_response(render(cfg, svc.config, str(request.base_url)))


async def delete_config(request: Request) -> Response:
    svc = services(request)
    function, qualifier = _target(svc, request)
    await blocking(svc.function_urls.delete, function, qualifier)
    return empty_response(204)


async def list_configs(request: Request) -> Response:
    svc = services(request)
    function = unqualified(request.path_params["name"], svc.config)
    page = await settings_page(request, function, svc.function_urls)
    base = str(request.base_url)
    items = [render(c, svc.config, base) for c in page.items]
    return page_response("FunctionUrlConfigs", items, page.next_marker)


_U = "/2021-10-31/functions/{name}/url"
routes = [
    Route(_U, create_config, methods=["POST"]),
    Route(_U, get_config, methods=["GET"]),
    Route(_U, update_config, methods=["PUT"]),
    Route(_U, delete_config, methods=["DELETE"]),
    Route(_U + "s", list_configs, methods=["GET"]),
]
