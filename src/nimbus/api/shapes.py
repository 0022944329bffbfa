"""Records rendered as Lambda returns them (FunctionConfiguration, AliasConfiguration)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from nimbus.api import logging_config
from nimbus.config import Config
from nimbus.models import LATEST, Alias, FunctionVersion


def lambda_timestamp(moment: datetime | None = None) -> str:
    """Lambda's LastModified format: ``2024-01-31T12:00:00.000+0000``."""
    moment = moment or datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def b64_sha(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


# Set in a version's ``extra`` when the client sent Environment, even with no variables:
# Lambda then answers ``"Environment": {"Variables": {}}``, and nothing when it sent none.
ENVIRONMENT_DECLARED = "Environment"


def function_configuration(
    v: FunctionVersion,
    config: Config,
    arn_qualifier: str | None = None,
    *,
    listed: bool = False,
) -> dict[str, Any]:
    """Lambda's FunctionConfiguration of ``v``.

    ``arn_qualifier`` is what FunctionArn ends with, as Lambda echoes what the caller
    named: an alias, ``$LATEST`` when asked for by name, "" for the unqualified ARN (e.g.
    CreateFunction with Publish answers version 1 under the function's ARN); None means
    the version's own (a number; nothing for $LATEST). ``listed``: an item of
    ListFunctions or ListVersionsByFunction, which carry no State or LastUpdateStatus.
    """
    if arn_qualifier is None:
        qualifier = None if v.version == LATEST else v.version
    else:
        qualifier = arn_qualifier or None
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
        "LoggingConfig": logging_config.render(v),
    }
    if listed:
        del body["State"], body["LastUpdateStatus"]
    if v.environment or ENVIRONMENT_DECLARED in v.extra:
        body["Environment"] = {"Variables": v.environment}
    if v.layers:
        body["Layers"] = [{"Arn": layer.arn, "CodeSize": layer.code_size} for layer in v.layers]
    for key, value in v.extra.items():
        if key == ENVIRONMENT_DECLARED:
            continue
        if key == "TracingConfig":
            body[key] = {"Mode": value.get("Mode", "PassThrough")}
        elif key.startswith("LoggingConfig"):
            continue  # rendered above, from all of its stored members
        elif key == "SnapStart":
            # As Lambda: "On" for the published versions of a function with SnapStart.
            apply_on = value.get("ApplyOn", "None")
            on = apply_on == "PublishedVersions" and v.version != "$LATEST"
            body[key] = {"ApplyOn": apply_on, "OptimizationStatus": "On" if on else "Off"}
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
