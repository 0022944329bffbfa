"""Usage plans (API Gateway v1): plans, the API keys in them, and their usage.

A plan lists HTTP API stages (``apiStages``: apiId + stage of an HTTP API), a per-key
throttle (``rateLimit`` requests/s, ``burstLimit``) and a quota (``limit`` requests per
DAY, WEEK or MONTH, UTC, the period starting on day ``offset``). ``gateway/limits.py``
enforces them on routes that require an API key.
"""

from __future__ import annotations

import dataclasses
import math
import re
from datetime import date, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nimbus.api.api_keys import (
    bad_path,
    new_id,
    page_body,
    patch_operations,
    query_page,
    store,
    tags,
)
from nimbus.api.http_api_input import check, read_body, refuse
from nimbus.api.services import Services, services
from nimbus.api.wire import Params, empty_response, json_response
from nimbus.errors import BadRequest, Conflict
from nimbus.gateway.limits import MAX_QUOTA_OFFSET, QUOTA_PERIODS, period_bounds
from nimbus.models import ApiKey, UsagePlan, UsagePlanStage
from nimbus.threads import blocking

# GetUsage answers at most this many days at once (a year and a day).
MAX_USAGE_DAYS = 366


def render_plan(plan: UsagePlan) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": plan.id,
        "name": plan.name,
        "apiStages": [{"apiId": s.api_id, "stage": s.stage} for s in plan.api_stages],
    }
    if plan.description is not None:
        body["description"] = plan.description
    throttle: dict[str, Any] = {}
    if plan.burst_limit is not None:
        throttle["burstLimit"] = plan.burst_limit
    if plan.rate_limit is not None:
        throttle["rateLimit"] = plan.rate_limit
    if throttle:
        body["throttle"] = throttle
    if plan.quota_limit is not None:
        body["quota"] = {
            "limit": plan.quota_limit,
            "offset": plan.quota_offset,
            "period": plan.quota_period,
        }
    if plan.tags:
        body["tags"] = plan.tags
    return body


def render_plan_key(key: ApiKey) -> dict[str, Any]:
    body: dict[str, Any] = {"id": key.id, "type": "API_KEY", "value": key.value}
    if key.name is not None:
        body["name"] = key.name
    return body


def check_plan(plan: UsagePlan) -> UsagePlan:
    """The rules a plan obeys however it was made (created or patched)."""
    if not plan.name:
        raise BadRequest("A usage plan needs a name.")
    if plan.rate_limit is not None and not math.isfinite(plan.rate_limit):
        raise BadRequest(f"Invalid throttle rateLimit {plan.rate_limit}: use a finite number.")
    if plan.rate_limit is not None and plan.rate_limit < 0:
        raise BadRequest(f"Invalid throttle rateLimit {plan.rate_limit}: must be at least 0.")
    if plan.burst_limit is not None and plan.burst_limit < 0:
        raise BadRequest(f"Invalid throttle burstLimit {plan.burst_limit}: must be at least 0.")
    if plan.quota_limit is None and plan.quota_period is None:
        return dataclasses.replace(plan, quota_offset=0)
    if plan.quota_limit is None or plan.quota_limit < 0:
        raise BadRequest("A quota needs a limit of at least 0 requests per period.")
    if plan.quota_period is None:
        raise BadRequest(f"A quota needs a period: one of {', '.join(QUOTA_PERIODS)}.")
    if plan.quota_period not in QUOTA_PERIODS:
        raise BadRequest(
            f"Invalid quota period '{plan.quota_period}': use one of {', '.join(QUOTA_PERIODS)}."
        )
    highest = MAX_QUOTA_OFFSET[plan.quota_period]
    if not 0 <= plan.quota_offset <= highest:
        raise BadRequest(
            f"Invalid quota offset {plan.quota_offset} for period {plan.quota_period}: use 0 to "
            f"{highest} (the day the period starts: WEEK 0 is Sunday; MONTH 0 is the 1st)."
        )
    return plan


def _stages(params: Params) -> list[UsagePlanStage]:
    stages: list[UsagePlanStage] = []
    for number, item in enumerate(params.sequence("apiStages") or []):
        where = f"apiStages[{number}]"
        if not isinstance(item, dict):
            raise BadRequest(f"{where} must be an object with apiId and stage.")
        api_id, stage = item.get("apiId"), item.get("stage")
        if not isinstance(api_id, str) or not isinstance(stage, str) or not api_id or not stage:
            raise BadRequest(f"{where} needs apiId and stage (an HTTP API and one of its stages).")
        if item.get("throttle"):
            raise BadRequest(
                f"{where}.throttle (per-method throttling) is not supported by nimbus: use the "
                "plan's throttle, or the stage's route settings."
            )
        if UsagePlanStage(api_id, stage) in stages:
            raise BadRequest(f"{where} lists {api_id}:{stage} twice.")
        stages.append(UsagePlanStage(api_id, stage))
    return stages


async def _check_stages(svc: Services, stages: list[UsagePlanStage]) -> None:
    """Each stage must be a stage of an existing HTTP API (NotFound otherwise)."""
    for stage in stages:
        await blocking(svc.http_apis.get_stage, stage.api_id, stage.stage)


async def create_plan(request: Request) -> Response:
    params = await read_body(request, "CreateUsagePlan")
    name = params.string("name", required=True, min_len=1, max_len=1024)
    description = params.string("description", max_len=4096)
    throttle = params.nested("throttle")
    burst = throttle.integer("burstLimit")
    rate = throttle.data.get("rateLimit")
    quota = params.nested("quota")
    limit = quota.integer("limit")
    offset = quota.integer("offset")
    period = quota.string("period")
    check(params)
    refuse(params, ("productCode",), "there is no AWS Marketplace here")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float))):
        raise BadRequest("throttle.rateLimit must be a number (requests per second).")
    stages = _stages(params)
    plan = check_plan(
        UsagePlan(
            id=new_id(6),
            name=name or "",
            description=description,
            api_stages=stages,
            rate_limit=None if rate is None else float(rate),
            burst_limit=burst,
            quota_limit=limit,
            quota_period=period,
            quota_offset=offset or 0,
            tags=tags(params),
        )
    )
    svc = services(request)
    await _check_stages(svc, stages)
    saved = await blocking(svc.api_keys.create_plan, plan)
    return json_response(render_plan(saved), 201)


async def get_plan(request: Request) -> Response:
    plan = await blocking(store(request).get_plan, request.path_params["plan_id"])
    return json_response(render_plan(plan))


async def list_plans(request: Request) -> Response:
    position, limit = query_page(request)
    key_id = request.query_params.get("keyId") or None
    page = await blocking(
        lambda: store(request).list_plans(key_id=key_id, position=position, limit=limit)
    )
    return json_response(page_body([render_plan(p) for p in page.items], page.next_marker))


_PLAN_PATHS = (
    "/name",
    "/description",
    "/throttle/rateLimit",
    "/throttle/burstLimit",
    "/quota/limit",
    "/quota/period",
    "/quota/offset",
    "/apiStages",
    "/throttle",
    "/quota",
)


def _number(path: str, value: str | None, integer: bool) -> Any:
    try:
        if value is None:
            raise ValueError
        return int(value) if integer else float(value)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise BadRequest(f"Invalid value '{value}' for {path}: use {kind}.") from None


def _stage_value(value: str | None) -> UsagePlanStage:
    api_id, _, stage = (value or "").partition(":")
    if not api_id or not stage:
        raise BadRequest(f"Invalid API stage '{value}': use apiId:stageName.")
    return UsagePlanStage(api_id, stage)


def _plan_change(
    changes: dict[str, Any], op: str, path: str, value: str | None
) -> UsagePlanStage | None:
    """Apply one patch operation to ``changes``; returns a stage the patch adds."""
    if path == "/apiStages" and op in ("add", "remove"):
        stage = _stage_value(value)
        stages: list[UsagePlanStage] = changes["api_stages"]
        if op == "add":
            if stage in stages:
                raise Conflict(f"API stage {value} is already in this usage plan.")
            stages.append(stage)
            return stage
        if stage not in stages:
            raise BadRequest(f"Invalid API stage {value}: it is not in this usage plan.")
        stages.remove(stage)
    elif path.startswith("/apiStages/"):
        raise BadRequest(
            "Per-method throttling of API stages is not supported by nimbus: use the plan's "
            "throttle, or the stage's route settings."
        )
    elif op == "remove" and path == "/throttle":
        changes.update(rate_limit=None, burst_limit=None)
    elif op == "remove" and path == "/quota":
        changes.update(quota_limit=None, quota_period=None, quota_offset=0)
    elif op != "replace" or path not in _PLAN_PATHS[:7]:
        raise bad_path(op, path, _PLAN_PATHS)
    elif path == "/name":
        changes["name"] = value or ""
    elif path == "/description":
        changes["description"] = value or None
    elif path == "/throttle/rateLimit":
        changes["rate_limit"] = _number(path, value, integer=False)
    elif path == "/throttle/burstLimit":
        changes["burst_limit"] = _number(path, value, integer=True)
    elif path == "/quota/limit":
        changes["quota_limit"] = _number(path, value, integer=True)
    elif path == "/quota/offset":
        changes["quota_offset"] = _number(path, value, integer=True)
    else:  # /quota/period
        changes["quota_period"] = value
    return None


async def update_plan(request: Request) -> Response:
    operations = patch_operations(await read_body(request, "UpdateUsagePlan"))
    svc = services(request)
    plan_id = request.path_params["plan_id"]
    current = await blocking(svc.api_keys.get_plan, plan_id)
    # Checked once against the current plan so that bad input fails before any write;
    # applied again inside the store's transaction to whatever is current then.
    added = _patched(current, operations)[1]
    await _check_stages(svc, added)

    def apply(plan: UsagePlan) -> UsagePlan:
        return _patched(plan, operations)[0]

    plan = await blocking(svc.api_keys.update_plan, plan_id, apply)
    return json_response(render_plan(plan))


def _patched(
    plan: UsagePlan, operations: list[tuple[str, str, str | None]]
) -> tuple[UsagePlan, list[UsagePlanStage]]:
    changes: dict[str, Any] = {"api_stages": list(plan.api_stages)}
    added: list[UsagePlanStage] = []
    for op, path, value in operations:
        stage = _plan_change(changes, op, path, value)
        if stage is not None:
            added.append(stage)
    return check_plan(dataclasses.replace(plan, **changes)), added


async def delete_plan(request: Request) -> Response:
    await blocking(store(request).delete_plan, request.path_params["plan_id"])
    return empty_response(202)


async def create_plan_key(request: Request) -> Response:
    params = await read_body(request, "CreateUsagePlanKey")
    key_id = params.string("keyId", required=True, min_len=1)
    key_type = params.string("keyType", required=True)
    check(params)
    if key_type != "API_KEY":
        raise BadRequest(f"Invalid keyType '{key_type}': the only key type is API_KEY.")
    assert key_id is not None
    key = await blocking(store(request).add_plan_key, request.path_params["plan_id"], key_id)
    return json_response(render_plan_key(key), 201)


async def get_plan_key(request: Request) -> Response:
    params = request.path_params
    key = await blocking(store(request).get_plan_key, params["plan_id"], params["key_id"])
    return json_response(render_plan_key(key))


async def list_plan_keys(request: Request) -> Response:
    position, limit = query_page(request)
    plan_id = request.path_params["plan_id"]
    name = request.query_params.get("name") or None
    page = await blocking(
        lambda: store(request).list_plan_keys(
            plan_id, name_query=name, position=position, limit=limit
        )
    )
    return json_response(page_body([render_plan_key(k) for k in page.items], page.next_marker))


async def delete_plan_key(request: Request) -> Response:
    params = request.path_params
    await blocking(store(request).remove_plan_key, params["plan_id"], params["key_id"])
    return empty_response(202)


def _date(request: Request, name: str) -> date:
    raw = request.query_params.get(name)
    if raw is None or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
        raise BadRequest(f"Invalid {name} '{raw}': use a date such as 2016-01-31.")
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise BadRequest(f"Invalid {name} '{raw}': not a calendar date.") from None


def daily_usage(
    plan: UsagePlan, stored: dict[str, int], first: date, last: date
) -> list[list[int]]:
    """[used, remaining] per day from ``first`` to ``last``; ``remaining`` is what the
    quota has left at the end of that day. Without a quota a day is just [used]."""
    days: list[list[int]] = []
    day = first
    if plan.quota_period is not None:
        day = period_bounds(first, plan.quota_period, plan.quota_offset)[0]
    total = 0
    while day <= last:
        used = stored.get(day.isoformat(), 0)
        if plan.quota_limit is None or plan.quota_period is None:
            entry = [used]
        else:
            if period_bounds(day, plan.quota_period, plan.quota_offset)[0] == day:
                total = 0  # a new period starts today
            total += used
            entry = [used, max(plan.quota_limit - total, 0)]
        if day >= first:
            days.append(entry)
        day += timedelta(days=1)
    return days


async def get_usage(request: Request) -> Response:
    svc = services(request)
    plan_id = request.path_params["plan_id"]
    first, last = _date(request, "startDate"), _date(request, "endDate")
    if last < first:
        raise BadRequest("endDate must not be before startDate.")
    if (last - first).days >= MAX_USAGE_DAYS:
        raise BadRequest(f"Ask for at most {MAX_USAGE_DAYS} days of usage at once.")
    position, limit = query_page(request)
    plan = await blocking(svc.api_keys.get_plan, plan_id)
    key_id = request.query_params.get("keyId") or None
    next_position = None
    if key_id:
        keys = [await blocking(svc.api_keys.get_plan_key, plan_id, key_id)]
    else:
        page = await blocking(
            lambda: svc.api_keys.list_plan_keys(plan_id, position=position, limit=limit)
        )
        keys, next_position = page.items, page.next_marker
    await svc.usage_gate.flush()  # counts still in memory, so the answer is current
    since = first
    if plan.quota_period is not None:
        since = period_bounds(first, plan.quota_period, plan.quota_offset)[0]
    stored = await blocking(
        svc.api_keys.usage, plan_id, [k.id for k in keys], since.isoformat(), last.isoformat()
    )
    body: dict[str, Any] = {
        "usagePlanId": plan_id,
        "startDate": first.isoformat(),
        "endDate": last.isoformat(),
        "values": {k.id: daily_usage(plan, stored.get(k.id, {}), first, last) for k in keys},
    }
    if next_position:
        body["position"] = next_position
    return json_response(body)


async def update_usage(request: Request) -> Response:
    raise BadRequest(
        "UpdateUsage (granting extra quota to a key) is not supported by nimbus: raise the "
        "plan's quota with UpdateUsagePlan, or move the key to another plan."
    )


_P = "/usageplans"
routes = [
    Route(_P, create_plan, methods=["POST"]),
    Route(_P, list_plans, methods=["GET"]),
    Route(_P + "/{plan_id}", get_plan, methods=["GET"]),
    Route(_P + "/{plan_id}", update_plan, methods=["PATCH"]),
    Route(_P + "/{plan_id}", delete_plan, methods=["DELETE"]),
    Route(_P + "/{plan_id}/keys", create_plan_key, methods=["POST"]),
    Route(_P + "/{plan_id}/keys", list_plan_keys, methods=["GET"]),
    Route(_P + "/{plan_id}/keys/{key_id}", get_plan_key, methods=["GET"]),
    Route(_P + "/{plan_id}/keys/{key_id}", delete_plan_key, methods=["DELETE"]),
    Route(_P + "/{plan_id}/keys/{key_id}/usage", update_usage, methods=["PATCH"]),
    Route(_P + "/{plan_id}/usage", get_usage, methods=["GET"]),
]
