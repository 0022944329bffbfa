"""Records rendered as Lambda returns them (FunctionConfiguration, AliasConfiguration)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from nimbus.config import Config
from nimbus.models import LATEST, Alias, FunctionVersion


def lambda_timestamp(moment: datetime | None = None) -> str:
    """Lambda's LastModified format: ``2024-01-31T12:00:00.000+0000``."""
    moment = moment or datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def b64_sha(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def function_configuration(
    v: FunctionVersion, config: Config, arn_qualifier: str | None = None
) -> dict[str, Any]:
    """``arn_qualifier``: the alias the caller used, if any (Lambda echoes it in the ARN)."""
    qualifier = arn_qualifier or (None if v.version == LATEST else v.version)
    body: dict[str, Any] = {
        "FunctionName": v.function_name,
        "FunctionArn": config.function_arn(v.function_name, qualifier),
        "Runtime": v.runtime,
        "Role": v.role,
        "Handler": v.handler,
        "CodeSize": v.code_size,
        "Description": v.description,
        "Timeout": v.timeout,
        "MemorySize": v.memory_size,
        "LastModified": v.last_modified,
        "CodeSha256": b64_sha(v.code_sha256),
        "Version": v.version,
        "TracingConfig": {"Mode": "PassThrough"},
        "RevisionId": v.revision_id,
        "State": v.state,
        "LastUpdateStatus": "Successful",
        "PackageType": v.package_type,
        "Architectures": v.architectures,
        "EphemeralStorage": {"Size": v.ephemeral_storage},
        "SnapStart": {"ApplyOn": "None", "OptimizationStatus": "Off"},
        "LoggingConfig": {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{v.function_name}"},
    }
    if v.environment:
        body["Environment"] = {"Variables": v.environment}
    if v.layers:
        body["Layers"] = [{"Arn": layer.arn, "CodeSize": layer.code_size} for layer in v.layers]
    for key, value in v.extra.items():
        if key == "TracingConfig":
            body[key] = {"Mode": value.get("Mode", "PassThrough")}
        elif key == "LoggingConfig":
            body[key] = {**body[key], **value}
        elif key == "SnapStart":
            body[key] = {"ApplyOn": value.get("ApplyOn", "None"), "OptimizationStatus": "Off"}
        elif key == "ImageConfig":
            body["ImageConfigResponse"] = {"ImageConfig": value}
        elif key == "VpcConfig":
            body[key] = {**value, "VpcId": ""}
        else:
            body[key] = value
    return body


def alias_configuration(alias: Alias, config: Config) -> dict[str, Any]:
    body: dict[str, Any] = {
        "AliasArn": config.function_arn(alias.function_name, alias.name),
        "Name": alias.name,
        "FunctionVersion": alias.function_version,
        "Description": alias.description,
        "RevisionId": alias.revision_id,
    }
    if alias.routing:
        body["RoutingConfig"] = {"AdditionalVersionWeights": alias.routing}
    return body
