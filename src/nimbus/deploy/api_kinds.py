"""HTTP APIs (``AWS::ApiGatewayV2::Api``, ``Stage``, ``Integration``, ``Route``), deployed
with boto3's ``apigatewayv2`` client.

SAM's ``HttpApi`` events make an API with an OpenAPI ``Body`` (paths whose methods carry
``x-amazon-apigateway-integration``) rather than Route resources; nimbus has no OpenAPI
import, so the deploy makes one Lambda proxy integration and one route per path and method
itself, and remakes them when the body changes."""

from __future__ import annotations

from typing import Any

from nimbus.deploy.kinds import Context, Kind, Made, ignore_missing, register, tags_dict

_ANY = "x-amazon-apigateway-any-method"
_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", _ANY})
_CORS_KEYS = {
    "allowOrigins": "AllowOrigins", "allowHeaders": "AllowHeaders",
    "allowMethods": "AllowMethods", "exposeHeaders": "ExposeHeaders", "maxAge": "MaxAge",
    "allowCredentials": "AllowCredentials",
}  # fmt: skip
_BODY_KEYS = frozenset({"openapi", "swagger", "info", "paths", "tags", "x-amazon-apigateway-cors",
                        "servers"})  # fmt: skip


def _v2(ctx: Context) -> Any:
    return ctx.client("apigatewayv2")


def body_problems(body: Any) -> list[str]:
    """What in an OpenAPI body nimbus cannot serve (literal parts only)."""
    if not isinstance(body, dict):
        return ["Body must be an OpenAPI mapping"]
    found = [f"OpenAPI key {k} is not supported (authorizers, models and the like)"
             for k in body if k not in _BODY_KEYS]  # fmt: skip
    for path, methods in (body.get("paths") or {}).items():
        for method, spec in (methods or {}).items():
            if method not in _METHODS:
                found.append(f"path {path}: {method} is not an HTTP method")
                continue
            if spec.get("security"):
                found.append(f"{method.upper()} {path}: authorizers (security) are not supported")
            integration = spec.get("x-amazon-apigateway-integration") or {}
            if str(integration.get("type", "")).lower() != "aws_proxy":
                found.append(f"{method.upper()} {path}: only Lambda proxy (aws_proxy) "
                             "integrations are supported")  # fmt: skip
            version = integration.get("payloadFormatVersion", "2.0")
            if isinstance(version, str) and version not in ("1.0", "2.0"):
                found.append(f"{method.upper()} {path}: payload format {version} is not "
                             "supported: use 2.0 or 1.0")  # fmt: skip
    return found


def _routes_of(body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    routes = []
    for path, methods in (body.get("paths") or {}).items():
        for method, spec in (methods or {}).items():
            key = "$default" if path == "$default" else (
                f"{'ANY' if method == _ANY else method.upper()} {path}"
            )  # fmt: skip
            routes.append((key, spec["x-amazon-apigateway-integration"]))
    return routes


@register
class Api(Kind):
    type_name = "AWS::ApiGatewayV2::Api"
    properties = frozenset({
        "Name", "ProtocolType", "Body", "Description", "CorsConfiguration",
        "DisableExecuteApiEndpoint", "Tags", "Target", "RouteKey", "Version", "FailOnWarnings",
    })  # fmt: skip
    replace_on = frozenset({"ProtocolType", "Target", "RouteKey"})
    # The payload format of routes made from an OpenAPI Body that names none.
    default_payload: str = "2.0"

    def check(self, props: dict[str, Any]) -> list[tuple[str | None, str]]:
        found: list[tuple[str | None, str]] = []
        if props.get("ProtocolType", "HTTP") != "HTTP":
            found.append(("ProtocolType", "only HTTP APIs are supported (no WebSocket APIs)"))
        if "Body" in props:
            found += [("Body", m) for m in body_problems(props["Body"])]
        elif "ProtocolType" not in props:
            found.append(("ProtocolType", "give ProtocolType: HTTP (or an OpenAPI Body)"))
        return found

    def _settings(self, ctx: Context, props: dict[str, Any]) -> dict[str, Any]:
        body = props.get("Body") or {}
        title = (body.get("info") or {}).get("title")
        args: dict[str, Any] = {"Name": str(props.get("Name") or title or ctx.stack)}
        for key in ("Description", "CorsConfiguration", "DisableExecuteApiEndpoint", "Version"):
            if key in props:
                args[key] = props[key]
        cors = body.get("x-amazon-apigateway-cors")
        if cors and "CorsConfiguration" not in args:
            args["CorsConfiguration"] = {
                _CORS_KEYS[k]: v for k, v in cors.items() if k in _CORS_KEYS
            }
        return args

    def _tags(self, props: dict[str, Any]) -> dict[str, str]:
        tags = tags_dict(props.get("Tags"))
        for tag in (props.get("Body") or {}).get("tags") or []:
            if "x-amazon-apigateway-tag-value" in tag:
                tags[str(tag["name"])] = str(tag["x-amazon-apigateway-tag-value"])
        return tags

    def _make_routes(self, ctx: Context, api_id: str, props: dict[str, Any]) -> None:
        for key, integration in _routes_of(props.get("Body") or {}):
            args = {
                "ApiId": api_id,
                "IntegrationType": "AWS_PROXY",
                "IntegrationUri": integration["uri"],
                "PayloadFormatVersion": integration.get(
                    "payloadFormatVersion", self.default_payload
                ),
            }
            if "timeoutInMillis" in integration:
                args["TimeoutInMillis"] = int(integration["timeoutInMillis"])
            made = _v2(ctx).create_integration(**args)
            _v2(ctx).create_route(ApiId=api_id, RouteKey=key,
                                  Target=f"integrations/{made['IntegrationId']}")  # fmt: skip

    def create(self, ctx: Context, logical_id: str, props: dict[str, Any]) -> Made:
        args = self._settings(ctx, props) | {"ProtocolType": "HTTP"}
        for key in ("Target", "RouteKey"):
            if key in props:
                args[key] = props[key]
        if self._tags(props):
            args["Tags"] = self._tags(props)
        made = _v2(ctx).create_api(**args)
        try:
            self._make_routes(ctx, made["ApiId"], props)
        except Exception:
            _v2(ctx).delete_api(ApiId=made["ApiId"])  # nothing half-made stays
            raise
        return Made(made["ApiId"], {"ApiId": made["ApiId"], "ApiEndpoint": made["ApiEndpoint"]})

    def update(
        self, ctx: Context, logical_id: str, made: Made, props: dict[str, Any],
        old: dict[str, Any],
    ) -> Made:  # fmt: skip
        v2, api_id = _v2(ctx), made.physical_id
        v2.update_api(ApiId=api_id, **self._settings(ctx, props))
        if props.get("Body") != old.get("Body"):
            for route in v2.get_routes(ApiId=api_id, MaxResults="500")["Items"]:
                v2.delete_route(ApiId=api_id, RouteId=route["RouteId"])
            for item in v2.get_integrations(ApiId=api_id, MaxResults="500")["Items"]:
                v2.delete_integration(ApiId=api_id, IntegrationId=item["IntegrationId"])
            self._make_routes(ctx, api_id, props)
        return made

    def delete(self, ctx: Context, made: Made) -> None:
        ignore_missing(_v2(ctx).delete_api, ApiId=made.physical_id)


@register
class Stage(Kind):
    type_name = "AWS::ApiGatewayV2::Stage"
    properties = frozenset({
        "ApiId", "StageName", "AutoDeploy", "StageVariables", "DefaultRouteSettings",
        "RouteSettings", "Description", "Tags",
    })  # fmt: skip
    required = frozenset({"ApiId", "StageName"})
    replace_on = frozenset({"ApiId", "StageName"})

    def _args(self, props: dict[str, Any]) -> dict[str, Any]:
        return {k: props[k] for k in ("AutoDeploy", "StageVariables", "DefaultRouteSettings",
                                      "RouteSettings", "Description") if k in props}  # fmt: skip

    def create(self, ctx: Context, logical_id: str, props: dict[str, Any]) -> Made:
        from botocore.exceptions import ClientError

        v2, api_id, name = _v2(ctx), props["ApiId"], props["StageName"]
        try:  # quick create makes $default itself
            v2.get_stage(ApiId=api_id, StageName=name)
            v2.update_stage(ApiId=api_id, StageName=name, **self._args(props))
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "NotFoundException":
                raise
            tags = tags_dict(props.get("Tags"))
            v2.create_stage(ApiId=api_id, StageName=name, **self._args(props),
                            **({"Tags": tags} if tags else {}))  # fmt: skip
        return Made(f"{api_id}/{name}", {"StageName": name})

    def update(
        self, ctx: Context, logical_id: str, made: Made, props: dict[str, Any],
        old: dict[str, Any],
    ) -> Made:  # fmt: skip
        _v2(ctx).update_stage(
            ApiId=props["ApiId"], StageName=props["StageName"], **self._args(props)
        )
        return made

    def delete(self, ctx: Context, made: Made) -> None:
        api_id, _, name = made.physical_id.partition("/")
        ignore_missing(_v2(ctx).delete_stage, ApiId=api_id, StageName=name)


@register
class Integration(Kind):
    type_name = "AWS::ApiGatewayV2::Integration"
    properties = frozenset({
        "ApiId", "IntegrationType", "IntegrationUri", "PayloadFormatVersion",
        "IntegrationMethod", "TimeoutInMillis", "Description", "ConnectionType",
    })  # fmt: skip
    required = frozenset({"ApiId", "IntegrationType"})
    replace_on = frozenset({"ApiId"})

    def check(self, props: dict[str, Any]) -> list[tuple[str | None, str]]:
        found: list[tuple[str | None, str]] = []
        kind = props.get("IntegrationType")
        if isinstance(kind, str) and kind != "AWS_PROXY":
            found.append(("IntegrationType", "only AWS_PROXY (Lambda proxy) is supported"))
        version = props.get("PayloadFormatVersion")
        if isinstance(version, str) and version not in ("1.0", "2.0"):
            found.append(("PayloadFormatVersion", "payload formats are 2.0 and 1.0"))
        return found

    def _args(self, props: dict[str, Any]) -> dict[str, Any]:
        return {k: props[k] for k in self.properties - {"ApiId"} if k in props}

    def create(self, ctx: Context, logical_id: str, props: dict[str, Any]) -> Made:
        made = _v2(ctx).create_integration(ApiId=props["ApiId"], **self._args(props))
        return Made(made["IntegrationId"], {"ApiId": props["ApiId"]})

    def update(
        self, ctx: Context, logical_id: str, made: Made, props: dict[str, Any],
        old: dict[str, Any],
    ) -> Made:  # fmt: skip
        _v2(ctx).update_integration(ApiId=props["ApiId"], IntegrationId=made.physical_id,
                                    **self._args(props))  # fmt: skip
        return made

    def delete(self, ctx: Context, made: Made) -> None:
        ignore_missing(_v2(ctx).delete_integration, ApiId=made.attributes["ApiId"],
                       IntegrationId=made.physical_id)  # fmt: skip


@register
class Route(Kind):
    type_name = "AWS::ApiGatewayV2::Route"
    properties = frozenset({"ApiId", "RouteKey", "Target", "AuthorizationType", "ApiKeyRequired"})
    required = frozenset({"ApiId", "RouteKey"})
    replace_on = frozenset({"ApiId"})

    def _args(self, props: dict[str, Any]) -> dict[str, Any]:
        return {k: props[k] for k in self.properties - {"ApiId"} if k in props}

    def create(self, ctx: Context, logical_id: str, props: dict[str, Any]) -> Made:
        made = _v2(ctx).create_route(ApiId=props["ApiId"], **self._args(props))
        return Made(made["RouteId"], {"ApiId": props["ApiId"]})

    def update(
        self, ctx: Context, logical_id: str, made: Made, props: dict[str, Any],
        old: dict[str, Any],
    ) -> Made:  # fmt: skip
        _v2(ctx).update_route(ApiId=props["ApiId"], RouteId=made.physical_id, **self._args(props))
        return made

    def delete(self, ctx: Context, made: Made) -> None:
        ignore_missing(_v2(ctx).delete_route, ApiId=made.attributes["ApiId"],
                       RouteId=made.physical_id)  # fmt: skip
