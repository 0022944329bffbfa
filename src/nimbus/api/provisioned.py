"""Provisioned concurrency: Put/Get/Delete/ListProvisionedConcurrencyConfig(s)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

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
from nimbus.errors import InvalidParameterValue
from nimbus.invocation.provisioner import ProvisionedStatus
from nimbus.models import LATEST, ProvisionedConfig
from nimbus.store.functions import snapstart_on
from nimbus.threads import blocking

# Lambda: "SnapStart does not support provisioned concurrency" (a version that starts from
# a snapshot is not kept initialised as well); nimbus refuses it at Put, as for the
# other options SnapStart excludes.
SNAPSTART_REFUSED = ("Provisioned Concurrency is not supported for SnapStart enabled "
                     "functions: this version has SnapStart (ApplyOn PublishedVersions). "
                     "Publish a version with SnapStart ApplyOn None to provision it.")


def check_qualifier(qualifier: str | None) -> str:
    if not qualifier:
        raise InvalidParameterValue(
            "Provisioned Concurrency needs a Qualifier: a published version or an alias."
        )
    if qualifier == LATEST:
        raise InvalidParameterValue(
            "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
        )
    return qualifier


def _body(status: ProvisionedStatus, last_modified: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "RequestedProvisionedConcurrentExecutions": status.requested,
        "AvailableProvisionedConcurrentExecutions": status.allocated,
        "AllocatedProvisionedConcurrentExecutions": status.allocated,
        "Status": status.status,
        "LastModified": last_modified,
    }
    if status.reason:
        body["StatusReason"] = status.reason
    return body


async def _target(svc: Services, request: Request) -> tuple[str, str]:
    ref = parse_function_ref(
        request.path_params["name"], svc.config, request.query_params.get("Qualifier")
    )
    qualifier = check_qualifier(ref.qualifier)
    if qualifier.isdigit():
        versions = [qualifier]
        await blocking(svc.engine.functions.get_version, ref.name, qualifier)
    else:
        alias = await blocking(svc.engine.aliases.get, ref.name, qualifier)
        versions = [alias.function_version, *alias.routing]
    if request.method == "PUT":
        for number in versions:
            version = await blocking(svc.engine.functions.get_version, ref.name, number)
            if snapstart_on(version):
                raise InvalidParameterValue(SNAPSTART_REFUSED)
    return ref.name, qualifier


async def put_config(request: Request) -> Response:
    svc = services(request)
    function, qualifier = await _target(svc, request)
    params = Params(await read_json(request, "PutProvisionedConcurrencyConfig"))
    count = params.integer("ProvisionedConcurrentExecutions", minimum=1)
    if count is None:
        params.string("ProvisionedConcurrentExecutions", required=True)
    params.check()
    assert count is not None
    config = ProvisionedConfig(function, qualifier, count, lambda_timestamp())
    await blocking(svc.provisioned.put, config, svc.config.concurrency_limit,
                   svc.config.unreserved_minimum)
    svc.provisioner.reconcile_soon(function, qualifier)
    body = _body(await svc.provisioner.status(config), config.last_modified)
    body["Status"] = "IN_PROGRESS" if body["Status"] != "READY" else "READY"
    return json_response(body, 202)


async def get_config(request: Request) -> Response:
    svc = services(request)
    function, qualifier = await _target(svc, request)
    config = await blocking(svc.provisioned.get, function, qualifier)
    return json_response(_body(await svc.provisioner.status(config), config.last_modified))


async def delete_config(request: Request) -> Response:
    svc = services(request)
    function, qualifier = await _target(svc, request)
    await blocking(svc.provisioned.delete, function, qualifier)
    svc.provisioner.release(function, qualifier)
    return empty_response(204)


async def list_configs(request: Request) -> Response:
    svc = services(request)
    function = unqualified(request.path_params["name"], svc.config)
    page = await settings_page(request, function, svc.provisioned)
    items: list[dict[str, Any]] = []
    for config in page.items:
        item = _body(await svc.provisioner.status(config), config.last_modified)
        item["FunctionArn"] = svc.config.function_arn(function, config.qualifier)
        items.append(item)
    return page_response("ProvisionedConcurrencyConfigs", items, page.next_marker)


async def provisioned_concurrency(request: Request) -> Response:
    if request.method == "GET" and request.query_params.get("List") == "ALL":
        return await list_configs(request)
    handler = {"PUT": put_config, "GET": get_config, "DELETE": delete_config}[request.method]
    return await handler(request)


routes = [
    Route(
        "/2019-09-30/functions/{name}/provisioned-concurrency",
        provisioned_concurrency,
        methods=["PUT", "GET", "DELETE"],
    ),
]
