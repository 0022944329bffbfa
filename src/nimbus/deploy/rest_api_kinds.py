"""REST APIs (``AWS::ApiGateway::RestApi``, ``Deployment``, ``Stage``) served as HTTP APIs
with payload format 1.0 routes.

This is what SAM's ``Api`` events and ``AWS::Serverless::Api`` become after the transform:
a RestApi with a Swagger / OpenAPI ``Body`` whose methods are Lambda proxy integrations, a
Deployment and a Stage (``Prod`` for the implicit ``ServerlessRestApi``). nimbus has no
REST APIs; a Lambda proxy REST API behaves like an HTTP API whose integrations send the
REST-style event (payload format 1.0), so the deploy makes one: an integration with
payload format 1.0 and a route per path and method, and a stage per Stage (and per
Deployment ``StageName``, as CloudFormation makes that stage too), named as on AWS, so
``.../<api>/Prod/hello`` answers where AWS answers ``https://<api>.execute-api.../Prod/hello``.

What a REST API has beyond that (authorizers and API keys in the body, request
validators, models, non-proxy integrations, binary media types, gateway responses,
resource policies...) is refused item by item. Differences that remain: an HTTP API's
1.0 event keeps a named stage in ``path`` (``/Prod/hello``; a REST API sends
``/hello``), and nimbus has no deployments: every stage serves the routes as they were
last deployed, and a stage a Deployment made stays until its API is deleted."""

from __future__ import annotations

from typing import Any

from nimbus.deploy.api_kinds import _ANY, Api, _v2
from nimbus.deploy.kinds import Context, Kind, Made, ignore_missing, register, tags_dict

_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", _ANY})
_BODY_KEYS = frozenset({"swagger", "openapi", "info", "paths", "tags", "servers"})
_METHOD_KEYS = frozenset({
    "x-amazon-apigateway-integration", "responses", "summary", "description", "operationId",
    "tags", "produces", "consumes",
})  # fmt: skip
_INTEGRATION_KEYS = frozenset({"type", "httpMethod", "uri", "timeoutInMillis", "responses",
                               "passthroughBehavior"})  # fmt: skip
_WHY = {
    "securityDefinitions": "authorizers and API keys are not supported",
    "components": "authorizers, API keys and models are not supported",
    "definitions": "models are not supported",
    "x-amazon-apigateway-binary-media-types": "binary media types are not supported (HTTP "
    "APIs base64-encode binary bodies by their content type)",
    "x-amazon-apigateway-request-validators": "request validators are not supported",
    "x-amazon-apigateway-gateway-responses": "gateway responses are not supported",
    "x-amazon-apigateway-policy": "resource policies are not supported",
    "x-amazon-apigateway-api-key-source": "API keys of REST APIs are not supported",
    "basePath": "a base path is not supported",
    "security": "authorizers and API keys are not supported",
    "parameters": "request parameters (validation, mapping) are not supported",
    "x-amazon-apigateway-request-validator": "request validators are not supported",
}


def rest_body_problems(body: Any) -> list[tuple[tuple[str, ...], str]]:
    """(where in the body, message) for each part of a REST API body nimbus cannot serve
    (literal parts only: intrinsics are resolved later)."""
    if not isinstance(body, dict):
        return [((), "Body must be a Swagger / OpenAPI mapping")]
    found: list[tuple[tuple[str, ...], str]] = []
    for key in body:
        if key not in _BODY_KEYS:
            why = _WHY.get(key, "it is not supported by nimbus deploy")
            found.append(((key,), f"REST API definition key {key}: {why}"))
    paths = body.get("paths") or {}
    for path, methods in paths.items() if isinstance(paths, dict) else ():
        if not str(path).startswith("/"):
            found.append((("paths", path), f"path {path!r} must start with /"))
            continue
        for method, spec in (methods or {}).items() if isinstance(methods, dict) else ():
            where = ("paths", path, method)
            name = "ANY" if method == _ANY else str(method).upper()
            if method not in _METHODS:
                why = _WHY.get(method, "it is not an HTTP method")
                found.append((where, f"path {path}: {method}: {why}"))
                continue
            spec = spec if isinstance(spec, dict) else {}
            for key in spec:
                if key not in _METHOD_KEYS:
                    why = _WHY.get(key, "it is not supported by nimbus deploy")
                    found.append(((*where, key), f"{name} {path}: {key}: {why}"))
            integration = spec.get("x-amazon-apigateway-integration")
            if not isinstance(integration, dict) or str(integration.get("type", "")).lower() != (
                "aws_proxy"
            ):
                found.append((where, f"{name} {path}: only Lambda proxy (aws_proxy) "
                                     "integrations are supported"))  # fmt: skip
                continue
            for key in integration:
                if key not in _INTEGRATION_KEYS:
                    keys = (*where, "x-amazon-apigateway-integration", key)
                    found.append((keys, f"{name} {path}: integration {key} is not supported"))
            if str(integration.get("httpMethod", "POST")).upper() != "POST":
                found.append((where, f"{name} {path}: a Lambda proxy integration's httpMethod "
                                     "is POST"))  # fmt: skip
    return found


@register
class RestApi(Api):
    """A Lambda proxy REST API, made as an HTTP API with payload format 1.0 routes."""

    type_name = "AWS::ApiGateway::RestApi"
    properties = frozenset({"Name", "Body", "Description", "Tags", "FailOnWarnings",
                            "DisableExecuteApiEndpoint"})  # fmt: skip
    required = frozenset({"Body"})
    replace_on = frozenset()
    default_payload = "1.0"

    def check(self, props: dict[str, Any]) -> list[tuple[str | None, str]]:
        if "Body" not in props:
            return []
        return [("Body", message) for _, message in rest_body_problems(props["Body"])]


@register
class Deployment(Kind):
    """A REST API deployment: nimbus has none (routes are live when made); its
    ``StageName`` makes that stage, as CloudFormation does."""

    type_name = "AWS::ApiGateway::Deployment"
    properties = frozenset({"RestApiId", "Description", "StageName"})
    required = frozenset({"RestApiId"})
    replace_on = frozenset({"RestApiId", "StageName"})

    def create(self, ctx: Context, logical_id: str, props: dict[str, Any]) -> Made:
        api_id, name = props["RestApiId"], props.get("StageName")
        if name:
            _stage(ctx, api_id, name, {})
        return Made(f"{api_id}/{logical_id}", {"RestApiId": api_id})

    def update(
        self, ctx: Context, logical_id: str, made: Made, props: dict[str, Any],
        old: dict[str, Any],
    ) -> Made:  # fmt: skip
        return made  # only the description changed

    def delete(self, ctx: Context, made: Made) -> None:
        """Nothing to delete: a stage it made goes with its API (a newer deployment of the
        same template, made before this one is deleted, names the same stage)."""


@register
class Stage(Kind):
    """A REST API stage, as a stage of the HTTP API (its variables become stage
    variables)."""

    type_name = "AWS::ApiGateway::Stage"
    properties = frozenset({"RestApiId", "StageName", "DeploymentId", "Description",
                            "Variables", "Tags"})  # fmt: skip
    required = frozenset({"RestApiId", "StageName"})
    replace_on = frozenset({"RestApiId", "StageName"})

    def _args(self, props: dict[str, Any]) -> dict[str, Any]:
        args: dict[str, Any] = {}
        if "Description" in props:
            args["Description"] = props["Description"]
        if "Variables" in props:
            args["StageVariables"] = {str(k): str(v) for k, v in props["Variables"].items()}
        return args

    def create(self, ctx: Context, logical_id: str, props: dict[str, Any]) -> Made:
        api_id, name = props["RestApiId"], props["StageName"]
        _stage(ctx, api_id, name, self._args(props), tags_dict(props.get("Tags")))
        return Made(f"{api_id}/{name}", {"StageName": name})

    def update(
        self, ctx: Context, logical_id: str, made: Made, props: dict[str, Any],
        old: dict[str, Any],
    ) -> Made:  # fmt: skip
        _v2(ctx).update_stage(ApiId=props["RestApiId"], StageName=props["StageName"],
                              **self._args(props))  # fmt: skip
        return made

    def delete(self, ctx: Context, made: Made) -> None:
        api_id, _, name = made.physical_id.partition("/")
        ignore_missing(_v2(ctx).delete_stage, ApiId=api_id, StageName=name)


def _stage(
    ctx: Context, api_id: str, name: str, args: dict[str, Any], tags: dict[str, str] | None = None
) -> None:
    """Create stage ``name`` of the API, or update it when it exists already."""
    from botocore.exceptions import ClientError

    v2 = _v2(ctx)
    try:
        v2.get_stage(ApiId=api_id, StageName=name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "NotFoundException":
            raise
        v2.create_stage(ApiId=api_id, StageName=name, **args, **({"Tags": tags} if tags else {}))
        return
    if args:
        v2.update_stage(ApiId=api_id, StageName=name, **args)
