"""An OpenAPI 3 description of nimbus's control plane, generated from its routes.

Every route the control plane serves becomes a path. Where a route is one of Lambda's
operations (same method, same path template as the operation's ``requestUri`` in
botocore's Lambda model), the operation's input shape gives its parameters and body:
``uri`` members become path parameters, ``querystring`` members query parameters,
``header`` members headers, the rest a JSON body (a blob payload, as Invoke's, a raw
body). nimbus's own endpoints (``/_nimbus/...``, ``/health``, ``/metrics``) get a plain
description: their path and query parameters and, for a POST, an optional JSON object.

The other AWS services nimbus speaks (SQS, SNS, Scheduler, S3) are routed by their models
behind one catch-all route (``aws_services``) and are not described here; neither are the
API Gateway management routes. The document is served at ``GET /_nimbus/openapi.json``
and is what the schemathesis run in the test suite fuzzes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from typing import Any

from botocore.loaders import create_loader
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from nimbus.api.wire import json_response
from nimbus.threads import blocking

_PARAM = re.compile(r"\{([^}:+]+)(?::[^}]*)?\+?\}")
# The API Gateway management subsets (their own services' models) are left out.
_SKIPPED_PREFIXES = ("/v2/apis", "/apikeys", "/usageplans")


def _template(path: str) -> str:
    """A path with its parameters' names erased, for matching a route to a requestUri."""
    return _PARAM.sub("{}", path.split("?", 1)[0]).rstrip("/") or "/"


@cache
def _lambda_model() -> dict[str, Any]:
    model: dict[str, Any] = create_loader().load_service_model("lambda", "service-2")
    return model


@cache
def _lambda_operations() -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
    """Lambda's operations by (method, path template). Where two share one (Get- and
    ListProvisionedConcurrencyConfigs, told apart by a literal query), the one without the
    literal query wins: it is what the bare path means."""
    found: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    for name, op in sorted(_lambda_model()["operations"].items()):
        key = (op["http"]["method"], _template(op["http"]["requestUri"]))
        if key in found and "?" in op["http"]["requestUri"]:
            continue
        found[key] = (name, op)
    return found


class _Schemas:
    """botocore shapes as JSON Schemas, each shape once under components/schemas."""

    def __init__(self, shapes: dict[str, Any]) -> None:
        self.shapes = shapes
        self.components: dict[str, Any] = {}

    def ref(self, name: str) -> dict[str, Any]:
        if name not in self.components:
            self.components[name] = {}  # placeholder first: shapes may refer to themselves
            self.components[name] = self.schema(self.shapes[name])
        return {"$ref": f"#/components/schemas/{name}"}

    def schema(self, shape: dict[str, Any]) -> dict[str, Any]:
        kind = shape["type"]
        if kind == "structure":
            if shape.get("document"):
                return {}
            properties = {m: self.ref(s["shape"]) for m, s in shape["members"].items()}
            out: dict[str, Any] = {"type": "object", "properties": properties}
            if shape.get("required"):
                out["required"] = list(shape["required"])
            return out
        if kind == "list":
            out = {"type": "array", "items": self.ref(shape["member"]["shape"])}
            _bounds(out, shape, "minItems", "maxItems")
            return out
        if kind == "map":
            out = {"type": "object", "additionalProperties": self.ref(shape["value"]["shape"])}
            _bounds(out, shape, "minProperties", "maxProperties")
            return out
        return scalar(shape)


def scalar(shape: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of a botocore scalar shape, with the model's constraints."""
    kind = shape["type"]
    if kind == "string":
        if "enum" in shape:
            return {"type": "string", "enum": list(shape["enum"])}
        out: dict[str, Any] = {"type": "string"}
        _bounds(out, shape, "minLength", "maxLength")
        pattern = _pattern(shape.get("pattern"))
        if pattern:
            out["pattern"] = pattern
        return out
    if kind in ("integer", "long"):
        out = {"type": "integer"}
        _bounds(out, shape, "minimum", "maximum")
        return out
    if kind in ("double", "float"):
        return {"type": "number"}
    if kind == "boolean":
        return {"type": "boolean"}
    if kind == "timestamp":
        return {"type": "string", "format": "date-time"}
    if kind == "blob":
        return {"type": "string", "format": "byte"}
    raise ValueError(f"no JSON Schema for botocore shape type {kind!r}")


def _bounds(out: dict[str, Any], shape: dict[str, Any], low: str, high: str) -> None:
    if "min" in shape:
        out[low] = shape["min"]
    if "max" in shape:
        out[high] = shape["max"]


def _pattern(pattern: str | None) -> str | None:
    """The model's pattern anchored (botocore's patterns are whole-value matches), or None
    when it is not a regular expression Python and JSON Schema tools can read."""
    if not pattern:
        return None
    anchored = f"^(?:{pattern})$"
    try:
        re.compile(anchored)
    except re.error:
        return None
    return anchored


def _lambda_operation(
    schemas: _Schemas, route_path: str, name: str, op: dict[str, Any]
) -> dict[str, Any]:
    model = _lambda_model()
    route_params = [m.group(1) for m in _PARAM.finditer(route_path)]
    uri_params = [m.group(1) for m in _PARAM.finditer(op["http"]["requestUri"].split("?")[0])]
    path_name = dict(zip(uri_params, route_params, strict=True))
    parameters: list[dict[str, Any]] = []
    body: dict[str, Any] | None = None
    if "input" in op:
        shape = model["shapes"][op["input"]["shape"]]
        required = set(shape.get("required", ()))
        body_members: dict[str, Any] = {}
        payload = shape.get("payload")
        for member, ref in shape["members"].items():
            location = ref.get("location")
            where = ref.get("locationName", member)
            member_shape = model["shapes"][ref["shape"]]
            if location == "uri":
                parameters.append(
                    {
                        "name": path_name[where],
                        "in": "path",
                        "required": True,
                        "schema": scalar(member_shape),
                    }
                )
            elif location in ("querystring", "header"):
                if member_shape["type"] in ("list", "map"):
                    continue  # no Lambda operation nimbus serves takes one
                parameters.append(
                    {
                        "name": where,
                        "in": "query" if location == "querystring" else "header",
                        "required": member in required,
                        "schema": scalar(member_shape),
                    }
                )
            elif member == payload:
                if member_shape["type"] in ("blob", "string"):
                    body = {"content": {"application/octet-stream": {"schema": {}}}}
                else:
                    body = {"content": {"application/json": {"schema": schemas.ref(ref["shape"])}}}
            elif location is None:
                body_members[member] = schemas.ref(ref["shape"])
        if body_members and body is None:
            body_schema: dict[str, Any] = {"type": "object", "properties": body_members}
            wanted = [m for m in body_members if m in required]
            if wanted:
                body_schema["required"] = wanted
            body = {
                "required": bool(wanted),
                "content": {"application/json": {"schema": body_schema}},
            }
    out: dict[str, Any] = {
        "operationId": name,
        "tags": ["lambda"],
        "parameters": parameters,
        "responses": _responses(str(op["http"].get("responseCode", 200))),
    }
    if body is not None:
        out["requestBody"] = body
    return out


def _responses(success: str) -> dict[str, Any]:
    return {
        success: {"description": "Success"},
        "default": {
            "description": "An error in Lambda's shape: a JSON body with a message, and its "
            "type in the X-Amzn-ErrorType header"
        },
    }


_INT = {"type": "integer"}
_STR = {"type": "string"}
# The query parameters of nimbus's own GET endpoints (read by their handlers in api/).
_NIMBUS_QUERY: dict[str, dict[str, dict[str, str]]] = {
    "/_nimbus/functions/{name}/logs": {
        "SinceMs": _INT,
        "UntilMs": _INT,
        "Limit": _INT,
        "RequestId": _STR,
        "Filter": _STR,
        "Oldest": _STR,
    },
    "/_nimbus/metrics": {"FunctionName": _STR, "Minutes": _INT},
    "/_nimbus/cost": {"FunctionName": _STR, "Since": _STR},
    "/_nimbus/traces": {"FunctionName": _STR, "Limit": _INT},
    "/_nimbus/service-map": {"Minutes": _INT},
    "/_nimbus/metrics/minutes": {"Since": _INT},
    "/_nimbus/segments": {"Root": _STR, "Since": _STR, "Limit": _INT, "FunctionName": _STR},
    "/_nimbus/dead-letters": {
        "FunctionName": _STR,
        "Queue": _STR,
        "IncludeRedriven": _STR,
        "After": _INT,
        "Limit": _INT,
    },
    "/_nimbus/code/{sha}.zip": {"Expires": _STR, "Signature": _STR},
}


def _nimbus_operation(route_path: str, method: str) -> dict[str, Any]:
    query = _NIMBUS_QUERY.get(route_path, {}) if method == "GET" else {}
    out: dict[str, Any] = {
        "operationId": f"{method.lower()}_{_slug(route_path)}",
        "tags": ["nimbus"],
        "parameters": [
            {"name": m.group(1), "in": "path", "required": True, "schema": _STR}
            for m in _PARAM.finditer(route_path)
        ]
        + [
            {"name": name, "in": "query", "required": False, "schema": schema}
            for name, schema in query.items()
        ],
        "responses": _responses("200"),
    }
    if method == "POST":
        out["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    return out


def _slug(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", _PARAM.sub(r"\1", path)).strip("_")


def describe(routes: Iterable[BaseRoute], server_url: str | None = None) -> dict[str, Any]:
    """The OpenAPI 3.0 document of ``routes`` (see the module docstring)."""
    schemas = _Schemas(_lambda_model()["shapes"])
    operations = _lambda_operations()
    paths: dict[str, dict[str, Any]] = {}
    seen: set[tuple[str, str]] = set()
    for route in routes:
        if not isinstance(route, Route) or route.path.startswith(_SKIPPED_PREFIXES):
            continue
        path = _PARAM.sub(lambda m: "{" + m.group(1) + "}", route.path)
        for method in sorted(route.methods or ()):
            if method == "HEAD":
                continue
            # "/x/" and "/x" are one operation: described once, under its first route.
            key = (method, _template(path))
            if key in seen:
                continue
            seen.add(key)
            found = operations.get(key)
            if found is not None:
                operation = _lambda_operation(schemas, path, *found)
            else:
                operation = _nimbus_operation(path, method)
            paths.setdefault(path, {})[method.lower()] = operation
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": "nimbus control plane",
            "version": _lambda_model()["metadata"]["apiVersion"],
            "description": "Lambda's REST API as nimbus serves it, and nimbus's own endpoints.",
        },
        "paths": paths,
        "components": {"schemas": schemas.components},
    }
    if server_url:
        doc["servers"] = [{"url": server_url.rstrip("/")}]
    return doc


async def openapi_document(request: Request) -> Response:
    """GET /_nimbus/openapi.json: described once per app, its server the one asked."""
    cached: dict[str, Any] | None = getattr(request.app.state, "openapi", None)
    if cached is None:
        cached = await blocking(describe, request.app.routes)
        request.app.state.openapi = cached
    return json_response({**cached, "servers": [{"url": str(request.base_url).rstrip("/")}]})


routes = [Route("/_nimbus/openapi.json", openapi_document, methods=["GET"])]
