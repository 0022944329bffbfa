"""Expanding a SAM template into CloudFormation with AWS's own transform
(``aws-sam-translator``, what CloudFormation runs for ``Transform: AWS::Serverless-2016-10-31``).

The transform only takes S3 code locations, so each local ``CodeUri`` / ``ContentUri`` folder
is built first (``package``) and stands in the template as ``s3://nimbus-local/<sha>``; the
deploy finds the package again by that key. Putting the code's hash in the key makes SAM's
``AutoPublishAlias`` publish a new version exactly when the code changed, as on AWS.

SAM features nimbus cannot serve are refused here, at the SAM line the user wrote, before
the transform turns them into resources with generated names. ``Api`` events and
``AWS::Serverless::Api`` (REST APIs) are served as HTTP APIs with payload format 1.0
routes (``rest_api_kinds``); what of them has no such equivalent is refused here."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nimbus.deploy.package import Package, under
from nimbus.deploy.problems import Problem
from nimbus.deploy.rest_api_kinds import rest_body_problems
from nimbus.deploy.template import Template, plain

SAM_TRANSFORM = "AWS::Serverless-2016-10-31"
LOCAL_BUCKET = "nimbus-local"
SAM_TYPES = frozenset({
    "AWS::Serverless::Function", "AWS::Serverless::LayerVersion", "AWS::Serverless::HttpApi",
    "AWS::Serverless::Api",
})  # fmt: skip
EVENT_TYPES = frozenset({"Api", "HttpApi", "S3", "SNS", "SQS", "Schedule", "ScheduleV2"})
# What of a REST API (an Api event, AWS::Serverless::Api, Globals.Api) nimbus serves.
API_EVENT_PROPERTIES = frozenset({"Path", "Method", "RestApiId", "TimeoutInMillis"})
REST_API_PROPERTIES = frozenset({
    "StageName", "Name", "Description", "Variables", "DefinitionBody", "OpenApiVersion",
    "Tags", "DisableExecuteApiEndpoint",
})  # fmt: skip
_REST_WHY = {
    "Auth": "authorizers, API keys, usage plans and resource policies of REST APIs are not "
    "supported",
    "Cors": "CORS of REST APIs is not supported (an HttpApi's CorsConfiguration is)",
    "BinaryMediaTypes": "binary media types are not supported (HTTP APIs base64-encode "
    "binary bodies by their content type)",
    "DefinitionUri": "give the definition inline as DefinitionBody",
    "RequestModel": "request models and validation are not supported",
    "RequestParameters": "request parameters (validation, caching) are not supported",
    "Models": "models are not supported",
    "GatewayResponses": "gateway responses are not supported",
}

Builder = Callable[[Path, str | None], Package]


@dataclass
class Expanded:
    """The CloudFormation the transform produced, and what the deploy needs beside it."""

    resources: dict[str, Any]
    outputs: dict[str, Any]
    packages: dict[str, Package] = field(default_factory=dict)  # S3Key -> package
    problems: list[Problem] = field(default_factory=list)
    # Generated logical ids whose problem was already reported at their SAM source.
    covered: set[str] = field(default_factory=set)


def uses_sam(template: Template) -> bool:
    transform = template.body.get("Transform")
    names = transform if isinstance(transform, list) else [transform]
    return SAM_TRANSFORM in names


def origin(template: Template, logical_id: str) -> str:
    """The resource of the user's template a (possibly generated) resource comes from."""
    resources = template.resources
    if logical_id in resources:
        return logical_id
    sources = [lid for lid in resources if logical_id.startswith(lid)]
    if sources:
        return max(sources, key=len)
    for lid, res in resources.items():  # implicit APIs come from a function's events
        events = (res.get("Properties") or {}).get("Events") if isinstance(res, dict) else None
        for event in (events or {}).values() if isinstance(events, dict) else ():
            kind = event.get("Type") if isinstance(event, dict) else None
            if (kind, logical_id.startswith("ServerlessRestApi")) == ("Api", True) or (
                kind == "HttpApi" and logical_id.startswith("ServerlessHttpApi")
            ):
                return lid
    return logical_id


def _runtime(props: dict[str, Any], globals_fn: dict[str, Any]) -> str | None:
    runtime = props.get("Runtime", globals_fn.get("Runtime"))
    return runtime if isinstance(runtime, str) else None


def _local_code(
    template: Template, lid: str, key: str, value: Any, runtime: str | None,
    build: Builder, out: Expanded, prefix: str = "",
) -> Any:  # fmt: skip
    """The S3 stand-in for a local folder, or the problem with it. ``prefix``: the folder
    inside the zip the build goes to (``python/`` for a Python layer)."""
    line = template.line("Resources", lid, "Properties", key)
    if isinstance(value, str) and not value.startswith("s3://"):
        folder = (template.root / value).resolve()
        if not folder.is_dir():
            out.problems.append(Problem(lid, line, f"{key} {value!r}: no such folder"))
            return value
        package = build(folder, runtime)
        if prefix:
            package = under(package, prefix)
        s3key = package.sha256.replace("/", "_").replace("+", "-")
        out.packages[s3key] = package
        return f"s3://{LOCAL_BUCKET}/{s3key}"
    out.problems.append(
        Problem(lid, line, f"{key} must be a local folder: S3 code locations are not supported")
    )
    return value


def _check_events(template: Template, lid: str, events: Any, out: Expanded) -> None:
    if not isinstance(events, dict):
        return
    for name, event in events.items():
        kind = event.get("Type") if isinstance(event, dict) else None
        line = template.line("Resources", lid, "Properties", "Events", name, "Type")
        if kind == "Api":
            props = event.get("Properties")
            for key in props if isinstance(props, dict) else ():
                if key not in API_EVENT_PROPERTIES:
                    keys = ("Resources", lid, "Properties", "Events", name, "Properties", key)
                    out.problems.append(Problem(lid, template.line(*keys), (
                        f"event {name} (Type: Api): property {key}: "
                        f"{_REST_WHY.get(key, 'it is not supported by nimbus deploy')}"
                    )))  # fmt: skip
        elif kind == "SNS" and isinstance(event.get("Properties"), dict) and (
            event["Properties"].get("SqsSubscription")
        ):
            keys = ("Resources", lid, "Properties", "Events", name, "Properties", "SqsSubscription")
            out.problems.append(Problem(lid, template.line(*keys), (
                f"event {name} (Type: SNS): SqsSubscription is not supported (it needs an SQS "
                "queue policy); subscribe an AWS::SQS::Queue with AWS::SNS::Subscription and "
                "give the function an SQS event"
            )))  # fmt: skip
        elif kind not in EVENT_TYPES:
            out.problems.append(Problem(lid, line, (
                f"event {name}: Type {kind} is not supported by nimbus deploy (supported: "
                f"{', '.join(sorted(EVENT_TYPES))})"
            )))  # fmt: skip
            out.covered.add(f"{lid}{name}")


def _check_rest_api(
    template: Template, where: str, keys: tuple[str, ...], props: Any, out: Expanded
) -> None:
    """An AWS::Serverless::Api's properties (or Globals.Api): what nimbus cannot serve."""
    if not isinstance(props, dict):
        return
    for key, value in props.items():
        if key not in REST_API_PROPERTIES:
            why = _REST_WHY.get(key, "it is not supported by nimbus deploy")
            out.problems.append(Problem(where, template.line(*keys, key), (
                f"REST API property {key}: {why}"
            )))  # fmt: skip
        elif key == "DefinitionBody":
            for inner, message in rest_body_problems(value):
                line = template.line(*keys, key, *inner)
                out.problems.append(Problem(where, line, f"DefinitionBody: {message}"))


def expand(template: Template, parameters: dict[str, Any], region: str, build: Builder) -> Expanded:
    """The template's CloudFormation (the template itself when it does not use SAM)."""
    from nimbus.deploy.intrinsics import is_intrinsic

    out = Expanded({}, {})
    body = copy.deepcopy(plain(template.body))
    globals_fn = ((body.get("Globals") or {}).get("Function") or {}) if uses_sam(template) else {}
    if uses_sam(template):
        globals_api = (body.get("Globals") or {}).get("Api")
        _check_rest_api(template, "Globals", ("Globals", "Api"), globals_api, out)
    for lid, res in body["Resources"].items():
        if not isinstance(res, dict):
            continue
        kind, props = res.get("Type"), res.get("Properties") or {}
        if kind == "AWS::Serverless::Function":
            code = props.get("CodeUri", globals_fn.get("CodeUri"))
            if "InlineCode" not in props and code is not None and not is_intrinsic(code):
                props["CodeUri"] = _local_code(
                    template, lid, "CodeUri", code, _runtime(props, globals_fn), build, out
                )
            _check_events(template, lid, props.get("Events"), out)
            if "DeploymentPreference" in props:
                line = template.line("Resources", lid, "Properties", "DeploymentPreference")
                out.problems.append(Problem(lid, line, "DeploymentPreference (CodeDeploy) is "
                                            "not supported: nimbus has no CodeDeploy"))  # fmt: skip
        elif kind == "AWS::Serverless::Api":
            _check_rest_api(template, lid, ("Resources", lid, "Properties"), props, out)
        elif kind == "AWS::Serverless::LayerVersion":
            content = props.get("ContentUri")
            if content is not None and not is_intrinsic(content):
                runtimes = props.get("CompatibleRuntimes") or [None]
                # As `sam build` builds a layer whose Metadata says BuildMethod: python3.x:
                # the folder and its requirements under python/, on the layer's sys.path.
                method = (res.get("Metadata") or {}).get("BuildMethod")
                python = isinstance(method, str) and method.startswith("python3")
                props["ContentUri"] = _local_code(
                    template, lid, "ContentUri", content, method if python else runtimes[0],
                    build, out, "python/" if python else "",
                )  # fmt: skip
        elif (
            isinstance(kind, str) and kind.startswith("AWS::Serverless::") and kind not in SAM_TYPES
        ):
            out.problems.append(Problem(
                lid, template.line("Resources", lid, "Type"),
                f"resource type {kind} is not supported: nimbus has no such service",
            ))  # fmt: skip
            out.covered.add(lid)
    if not uses_sam(template):
        out.resources, out.outputs = body["Resources"], body.get("Outputs") or {}
        return out
    if out.problems:  # the transform would only add noise about the same items: check the rest
        out.resources = {
            lid: res
            for lid, res in body["Resources"].items()
            if not str(res.get("Type", "")).startswith("AWS::Serverless::")
        }
        out.outputs = {}
        return out
    translated = _translate(body, parameters, region, template, out)
    if translated is not None:
        out.resources = translated.get("Resources") or {}
        out.outputs = translated.get("Outputs") or {}
    return out


def _translate(
    body: dict[str, Any], parameters: dict[str, Any], region: str, template: Template,
    out: Expanded,
) -> dict[str, Any] | None:  # fmt: skip
    import boto3
    from samtranslator.model.exceptions import (
        InvalidDocumentException,
        InvalidResourceException,
    )
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import (
        Translator,
    )

    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=region))
    try:
        result: dict[str, Any] = translator.translate(
            body, parameter_values=dict(parameters), get_managed_policy_map=lambda: {}
        )
        return result
    except InvalidDocumentException as exc:
        for cause in exc.causes:
            lid = getattr(cause, "_logical_id", None) if isinstance(
                cause, InvalidResourceException
            ) else None  # fmt: skip
            where = lid or "template"
            line = template.line("Resources", lid) if lid else None
            out.problems.append(Problem(where, line, f"SAM: {cause.message}"))
    return None
