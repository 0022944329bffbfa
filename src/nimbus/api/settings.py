"""Validation of a function's settings (CreateFunction / UpdateFunctionConfiguration).

Both operations share one parser; CreateFunction adds the defaults Lambda applies.
"""

from __future__ import annotations

import json
import platform
from typing import Any

from nimbus.api import logging_config
from nimbus.api.shapes import ENVIRONMENT_DECLARED
from nimbus.api.wire import Params
from nimbus.errors import InvalidParameterValue
from nimbus.models import PASSTHROUGH_SETTINGS
from nimbus.sandbox import catalog

ROLE_PATTERN = r"arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+"
HANDLER_PATTERN = r"[^\s]+"
ENV_NAME_PATTERN = r"[a-zA-Z]([a-zA-Z0-9_])+"
LAYER_PATTERN = r"arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\d{12}:layer:[a-zA-Z0-9-_]+:[0-9]+"
ENV_LIMIT = 4096
RESERVED_ENV = {
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
}
HOST_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(
    platform.machine().lower(), platform.machine()
)


# Lambda's Runtime enum (botocore's service model), deprecated runtimes included.
RUNTIMES = (
    "nodejs", "nodejs4.3", "nodejs6.10", "nodejs8.10", "nodejs10.x", "nodejs12.x",
    "nodejs14.x", "nodejs16.x", "nodejs18.x", "nodejs20.x", "nodejs22.x", "nodejs24.x",
    "nodejs26.x", "java8", "java8.al2", "java11", "java17", "java21", "java25",
    "java8.al2023", "java11.al2023", "java17.al2023", "python2.7", "python3.6",
    "python3.7", "python3.8", "python3.9", "python3.10", "python3.11", "python3.12",
    "python3.13", "python3.14", "python3.15", "dotnetcore1.0", "dotnetcore2.0",
    "dotnetcore2.1", "dotnetcore3.1", "dotnet6", "dotnet8", "dotnet10", "nodejs4.3-edge",
    "go1.x", "ruby2.5", "ruby2.7", "ruby3.2", "ruby3.3", "ruby3.4", "ruby4.0", "provided",
    "provided.al2", "provided.al2023", "custom",
)  # fmt: skip
# How Lambda lists the runtimes in the message that refuses a layer's CompatibleRuntimes
# (and a function's Runtime, where nimbus lists this host's instead): the runtimes
# functions can be created with, in Lambda's order. It takes more than it lists
# (deprecated runtimes, ``provided``), as nimbus does: ``RUNTIMES`` is what is taken.
# Lambda's answers recorded on 2026-01-12 (tests/api/recordings/lambda_api.json).
LISTED_RUNTIMES = (
    "nodejs20.x", "python3.14", "provided.al2023", "python3.12", "python3.13", "nodejs24.x",
    "nodejs22.x", "java25", "python3.10", "python3.11", "java21", "ruby3.3", "ruby3.4",
    "ruby3.2", "python3.8", "python3.9", "java17", "nodejs16.x", "dotnet10", "dotnet8",
    "java11", "dotnet6", "nodejs18.x", "provided.al2", "java8.al2",
)  # fmt: skip
# How it lists them refusing the CompatibleRuntime filter of ListLayers (and of
# ListLayerVersions, the same query member): its whole Runtime enum, old and internal
# names included, in its order (recorded as above).
LISTED_RUNTIME_ENUM = (
    "ruby3.5", "ruby2.6", "dotnetcore1.0", "python3.7", "nodejs8.10", "nasa", "ruby2.7",
    "python2.7-greengrass", "dotnetcore2.0", "python3.8", "java21", "dotnet6",
    "dotnetcore2.1", "python3.9", "java11", "nodejs6.10", "provided", "dotnetcore3.1",
    "dotnet8", "java25", "java17", "nodejs", "nodejs4.3", "java8.al2", "go1.x", "dotnet10",
    "nodejs20.x", "go1.9", "byol", "nodejs10.x", "provided.al2023", "nodejs22.x",
    "python3.10", "java8", "nodejs12.x", "python3.11", "nodejs24.x", "nodejs8.x",
    "python3.12", "nodejs14.x", "nodejs8.9", "nodejs26.x", "python3.13", "python3.14",
    "nodejs16.x", "python3.15", "provided.al2", "nodejs4.3-edge", "nodejs18.x", "ruby3.2",
    "python3.4", "ruby3.3", "ruby3.4", "ruby2.5", "python3.6", "python2.7",
)  # fmt: skip
ARCHITECTURES = ("x86_64", "arm64")


def parse_settings(body: dict[str, Any], params: Params) -> dict[str, Any]:
    """FunctionVersion field changes for every setting present in ``body``; constraint
    violations are added to ``params`` (the caller checks them, then ``check_runtime``)."""
    changes: dict[str, Any] = {}
    if params.has("Runtime"):
        changes["runtime"] = params.string("Runtime")
    if params.has("Handler"):
        changes["handler"] = params.string("Handler", max_len=128, pattern=HANDLER_PATTERN)
    if params.has("Role"):
        changes["role"] = params.string("Role", pattern=ROLE_PATTERN)
    if params.has("Description"):
        changes["description"] = params.string("Description", max_len=256)
    if params.has("Timeout"):
        changes["timeout"] = params.integer("Timeout", minimum=1, maximum=900)
    if params.has("MemorySize"):
        changes["memory_size"] = params.integer("MemorySize", minimum=128, maximum=10240)
    if params.has("EphemeralStorage"):
        size = params.nested("EphemeralStorage").integer("Size", minimum=512, maximum=10240)
        if size is None:
            params.nested("EphemeralStorage").string("Size", required=True)
        changes["ephemeral_storage"] = size
    if params.has("Environment"):
        changes["environment"] = _environment(params)
    if params.has("Layers"):
        layers = params.sequence("Layers") or []
        for i, arn in enumerate(layers):
            params.string("Layers", value=arn, max_len=140, pattern=LAYER_PATTERN)
            if not isinstance(arn, str):
                layers[i] = str(arn)
        changes["layers"] = layers
    extra = {k: body[k] for k in PASSTHROUGH_SETTINGS if body.get(k) is not None}
    if params.has("Environment"):
        extra[ENVIRONMENT_DECLARED] = {}
    if params.has("LoggingConfig"):
        extra.update(logging_config.parse(params))
    if extra:
        changes["extra"] = extra
    return changes


def check_settings(changes: dict[str, Any]) -> None:
    """What the service checks once the request is well-formed: the runtime, the number
    of layers."""
    logging_config.check(changes.get("extra", {}))
    runtime = changes.get("runtime")
    if runtime is not None and runtime not in catalog.available():
        if runtime not in RUNTIMES:  # not a Lambda runtime at all: Lambda's own answer
            raise InvalidParameterValue(
                f"Value {runtime} at 'runtime' failed to satisfy constraint: Member must "
                f"satisfy enum value set: [{', '.join(catalog.names())}] or be a valid ARN"
            )
        raise InvalidParameterValue(
            f"The runtime parameter of {runtime} is not supported by this nimbus host. "
            f"Supported runtimes: {', '.join(catalog.names())}."
        )
    if len(changes.get("layers") or []) > 5:
        raise InvalidParameterValue("Cannot reference more than 5 layers.")


def parse_architectures(params: Params) -> list[str] | None:
    """Architectures as the service model checks it; violations are added to ``params``."""
    archs = params.sequence("Architectures")
    if archs is None:
        return None
    if len(archs) < 1:
        params._fail(archs, "Architectures", "have length greater than or equal to 1")
    elif len(archs) > 1:
        params._fail(archs, "Architectures", "have length less than or equal to 1")
    elif archs[0] not in ARCHITECTURES:
        params._fail(
            archs,
            "Architectures",
            "satisfy constraint: [Member must satisfy enum value set: "
            f"[{', '.join(ARCHITECTURES)}], Member must not be null]",
        )
    return archs


def check_architectures(archs: list[str] | None) -> None:
    """Functions run on this host's architecture, whatever they ask for."""
    if archs is not None and archs[0] != HOST_ARCH:
        raise InvalidParameterValue(
            f"nimbus runs functions on this host's architecture ({HOST_ARCH}); "
            f"{archs[0]} is not available here. Use Architectures=['{HOST_ARCH}']."
        )


def _environment(params: Params) -> dict[str, str]:
    env = params.nested("Environment")
    variables = env.mapping("Variables") or {}
    for key, value in variables.items():
        env.string("Variables", value=key, pattern=ENV_NAME_PATTERN)
        if not isinstance(value, str):
            env._fail(value, "Variables", "have string values")
    reserved = sorted(set(variables) & RESERVED_ENV)
    if reserved:
        raise InvalidParameterValue(
            "Lambda was unable to configure your environment variables because the "
            "environment variables you have provided contains reserved keys that are "
            "currently not supported for modification. Reserved keys used in this request: "
            + ", ".join(reserved)
        )
    measured = json.dumps(variables, separators=(",", ":"), ensure_ascii=False)
    if len(measured.encode()) > ENV_LIMIT:
        raise InvalidParameterValue(  # Lambda quotes what it measured
            "Lambda was unable to configure your environment variables because the "
            "environment variables you have provided exceeded the 4KB limit. String "
            f"measured: {measured}"
        )
    return {str(k): str(v) for k, v in variables.items()}


def require_zip_settings(runtime: str | None, handler: str | None) -> None:
    if not runtime or not handler:
        raise InvalidParameterValue(
            "Runtime and Handler are mandatory parameters for functions created with "
            "deployment packages."
        )
