"""Reserved concurrency per function and the account's settings."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nimbus.api.names import unqualified
from nimbus.api.services import services
from nimbus.api.wire import Params, empty_response, json_response, read_json
from nimbus.errors import ResourceNotFound
from nimbus.models import LATEST
from nimbus.threads import blocking


async def put_function_concurrency(request: Request) -> Response:
    svc = services(request)
    name = unqualified(request.path_params["name"], svc.config)
    params = Params(await read_json(request, "PutFunctionConcurrency"))
    value = params.integer("ReservedConcurrentExecutions", minimum=0)
    if value is None:
        params.string("ReservedConcurrentExecutions", required=True)
    params.check()
    try:
        await blocking(
            svc.engine.functions.set_reserved_concurrency,
            name,
            value,
            svc.config.concurrency_limit,
            svc.config.unreserved_minimum,
        )
    except ResourceNotFound as exc:  # Lambda names $LATEST here
        arn = svc.config.function_arn(name, LATEST)
        raise ResourceNotFound(f"Function not found: {arn}") from exc
    return json_response({"ReservedConcurrentExecutions": value})


async def get_function_concurrency(request: Request) -> Response:
    svc = services(request)
    name = unqualified(request.path_params["name"], svc.config)
    record = await blocking(svc.engine.functions.get_record, name)
    if record.reserved_concurrency is None:
        return json_response({})
    return json_response({"ReservedConcurrentExecutions": record.reserved_concurrency})


async def delete_function_concurrency(request: Request) -> Response:
    svc = services(request)
    name = unqualified(request.path_params["name"], svc.config)
    await blocking(svc.engine.functions.set_reserved_concurrency, name, None, 0, 0)
    return empty_response(204)


async def get_account_settings(request: Request) -> Response:
    svc = services(request)
    count, total = await blocking(svc.engine.functions.usage)
    reserved = await blocking(svc.engine.functions.reserved_sum)
    cfg = svc.config
    return json_response(
        {
            "AccountLimit": {
                "TotalCodeSize": cfg.total_code_size,
                "CodeSizeUnzipped": cfg.max_unzipped_size,
                "CodeSizeZipped": cfg.max_zip_size,
                "ConcurrentExecutions": cfg.concurrency_limit,
                "UnreservedConcurrentExecutions": cfg.concurrency_limit - reserved,
            },
            "AccountUsage": {"TotalCodeSize": total, "FunctionCount": count},
        }
    )


routes = [
    Route("/2017-10-31/functions/{name}/concurrency", put_function_concurrency, methods=["PUT"]),
    Route(
        "/2017-10-31/functions/{name}/concurrency", delete_function_concurrency, methods=["DELETE"]
    ),
    Route("/2019-09-30/functions/{name}/concurrency", get_function_concurrency, methods=["GET"]),
    Route("/2016-08-19/account-settings", get_account_settings, methods=["GET"]),
    Route("/2016-08-19/account-settings/", get_account_settings, methods=["GET"]),
]
