"""API keys: API Gateway's (v1) CreateApiKey, GetApiKey(s), UpdateApiKey, DeleteApiKey.

Keys are metered through usage plans (``api/usage_plans.py``) on HTTP API stages. As in
API Gateway, a new key is disabled unless ``enabled`` is true, and its value is shown
only on creation or when asked for (``includeValue``).
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import string
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nimbus.api.http_api_input import check, read_body, refuse
from nimbus.api.services import services
from nimbus.api.wire import Params, empty_response, json_response
from nimbus.errors import BadRequest
from nimbus.models import ApiKey
from nimbus.store.api_keys import ApiKeyStore
from nimbus.threads import blocking

_ID_CHARS = string.ascii_lowercase + string.digits
_VALUE_CHARS = string.ascii_letters + string.digits
# Printable ASCII without spaces: the value travels in an HTTP header (x-api-key).
KEY_VALUE = r"[\x21-\x7e]{20,128}"
POSITION = r"[a-z0-9]{1,16}"


def new_id(length: int) -> str:
    """An id like API Gateway's: lowercase letters and digits."""
    return "".join(secrets.choice(_ID_CHARS) for _ in range(length))


def new_value() -> str:
    """A 40-character key value, as API Gateway generates."""
    return "".join(secrets.choice(_VALUE_CHARS) for _ in range(40))


def store(request: Request) -> ApiKeyStore:
    return services(request).api_keys


def render_key(key: ApiKey, include_value: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": key.id,
        "enabled": key.enabled,
        "createdDate": key.created_date,
        "lastUpdatedDate": key.last_updated_date,
        "stageKeys": [],
    }
    if include_value:
        body["value"] = key.value
    for member, value in (
        ("name", key.name),
        ("description", key.description),
        ("customerId", key.customer_id),
    ):
        if value is not None:
            body[member] = value
    if key.tags:
        body["tags"] = key.tags
    return body


def tags(params: Params) -> dict[str, str]:
    """API Gateway's tag rules: keys of 1-128 characters not starting with ``aws:``,
    values of at most 256."""
    value = params.mapping("tags")
    if value is None:
        return {}
    for key, item in value.items():
        if not 1 <= len(key) <= 128 or key.lower().startswith("aws:"):
            raise BadRequest(
                f"Invalid tag key '{key}': tag keys have 1 to 128 characters and must not "
                "start with 'aws:'."
            )
        if not isinstance(item, str) or len(item) > 256:
            raise BadRequest(
                f"Invalid value for tag '{key}': use a string of at most 256 characters."
            )
    return dict(value)


def query_bool(request: Request, name: str) -> bool:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return False
    if raw.lower() not in ("true", "false"):
        raise BadRequest(f"Invalid {name} '{raw}': use true or false.")
    return raw.lower() == "true"


def query_page(request: Request) -> tuple[str | None, int]:
    """``position`` (where the previous page ended) and ``limit`` (1-500, default 25)."""
    raw = request.query_params.get("limit")
    limit = 25
    if raw is not None:
        if not raw.isdigit() or not 1 <= int(raw) <= 500:
            raise BadRequest(f"Invalid limit '{raw}': use a whole number from 1 to 500.")
        limit = int(raw)
    position = request.query_params.get("position") or None
    params = Params({"position": position})
    params.string("position", pattern=POSITION)
    check(params)
    return position, limit


def page_body(items: list[Any], position: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"item": items}  # the model's wire name for ``items``
    if position:
        body["position"] = position
    return body


async def create_key(request: Request) -> Response:
    params = await read_body(request, "CreateApiKey")
    name = params.string("name", max_len=1024)
    description = params.string("description", max_len=4096)
    enabled = params.boolean("enabled")
    params.boolean("generateDistinctId")  # deprecated; ids never equal values here
    value = params.string("value")
    customer_id = params.string("customerId", max_len=256)
    check(params)
    refuse(params, ("stageKeys",), "keys reach HTTP API stages through usage plans")
    if value is not None:
        if len(value) < 20:
            raise BadRequest("API Key value should be at least 20 characters.")
        if not re.fullmatch(KEY_VALUE, value):
            raise BadRequest(
                "API Key value must be 20 to 128 printable ASCII characters without spaces."
            )
    now = time.time()
    key = ApiKey(
        id=new_id(10),
        value=value or new_value(),
        enabled=bool(enabled),  # API Gateway creates keys disabled unless told otherwise
        created_date=now,
        last_updated_date=now,
        name=name,
        description=description,
        customer_id=customer_id,
        tags=tags(params),
    )
    saved = await blocking(store(request).create_key, key)
    return json_response(render_key(saved, include_value=True), 201)


async def get_key(request: Request) -> Response:
    include = query_bool(request, "includeValue")
    key = await blocking(store(request).get_key, request.path_params["key_id"])
    return json_response(render_key(key, include))


async def list_keys(request: Request) -> Response:
    include = query_bool(request, "includeValues")
    position, limit = query_page(request)
    page = await blocking(
        lambda: store(request).list_keys(
            name_query=request.query_params.get("name") or None,
            customer_id=request.query_params.get("customerId") or None,
            position=position,
            limit=limit,
        )
    )
    return json_response(page_body([render_key(k, include) for k in page.items], page.next_marker))


def patch_operations(params: Params) -> list[tuple[str, str, str | None]]:
    """The request's patchOperations as (op, path, value); shape errors are BadRequest."""
    operations = params.sequence("patchOperations") or []
    check(params)
    found = []
    for number, item in enumerate(operations):
        if not isinstance(item, dict):
            raise BadRequest(f"patchOperations[{number}] must be an object with op and path.")
        op, path, value = item.get("op"), item.get("path"), item.get("value")
        if op not in ("add", "remove", "replace", "move", "copy", "test"):
            raise BadRequest(f"Invalid patch operation '{op}' in patchOperations[{number}].")
        if not isinstance(path, str) or not path.startswith("/"):
            raise BadRequest(f"patchOperations[{number}].path must be a path such as /name.")
        if value is not None and not isinstance(value, str):
            raise BadRequest(f"patchOperations[{number}].value must be a string.")
        found.append((op, path, value))
    return found


def bad_path(op: str, path: str, allowed: tuple[str, ...]) -> BadRequest:
    return BadRequest(
        f"Invalid patch path '{path}' specified for op '{op}'. Must be one of: "
        f"[{', '.join(allowed)}]"
    )


def parse_bool(path: str, value: str | None) -> bool:
    if value is None or value.lower() not in ("true", "false"):
        raise BadRequest(f"Invalid value '{value}' for {path}: use true or false.")
    return value.lower() == "true"


_KEY_PATHS = ("/name", "/description", "/enabled", "/customerId")


def _key_changes(operations: list[tuple[str, str, str | None]]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for op, path, value in operations:
        if op != "replace" or path not in _KEY_PATHS:
            raise bad_path(op, path, _KEY_PATHS)
        if path == "/enabled":
            changes["enabled"] = parse_bool(path, value)
            continue
        limit = {"/name": 1024, "/description": 4096, "/customerId": 256}[path]
        if value is not None and len(value) > limit:
            raise BadRequest(f"Invalid value for {path}: at most {limit} characters.")
        member = {"/name": "name", "/description": "description", "/customerId": "customer_id"}
        changes[member[path]] = value or None
    return changes


async def update_key(request: Request) -> Response:
    changes = _key_changes(patch_operations(await read_body(request, "UpdateApiKey")))

    def apply(key: ApiKey) -> ApiKey:
        return dataclasses.replace(key, **changes, last_updated_date=time.time())

    key = await blocking(store(request).update_key, request.path_params["key_id"], apply)
    return json_response(render_key(key, include_value=False))


async def delete_key(request: Request) -> Response:
    await blocking(store(request).delete_key, request.path_params["key_id"])
    return empty_response(202)


routes = [
    Route("/apikeys", create_key, methods=["POST"]),
    Route("/apikeys", list_keys, methods=["GET"]),
    Route("/apikeys/{key_id}", get_key, methods=["GET"]),
    Route("/apikeys/{key_id}", update_key, methods=["PATCH"]),
    Route("/apikeys/{key_id}", delete_key, methods=["DELETE"]),
]
