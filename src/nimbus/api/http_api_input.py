"""Request bodies of the HTTP API operations (API Gateway v2), checked against the
service model and against what nimbus supports.

Every problem is a ``BadRequestException`` saying what to change, as API Gateway
reports bad input; members nimbus does not implement are refused by name rather than
stored and ignored.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request

from nimbus.api.cors import validate_cors
from nimbus.api.wire import Params, read_json
from nimbus.config import FUNCTION_ARN, Config
from nimbus.errors import BadRequest, NimbusError, ValidationError
from nimbus.models import RouteSettings
from nimbus.route_keys import DEFAULT_STAGE, parse_route_key

DEFAULT_ROUTE_SELECTION = "${request.method} ${request.path}"
API_KEY_SELECTIONS = ("$request.header.x-api-key",)
STAGE_NAME = r"[A-Za-z0-9_-]{1,128}"
_APIGATEWAY_URI = re.compile(
    r"arn:aws[a-zA-Z-]*:apigateway:(?P<region>[a-z0-9-]+):lambda:path/2015-03-31/functions/"
    r"(?P<function>.+)/invocations"
)
_TARGET = re.compile(r"integrations/[a-z0-9]{1,16}")


async def read_body(request: Request, operation: str) -> Params:
    """The JSON body, as Params; malformed JSON is a BadRequest like API Gateway's."""
    try:
        return Params(await read_json(request, operation))
    except NimbusError as exc:
        raise BadRequest(exc.message) from None


def check(params: Params) -> None:
    """Raise the collected constraint violations as one BadRequest."""
    try:
        params.check()
    except ValidationError as exc:
        raise BadRequest(exc.message) from None


def refuse(params: Params, members: tuple[str, ...], why: str) -> None:
    """Members nimbus does not implement: a clear refusal instead of silence."""
    for member in members:
        value = params.data.get(member)
        if value not in (None, False, [], {}):
            raise BadRequest(f"{member} is not supported by nimbus: {why}")


def string_map(params: Params, member: str, max_value: int) -> dict[str, str] | None:
    value = params.mapping(member)
    if value is None:
        return None
    for key, item in value.items():
        if not isinstance(item, str) or len(item) > max_value:
            raise BadRequest(
                f"{member}['{key}'] must be a string of at most {max_value} characters."
            )
    return dict(value)


def function_from_uri(uri: str, config: Config) -> tuple[str, str | None]:
    """(function name, qualifier or None) from an AWS_PROXY integration URI: a Lambda
    function ARN, qualified or not, or API Gateway's invocation URI wrapping one."""
    outer = _APIGATEWAY_URI.fullmatch(uri)
    arn = outer["function"] if outer else uri
    match = FUNCTION_ARN.fullmatch(arn)
    if match is None:
        raise BadRequest(
            f"Invalid integrationUri '{uri}': for an AWS_PROXY integration give a Lambda "
            f"function ARN ({config.function_arn('my-function')}, optionally ending in "
            ":version or :alias) or arn:aws:apigateway:REGION:lambda:path/2015-03-31/"
            "functions/FUNCTION_ARN/invocations."
        )
    regions = {match["region"], outer["region"] if outer else match["region"]}
    if regions != {config.region} or match["account"] != config.account_id:
        raise BadRequest(
            f"Invalid integrationUri '{uri}': this nimbus serves region {config.region} and "
            f"account {config.account_id}; the function must be one of its own."
        )
    qualifier = match["qualifier"]
    return match["name"], None if qualifier in (None, "$LATEST") else qualifier


def cors(params: Params) -> dict[str, Any] | None:
    """The CorsConfiguration, validated (``gateway.cors``), kept in its wire form."""
    return validate_cors(params.data.get("corsConfiguration"), api="apigatewayv2")


def _route_settings(params: Params, where: str) -> RouteSettings:
    burst = params.integer("throttlingBurstLimit", minimum=0)
    rate = params.data.get("throttlingRateLimit")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float))):
        raise BadRequest(f"{where}.throttlingRateLimit must be a number.")
    if rate is not None and rate < 0:
        raise BadRequest(f"{where}.throttlingRateLimit must not be negative.")
    level = params.string("loggingLevel")
    if level is not None and level not in ("ERROR", "INFO", "OFF"):
        raise BadRequest(f"{where}.loggingLevel must be ERROR, INFO or OFF.")
    return RouteSettings(
        throttling_burst_limit=burst,
        throttling_rate_limit=None if rate is None else float(rate),
        detailed_metrics_enabled=params.boolean("detailedMetricsEnabled"),
        data_trace_enabled=params.boolean("dataTraceEnabled"),
        logging_level=level,
    )


def stage_settings(params: Params) -> dict[str, Any]:
    """The settable members of a stage, as ApiStage field changes (absent: unchanged)."""
    refuse(
        params,
        ("accessLogSettings", "clientCertificateId", "deploymentId"),
        "nimbus has no access logs, client certificates or deployments (routes are live on "
        "every stage as soon as they are written).",
    )
    changes: dict[str, Any] = {}
    description = params.string("description", max_len=1024)
    auto_deploy = params.boolean("autoDeploy")
    variables = string_map(params, "stageVariables", 2048)
    for name in variables or {}:
        if not re.fullmatch(r"[A-Za-z0-9_]{1,64}", name):
            raise BadRequest(
                f"Invalid stage variable name '{name}': use 1 to 64 letters, digits or '_'."
            )
    if params.has("defaultRouteSettings"):
        sub = params.nested("defaultRouteSettings")
        changes["default_route_settings"] = _route_settings(sub, "defaultRouteSettings")
    if params.has("routeSettings"):
        settings = {}
        for key, value in (params.mapping("routeSettings") or {}).items():
            parse_route_key(key)
            if not isinstance(value, dict):
                raise BadRequest(f"routeSettings['{key}'] must be a RouteSettings object.")
            settings[key] = _route_settings(Params(value), f"routeSettings['{key}']")
        changes["route_settings"] = settings
    check(params)
    if description is not None:
        changes["description"] = description
    if auto_deploy is not None:
        changes["auto_deploy"] = auto_deploy
    if variables is not None:
        changes["stage_variables"] = variables
    return changes


def stage_name(params: Params) -> str:
    name = params.string("stageName", required=True)
    check(params)
    assert name is not None
    if name != DEFAULT_STAGE and not re.fullmatch(STAGE_NAME, name):
        raise BadRequest(
            f"Invalid stage name '{name}': use '$default' or 1 to 128 letters, digits, '-' or '_'."
        )
    return name


def route_settings_input(params: Params, creating: bool) -> dict[str, Any]:
    """A route's settable members, as ApiRoute field changes (absent: unchanged)."""
    refuse(
        params,
        ("authorizerId", "authorizationScopes"),
        "authorizers (JWT, Lambda) are not implemented; use authorizationType NONE or AWS_IAM.",
    )
    refuse(
        params,
        (
            "modelSelectionExpression",
            "requestModels",
            "requestParameters",
            "routeResponseSelectionExpression",
        ),
        "these apply to WebSocket APIs only.",
    )
    changes: dict[str, Any] = {}
    key = params.string("routeKey", required=creating)
    target = params.string("target", max_len=128)
    api_key_required = params.boolean("apiKeyRequired")
    authorization = params.string("authorizationType")
    operation = params.string("operationName", min_len=1, max_len=64)
    check(params)
    if key is not None:
        parse_route_key(key)
        changes["route_key"] = key
    if target is not None:
        if target and not _TARGET.fullmatch(target):
            raise BadRequest(
                f"Invalid target '{target}': a route's target is 'integrations/{{integrationId}}'."
            )
        changes["target"] = target or None  # "" detaches the route from its integration
    if api_key_required is not None:
        changes["api_key_required"] = api_key_required
    if authorization is not None:
        if authorization in ("JWT", "CUSTOM"):
            raise BadRequest(
                f"authorizationType {authorization} is not supported by nimbus; use NONE or "
                "AWS_IAM (SigV4)."
            )
        if authorization not in ("NONE", "AWS_IAM"):
            raise BadRequest(f"Invalid authorizationType '{authorization}': use NONE or AWS_IAM.")
        changes["authorization_type"] = authorization
    if operation is not None:
        changes["operation_name"] = operation
    return changes


def integration_input(params: Params, config: Config, creating: bool) -> dict[str, Any]:
    """An integration's settable members, as ApiIntegration field changes."""
    refuse(
        params,
        (
            "connectionId",
            "contentHandlingStrategy",
            "credentialsArn",
            "integrationSubtype",
            "passthroughBehavior",
            "requestParameters",
            "requestTemplates",
            "responseParameters",
            "templateSelectionExpression",
            "tlsConfig",
        ),
        "nimbus integrates Lambda functions through AWS_PROXY only, without mappings, "
        "credentials or private connections.",
    )
    changes: dict[str, Any] = {}
    kind = params.string("integrationType", required=creating)
    uri = params.string("integrationUri", min_len=1, max_len=2048)
    version = params.string("payloadFormatVersion", min_len=1, max_len=64)
    timeout = params.integer("timeoutInMillis", minimum=50, maximum=30000)
    description = params.string("description", max_len=1024)
    method = params.string("integrationMethod", min_len=1, max_len=64)
    connection = params.string("connectionType")
    check(params)
    if kind is not None and kind != "AWS_PROXY":
        raise BadRequest(
            f"Integration type {kind} is not supported by nimbus: only AWS_PROXY "
            "(Lambda proxy) integrations are."
        )
    if uri is not None:
        changes["function_name"], changes["qualifier"] = function_from_uri(uri, config)
        changes["integration_uri"] = uri
    elif creating:
        raise BadRequest("integrationUri is required for an AWS_PROXY integration.")
    if version is None and creating:
        raise BadRequest(
            "payloadFormatVersion is required for Lambda proxy integrations of HTTP APIs: "
            "give 2.0 or 1.0."
        )
    if version is not None:
        if version not in ("1.0", "2.0"):
            raise BadRequest(
                f"Invalid payloadFormatVersion '{version}': use 2.0 or 1.0 (the REST API "
                "style event)."
            )
        changes["payload_format_version"] = version
    if method is not None and method != "POST":
        raise BadRequest(
            f"Invalid integrationMethod '{method}': Lambda proxy integrations use POST."
        )
    if connection is not None and connection != "INTERNET":
        raise BadRequest(f"connectionType {connection} is not supported: use INTERNET.")
    if timeout is not None:
        changes["timeout_ms"] = timeout
    if description is not None:
        changes["description"] = description
    return changes


def api_input(params: Params, creating: bool) -> dict[str, Any]:
    """An API's settable members (not quick create's), as HttpApi field changes."""
    refuse(params, ("credentialsArn",), "nimbus does not assume roles to invoke functions.")
    refuse(params, ("disableSchemaValidation",), "it applies to WebSocket APIs only.")
    if not creating:
        refuse(
            params,
            ("target", "routeKey"),
            "quick create is for CreateApi; change the integration or route with "
            "UpdateIntegration or UpdateRoute.",
        )
    changes: dict[str, Any] = {}
    name = params.string("name", required=creating, min_len=1, max_len=128)
    description = params.string("description", max_len=1024)
    selection = params.string("routeSelectionExpression")
    key_selection = params.string("apiKeySelectionExpression")
    disable = params.boolean("disableExecuteApiEndpoint")
    ip_type = params.string("ipAddressType")
    version = params.string("version", min_len=1, max_len=64)
    check(params)
    if selection is not None and selection != DEFAULT_ROUTE_SELECTION:
        raise BadRequest(
            f"Invalid routeSelectionExpression '{selection}': HTTP APIs route by "
            f"'{DEFAULT_ROUTE_SELECTION}'."
        )
    if key_selection is not None and key_selection not in API_KEY_SELECTIONS:
        raise BadRequest(
            f"Invalid apiKeySelectionExpression '{key_selection}': nimbus reads API keys "
            f"from {API_KEY_SELECTIONS[0]}."
        )
    if ip_type is not None and ip_type not in ("ipv4", "dualstack"):
        raise BadRequest(f"Invalid ipAddressType '{ip_type}': use ipv4 or dualstack.")
    if params.has("corsConfiguration"):
        changes["cors"] = cors(params)
    for field, value in (
        ("name", name),
        ("description", description),
        ("api_key_selection_expression", key_selection),
        ("disable_execute_api_endpoint", disable),
        ("ip_address_type", ip_type),
        ("version", version),
    ):
        if value is not None:
            changes[field] = value
    return changes
