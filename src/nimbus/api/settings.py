"""Validation of a function's settings (CreateFunction / UpdateFunctionConfiguration).

Both operations share one parser; CreateFunction adds the defaults Lambda applies.
"""

from __future__ import annotations

import json
import platform
from typing import Any

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


def parse_settings(body: dict[str, Any], params: Params) -> dict[str, Any]:
    """Return FunctionVersion field changes for every setting present in ``body``."""
    changes: dict[str, Any] = {}
    if params.has("Runtime"):
        runtime = params.string("Runtime")
        if runtime is not None and runtime not in catalog.available():
            raise InvalidParameterValue(
                f"The runtime parameter of {runtime} is not supported by this nimbus host. "
                f"Supported runtimes: {', '.join(catalog.names())}."
            )
        changes["runtime"] = runtime
    if params.has("Handler"):
        changes["handler"] = params.string("Handler", max_len=128, pattern=HANDLER_PATTERN)
    if params.has("Role"):
        changes["role"] = params.string("Role", max_len=10000, pattern=ROLE_PATTERN)
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
        layers = params.sequence("Layers", max_items=5) or []
        for i, arn in enumerate(layers):
            params.string("Layers", value=arn, max_len=140, pattern=LAYER_PATTERN)
            if not isinstance(arn, str):
                layers[i] = str(arn)
        changes["layers"] = layers
    extra = {k: body[k] for k in PASSTHROUGH_SETTINGS if body.get(k) is not None}
    if extra:
        changes["extra"] = extra
    params.check()
    return changes


def parse_architectures(params: Params) -> list[str] | None:
    archs = params.sequence("Architectures", max_items=1)
    params.check()
    if archs is None:
        return None
    if len(archs) != 1 or archs[0] not in ("x86_64", "arm64"):
        raise InvalidParameterValue(
            f"Architectures must be exactly one of ['x86_64', 'arm64'], got {archs}."
        )
    if archs[0] != HOST_ARCH:
        raise InvalidParameterValue(
            f"nimbus runs functions on this host's architecture ({HOST_ARCH}); "
            f"{archs[0]} is not available here. Use Architectures=['{HOST_ARCH}']."
        )
    return archs


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
    measured = json.dumps(variables, separators=(",", ":"))
    if len(measured.encode()) > ENV_LIMIT:
        raise InvalidParameterValue(
            "Lambda was unable to configure your environment variables because the "
            f"environment variables you have provided exceeded the 4KB limit. String "
            f"measured: {len(measured.encode())} bytes. Move large values to a file in the "
            "package or a layer."
        )
    return {str(k): str(v) for k, v in variables.items()}


def require_zip_settings(runtime: str | None, handler: str | None) -> None:
    if not runtime or not handler:
        raise InvalidParameterValue(
            "Runtime and Handler are mandatory parameters for functions created with "
            "deployment packages."
        )
