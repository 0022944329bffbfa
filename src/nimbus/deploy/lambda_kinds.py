"""Lambda's resources: functions, versions, aliases, permissions, URLs, layers, event
invoke configs and event source mappings, deployed with boto3's ``lambda`` client."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from typing import Any

from nimbus.deploy.kinds import Context, Kind, Made, ignore_missing, register, tags_dict
from nimbus.deploy.sam import LOCAL_BUCKET

_CODE_HELP = "use a local folder (SAM CodeUri / ContentUri) or inline ZipFile"
# What update_function_configuration is sent for a property the template no longer sets.
_DEFAULTS: dict[str, Any] = {
    "Description": "", "MemorySize": 128, "Timeout": 3, "Environment": {"Variables": {}},
    "Layers": [], "EphemeralStorage": {"Size": 512}, "DeadLetterConfig": {"TargetArn": ""},
    "TracingConfig": {"Mode": "PassThrough"}, "LoggingConfig": {"LogFormat": "Text"},
    "SnapStart": {"ApplyOn": "None"},
}  # fmt: skip
_CONFIG = ("Runtime", "Handler", "Role", *_DEFAULTS)


def _lam(ctx: Context) -> Any:
    return ctx.client("lambda")


def _code_problems(code: Any) -> list[tuple[str | None, str]]:
    if not isinstance(code, dict):
        return [("Code", f"Code must be a mapping: {_CODE_HELP}")]
    if "ZipFile" in code:
        return []
    if code.get("S3Bucket") == LOCAL_BUCKET:
        return []
    if "ImageUri" in code:
        return [("Code", "container images are not supported by nimbus: " + _CODE_HELP)]
    return [("Code", "S3 code locations are not supported by nimbus: " + _CODE_HELP)]


def _zip(ctx: Context, code: dict[str, Any], runtime: str) -> tuple[bytes, str]:
    """The zip bytes and the hash the comparison uses."""
    if "ZipFile" in code:  # CloudFormation writes inline code to index.py (index.js...)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            name = "index.py" if runtime.startswith("python") else "index.js"
            info = zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o100644 << 16
            zf.writestr(info, str(code["ZipFile"]))
        data = buf.getvalue()
        return data, base64.b64encode(hashlib.sha256(data).digest()).decode()
    package = ctx.packages[code["S3Key"]]
    return package.zip_bytes, package.sha256


def _role(ctx: Context, props: dict[str, Any]) -> str:
    return str(props.get("Role") or f"arn:aws:iam::{ctx.account}:role/{ctx.stack}-lambda")


@register
class Function(Kind):
    type_name = "AWS::Lambda::Function"
    properties = frozenset({
        "Code", "FunctionName", "Runtime", "Handler", "Role", "Description", "MemorySize",
        "Timeout", "Environment", "Layers", "EphemeralStorage", "DeadLetterConfig",
        "TracingConfig", "LoggingConfig", "SnapStart", "ReservedConcurrentExecutions", "Tags",
        "Architectures", "PackageType",
    })  # fmt: skip
    required = frozenset({"Code"})
    replace_on = frozenset({"FunctionName"})

    def check(self, props: dict[str, Any]) -> list[tuple[str | None, str]]:
        found = _code_problems(props.get("Code"))
        if props.get("PackageType", "Zip") != "Zip":
            found.append(("PackageType", "only Zip packages are supported by nimbus"))
        return found

    def identity(self, ctx: Context, props: dict[str, Any]) -> dict[str, Any]:
        _, sha = _zip(ctx, props["Code"], str(props.get("Runtime", "")))
        return {**props, "Code": {"Sha256": sha}}

    def _config(self, ctx: Context, props: dict[str, Any], full: bool) -> dict[str, Any]:
        config = {k: props[k] for k in _CONFIG if k in props}
        config["Role"] = _role(ctx, props)
        if full:
            config = {**_DEFAULTS, **config}
        return config

    def create(self, ctx: Context, logical_id: str, props: dict[str, Any]) -> Made:
        name = props.get("FunctionName") or ctx.name(logical_id)
        data, _ = _zip(ctx, props["Code"], str(props.get("Runtime", "")))
        extra: dict[str, Any] = {
            k: props[k] for k in ("Architectures", "PackageType") if k in props
        }
        if props.get("Tags"):
            extra["Tags"] = tags_dict(props["Tags"])
        made = _lam(ctx).create_function(
            FunctionName=name, Code={"ZipFile": data}, **self._config(ctx, props, False), **extra
        )
        try:
            self._concurrency(ctx, name, props, {})
        except Exception:
            _lam(ctx).delete_function(FunctionName=name)  # nothing half-made stays
            raise
        return Made(name, {"Arn": made["FunctionArn"]})

    def _concurrency(
        self, ctx: Context, name: str, new: dict[str, Any], old: dict[str, Any]
    ) -> None:
        value, before = (
            new.get("ReservedConcurrentExecutions"),
            old.get("ReservedConcurrentExecutions"),
        )
        if value == before:
            return
        if value is None:
            _lam(ctx).delete_function_concurrency(FunctionName=name)
        else:
            _lam(ctx).put_function_concurrency(
                FunctionName=name, ReservedConcurrentExecutions=int(value)
            )

    def update(
        self, ctx: Context, logical_id: str, made: Made, props: dict[str, Any],
        old: dict[str, Any],
    ) -> Made:  # fmt: skip
        lam, name = _lam(ctx), made.physical_id
        new_id, old_id = self.identity(ctx, props), old
        if new_id["Code"] != old_id.get("Code"):
            data, _ = _zip(ctx, props["Code"], str(props.get("Runtime", "")))
            lam.update_function_code(FunctionName=name, ZipFile=data)
        if any(new_id.get(k) != old_id.get(k) for k in _CONFIG):
            lam.update_function_configuration(FunctionName=name, **self._config(ctx, props, True))
        self._concurrency(ctx, name, props, old)
        tags, before = tags_dict(props.get("Tags")), tags_dict(old.get("Tags"))
        if tags != before:
            arn = made.attributes["Arn"]
            gone = [k for k in before if k not in tags]
            if gone:
                lam.untag_resource(Resource=arn, TagKeys=gone)
            if tags:
                lam.tag_resource(Resource=arn, Tags=tags)
        return made

    def delete(self, ctx: Context, made: Made) -> None:
        ignore_missing(_lam(ctx).delete_function, FunctionName=made.physical_id)


@register
class Version(Kind):
    type_name = "AWS::Lambda::Version"
    properties = frozenset({"FunctionName", "Description", "CodeSha256"})
    required = frozenset({"FunctionName"})
    replace_on = properties

    def create(self, ctx: Context, logical_id: str, props: dict[str, Any]) -> Made:
        extra = {k: props[k] for k in ("Description", "CodeSha256") if k in props}
        made = _lam(ctx).publish_version(FunctionName=props["FunctionName"], **extra)
        return Made(made["FunctionArn"], {"Version": made["Version"]})

    def delete(self, ctx: Context, made: Made) -> None:
        function, _, version = made.physical_id.rpartition(":")
        ignore_missing(_lam(ctx).delete_function, FunctionName=function, Qualifier=version)


def _routing(props: dict[str, Any]) -> dict[str, Any]:
    weights = (props.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or []
    return {"AdditionalVersionWeights": {
        str(w["FunctionVersion"]).rpartition(":")[2]: float(w["FunctionWeight"]) for w in weights
    }}  # fmt: skip


@register
class Alias(Kind):
    type_name = "AWS::Lambda::Alias"
    properties = frozenset({
        "FunctionName", "Name", "FunctionVersion", "Description", "RoutingConfig",
        "ProvisionedConcurrencyConfig",
    })  # fmt: skip
    required = frozenset({"FunctionName", "Name", "FunctionVersion"})
    replace_on = frozenset({"FunctionName", "Name"})

    def _provisioned(
        self, ctx: Context, arn: str, props: dict[str, Any], old: dict[str, Any]
    ) -> None:
        new, before = (
            props.get("ProvisionedConcurrencyConfig"),
            old.get("ProvisionedConcurrencyConfig"),
        )
        if new == before:
            return
        function, _, alias = arn.rpartition(":")
        if new is None:
            ignore_missing(_lam(ctx).delete_provisioned_concurrency_config,
                           FunctionName=function, Qualifier=alias)  # fmt: skip
        else:
            _lam(ctx).put_provisioned_concurrency_config(
                FunctionName=function, Qualifier=alias,
                ProvisionedConcurrentExecutions=int(new["ProvisionedConcurrentExecutions"]),
            )  # fmt: skip

    def _version(self, props: dict[str, Any]) -> str:
        return str(props["FunctionVersion"]).rpartition(":")[2]

    def create(self, ctx: Context, logical_id: str, props: dict[str, Any]) -> Made:
        made = _lam(ctx).create_alias(
            FunctionName=props["FunctionName"], Name=props["Name"],
            FunctionVersion=self._version(props), Description=props.get("Description", ""),
            RoutingConfig=_routing(props),
        )  # fmt: skip
        self._provisioned(ctx, made["AliasArn"], props, {})
        return Made(made["AliasArn"], {"AliasArn": made["AliasArn"]})

    def update(
        self, ctx: Context, logical_id: str, made: Made, props: dict[str, Any],
        old: dict[str, Any],
    ) -> Made:  # fmt: skip
        _lam(ctx).update_alias(
            FunctionName=props["FunctionName"], Name=props["Name"],
            FunctionVersion=self._version(props), Description=props.get("Description", ""),
            RoutingConfig=_routing(props),
        )  # fmt: skip
        self._provisioned(ctx, made.physical_id, props, old)
        return made

    def delete(self, ctx: Context, made: Made) -> None:
        function, _, alias = made.physical_id.rpartition(":")
        ignore_missing(_lam(ctx).delete_alias, FunctionName=function, Name=alias)


@register
class Permission(Kind):
    """Stored and reported by nimbus, not enforced (one account, no IAM)."""

    type_name = "AWS::Lambda::Permission"
    properties = frozenset({
        "Action", "FunctionName", "Principal", "SourceArn", "SourceAccount",
        "FunctionUrlAuthType", "InvokedViaFunctionUrl", "EventSourceToken", "PrincipalOrgID",
    })  # fmt: skip
    required = frozenset({"Action", "FunctionName", "Principal"})
    replace_on = properties

    def create(self, ctx: Context, logical_id: str, props: dict[str, Any]) -> Made:
        sid = logical_id[:100]
        _lam(ctx).add_permission(StatementId=sid, **props)
        return Made(f"{props['FunctionName']}|{sid}")

    def delete(self, ctx: Context, made: Made) -> None:
        function, _, sid = made.physical_id.rpartition("|")
        ignore_missing(_lam(ctx).remove_permission, FunctionName=function, StatementId=sid)


@register
class Url(Kind):
    type_name = "AWS::Lambda::Url"
    properties = frozenset({"TargetFunctionArn", "Qualifier", "AuthType", "Cors", "InvokeMode"})
    required = frozenset({"TargetFunctionArn", "AuthType"})
    replace_on = frozenset({"TargetFunctionArn", "Qualifier"})

    def _target(self, props: dict[str, Any]) -> dict[str, Any]:
        target = {"FunctionName": props["TargetFunctionArn"]}
        if props.get("Qualifier"):
            target["Qualifier"] = props["Qualifier"]
        return target

    def _settings(self, props: dict[str, Any]) -> dict[str, Any]:
        return {"AuthType": props["AuthType"], "Cors": props.get("Cors") or {},
                "InvokeMode": props.get("InvokeMode", "BUFFERED")}  # fmt: skip

    def create(self, ctx: Context, logical_id: str, props: dict[str, Any]) -> Made:
        made = _lam(ctx).create_function_url_config(**self._target(props), **self._settings(props))
        return Made(json.dumps(self._target(props), sort_keys=True),
                    {"FunctionUrl": made["FunctionUrl"], "FunctionArn": made["FunctionArn"]},
                    [made["FunctionUrl"]])  # fmt: skip

    def update(
        self, ctx: Context, logical_id: str, made: Made, props: dict[str, Any],
        old: dict[str, Any],
    ) -> Made:  # fmt: skip
        _lam(ctx).update_function_url_config(**self._target(props), **self._settings(props))
        return made

    def delete(self, ctx: Context, made: Made) -> None:
        ignore_missing(_lam(ctx).delete_function_url_config, **json.loads(made.physical_id))


@register
class LayerVersion(Kind):
    type_name = "AWS::Lambda::LayerVersion"
    properties = frozenset({
        "LayerName", "Description", "Content", "CompatibleRuntimes", "CompatibleArchitectures",
        "LicenseInfo",
    })  # fmt: skip
    required = frozenset({"Content"})
    replace_on = properties

    def check(self, props: dict[str, Any]) -> list[tuple[str | None, str]]:
        return [("Content", m) for _, m in _code_problems(props.get("Content"))]

    def identity(self, ctx: Context, props: dict[str, Any]) -> dict[str, Any]:
        _, sha = _zip(ctx, props["Content"], "")
        return {**props, "Content": {"Sha256": sha}}

    def create(self, ctx: Context, logical_id: str, props: dict[str, Any]) -> Made:
        data, _ = _zip(ctx, props["Content"], "")
        extra = {
            k: props[k]
            for k in ("Description", "CompatibleRuntimes", "CompatibleArchitectures", "LicenseInfo")
            if k in props
        }
        made = _lam(ctx).publish_layer_version(
            LayerName=props.get("LayerName") or ctx.name(logical_id, 140),
            Content={"ZipFile": data}, **extra,
        )  # fmt: skip
        return Made(made["LayerVersionArn"], {"LayerVersionArn": made["LayerVersionArn"]})

    def delete(self, ctx: Context, made: Made) -> None:
        layer, _, number = made.physical_id.rpartition(":")
        ignore_missing(_lam(ctx).delete_layer_version, LayerName=layer, VersionNumber=int(number))


_ESM_FIXED = frozenset({"EventSourceArn", "StartingPosition", "StartingPositionTimestamp"})


@register
class EventSourceMapping(Kind):
    type_name = "AWS::Lambda::EventSourceMapping"
    starts_events = True
    properties = frozenset({
        "EventSourceArn", "FunctionName", "BatchSize", "Enabled", "FilterCriteria",
        "FunctionResponseTypes", "MaximumBatchingWindowInSeconds", "ScalingConfig",
        "StartingPosition", "StartingPositionTimestamp", "MaximumRecordAgeInSeconds",
        "MaximumRetryAttempts", "BisectBatchOnFunctionError", "DestinationConfig", "Tags",
        "ParallelizationFactor",
    })  # fmt: skip
    required = frozenset({"FunctionName", "EventSourceArn"})
    replace_on = _ESM_FIXED

    def create(self, ctx: Context, logical_id: str, props: dict[str, Any]) -> Made:
        args = dict(props)
        if "Tags" in args:
            args["Tags"] = tags_dict(args["Tags"])
        made = _lam(ctx).create_event_source_mapping(**args)
        return Made(made["UUID"], {"Id": made["UUID"], "EventSourceMappingArn":
                                   made.get("EventSourceMappingArn", "")})  # fmt: skip

    def update(
        self, ctx: Context, logical_id: str, made: Made, props: dict[str, Any],
        old: dict[str, Any],
    ) -> Made:  # fmt: skip
        args = {k: v for k, v in props.items() if k not in _ESM_FIXED and k != "Tags"}
        _lam(ctx).update_event_source_mapping(UUID=made.physical_id, **args)
        return made

    def delete(self, ctx: Context, made: Made) -> None:
        ignore_missing(_lam(ctx).delete_event_source_mapping, UUID=made.physical_id)


@register
class EventInvokeConfig(Kind):
    type_name = "AWS::Lambda::EventInvokeConfig"
    properties = frozenset({
        "FunctionName", "Qualifier", "MaximumEventAgeInSeconds", "MaximumRetryAttempts",
        "DestinationConfig",
    })  # fmt: skip
    required = frozenset({"FunctionName", "Qualifier"})
    replace_on = frozenset({"FunctionName", "Qualifier"})

    def create(self, ctx: Context, logical_id: str, props: dict[str, Any]) -> Made:
        _lam(ctx).put_function_event_invoke_config(**props)
        key = {"FunctionName": props["FunctionName"], "Qualifier": props["Qualifier"]}
        return Made(json.dumps(key, sort_keys=True))

    def update(
        self, ctx: Context, logical_id: str, made: Made, props: dict[str, Any],
        old: dict[str, Any],
    ) -> Made:  # fmt: skip
        _lam(ctx).put_function_event_invoke_config(**props)
        return made

    def delete(self, ctx: Context, made: Made) -> None:
        ignore_missing(
            _lam(ctx).delete_function_event_invoke_config, **json.loads(made.physical_id)
        )
