"""Functions and versions: Create/Get/List/Update/Delete, PublishVersion, code download."""

from __future__ import annotations

import base64
import binascii
import io
import re
import uuid
import zipfile
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nimbus import egress_rules
from nimbus.api.code_s3 import S3Location, s3_location, store_from_s3
from nimbus.api.names import (
    ALIAS_PATTERN,
    FUNCTION_NAME,
    NAMESPACED,
    parse_function_ref,
    unqualified,
)
from nimbus.api.services import Services, services
from nimbus.api.settings import (
    check_architectures,
    check_settings,
    parse_architectures,
    parse_settings,
    require_zip_settings,
)
from nimbus.api.shapes import b64_sha, function_configuration, lambda_timestamp
from nimbus.api.wire import (
    Params,
    empty_response,
    json_response,
    page_response,
    query_int,
    read_json,
)
from nimbus.errors import (
    CodeStorageExceeded,
    InvalidParameterValue,
    RequestTooLarge,
    ResourceNotFound,
    ServiceError,
    ValidationError,
)
from nimbus.models import LATEST, FunctionVersion, LayerRef
from nimbus.store.code import StoredCode
from nimbus.store.functions import check_revision, snapstart_on, snapstart_runtime
from nimbus.threads import blocking

# Lambda limits the request (base64 of a 50 MB zip, plus JSON) for code uploads.
CODE_REQUEST_LIMIT = 69_905_067
PACKAGE_TYPES = ("Zip", "Image")


async def resolve_version(
    svc: Services, raw: str, qualifier: str | None
) -> tuple[FunctionVersion, str]:
    """Find the version a (possibly alias-) qualified name means; also return the
    qualifier as the caller named it ("" for none), which Lambda echoes in FunctionArn."""
    ref = parse_function_ref(raw, svc.config, qualifier)
    q = ref.qualifier or LATEST
    try:
        if q == LATEST or q.isdigit():
            version = await blocking(svc.engine.functions.get_version, ref.name, q)
            return version, ref.qualifier or ""
        alias = await blocking(svc.engine.aliases.get, ref.name, q)
        version = await blocking(
            svc.engine.functions.get_version, ref.name, alias.function_version
        )
    except ResourceNotFound as exc:  # function, version or alias: Lambda names it as asked
        arn = svc.config.function_arn(ref.name, ref.qualifier)
        raise ResourceNotFound(f"Function not found: {arn}") from exc
    return version, q


def decode_zip(
    body: dict[str, Any], where: str, config_limit: int, operation: str
) -> bytes | S3Location:
    """The package a request carries: its zip's bytes (``ZipFile``), or where in nimbus'
    buckets it is (``S3Bucket``/``S3Key``), read by ``store_code``."""
    code = body if where == "" else body.get(where.rstrip("."))
    if not isinstance(code, dict):
        raise InvalidParameterValue(
            f"{where.rstrip('.')} is required: pass {where}ZipFile with your .zip package, "
            f"or {where}S3Bucket and {where}S3Key."
        )
    location = s3_location(code, where)
    if location is not None:
        return location
    if code.get("ImageUri"):
        raise InvalidParameterValue(
            f"{where}ImageUri is not supported: nimbus runs .zip packages. Upload the package "
            f"with {where}ZipFile."
        )
    raw = code.get("ZipFile")
    if not isinstance(raw, str) or not raw:
        raise InvalidParameterValue(
            f"{where}ZipFile is required: pass your deployment package (a .zip) as {where}ZipFile."
        )
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidParameterValue(f"{where}ZipFile is not valid base64: {exc}") from exc
    if len(data) > config_limit:
        raise RequestTooLarge(
            f"Zipped package is {len(data)} bytes; it must be at most {config_limit} bytes for "
            f"the {operation} operation. Move dependencies into a layer."
        )
    if not zipfile.is_zipfile(io.BytesIO(data)):  # not a zip at all: Lambda's words
        raise InvalidParameterValue(
            "Could not unzip uploaded file. Please check your file, then try to upload again."
        )
    return data


async def store_code(svc: Services, data: bytes | S3Location) -> StoredCode:
    """Store a function's or a layer's zip, within the account's code storage."""
    used = await blocking(lambda: svc.engine.functions.usage()[1] + svc.layers.total_size())
    if isinstance(data, S3Location):
        left = svc.config.total_code_size - used
        return await blocking(
            store_from_s3, svc.s3, svc.engine.code, data, svc.config.max_unzipped_size, left
        )
    if used + len(data) > svc.config.total_code_size:
        raise CodeStorageExceeded(
            f"Code storage limit exceeded: {used} of {svc.config.total_code_size} bytes in use. "
            "Delete unused versions or functions."
        )
    return await blocking(svc.engine.code.put, data)


async def checked_code(svc: Services, data: bytes | S3Location) -> StoredCode:
    """What a package declares, checked before anything is stored; a package from S3 is
    checked as it is copied in (unreferenced until a version names it, so a refusal
    after this leaves only what the code store's garbage collection removes)."""
    if isinstance(data, S3Location):
        return await store_code(svc, data)
    return await blocking(svc.engine.code.validate, data)


async def attach_layers(svc: Services, settings: dict[str, Any]) -> None:
    """Layers as given (ARNs) -> the layer versions' content, or InvalidParameterValue."""
    if "layers" in settings:
        settings["layers"] = await blocking(svc.layers.resolve, settings["layers"])


def check_combined_size(svc: Services, code_unzipped: int, layers: list[LayerRef]) -> None:
    """Lambda's limit on the function's files and its layers' together, unzipped."""
    total = code_unzipped + sum(layer.unzipped_size for layer in layers)
    limit = svc.config.max_unzipped_size
    if layers and total > limit:
        raise InvalidParameterValue(
            f"Function code combined with layers exceeds the maximum allowed size of {limit} "
            f"bytes. The actual size is {total} bytes. Use fewer or smaller layers, or move "
            "files out of the package."
        )


async def create_function(request: Request) -> Response:
    svc = services(request)
    body = await read_json(request, "CreateFunction", CODE_REQUEST_LIMIT)
    params = Params(body)
    raw_name = params.string(
        "FunctionName",
        required=True,
        min_len=1,
        max_len=FUNCTION_NAME.max_len,
        pattern=FUNCTION_NAME.pattern,
    )
    if not params.has("Role"):
        params.string("Role", required=True)
    publish = params.boolean("Publish") or False
    tags = validate_tags(params)
    settings = parse_settings(body, params)
    archs = parse_architectures(params)
    package_type = params.enum("PackageType", PACKAGE_TYPES) or "Zip"
    params.check()
    assert raw_name is not None
    name = created_name(svc, raw_name)
    check_settings(settings)
    check_apply_on(settings)
    check_architectures(archs)
    if package_type != "Zip":
        raise InvalidParameterValue(
            f"PackageType {package_type} is not supported: nimbus runs .zip packages."
        )
    require_zip_settings(settings.get("runtime"), settings.get("handler"))
    await attach_layers(svc, settings)
    data = decode_zip(body, "Code.", svc.config.max_zip_size, "CreateFunction")
    checked: StoredCode | None = None
    if settings.get("layers"):
        checked = await checked_code(svc, data)
        check_combined_size(svc, checked.unzipped_size, settings["layers"])
    if checked is not None and isinstance(data, S3Location):
        stored = checked  # copied in while it was checked
    else:
        stored = await store_code(svc, data)
    latest = FunctionVersion(
        function_name=name,
        version=LATEST,
        runtime=None,
        handler=None,
        role="",
        code_sha256=stored.sha256_hex,
        code_size=stored.size,
        last_modified=lambda_timestamp(),
        revision_id=str(uuid.uuid4()),
        architectures=archs or ["x86_64"],
    ).replace(**settings)
    check_snapstart(latest)
    created = await blocking(svc.engine.functions.create, latest, tags, publish)
    await make_snapshot(svc, created)
    # With Publish, Lambda answers version 1 under the function's (unqualified) ARN.
    return json_response(function_configuration(created, svc.config, ""), 201)


def created_name(svc: Services, raw: str) -> str:
    """The name of the function CreateFunction is asked for: a name, or this region's
    and account's (partial) ARN of it, without a qualifier."""
    ref = parse_function_ref(raw, svc.config, shape=FUNCTION_NAME)
    if ref.qualifier is not None:
        raise InvalidParameterValue(
            f"FunctionName {raw} names a version or alias; CreateFunction creates a "
            "function: pass its name or its unqualified ARN."
        )
    if len(ref.name) > 64:  # Lambda's words in a validation message, as this exception
        raise InvalidParameterValue(
            f"1 validation error detected: Value '{raw}' at 'functionName' failed to satisfy "
            "constraint: Member must have length less than or equal to 64"
        )
    return ref.name


def validate_tags(params: Params) -> dict[str, str]:
    tags = params.mapping("Tags") or {}
    if len(tags) > 50:
        raise InvalidParameterValue(f"A function can have at most 50 tags; {len(tags)} given.")
    for key, value in tags.items():
        params.string("Tags", value=key, min_len=1, max_len=128)
        if key.lower().startswith("aws:"):
            raise InvalidParameterValue(f"Tag key '{key}' uses the reserved prefix 'aws:'.")
        if not isinstance(value, str) or len(value) > 256:
            raise InvalidParameterValue(
                f"Tag value for '{key}' must be a string of at most 256 characters."
            )
        if key == egress_rules.TAG:
            try:
                egress_rules.parse_rules(value, f"tag {key}", loopback=False)
            except ValueError as exc:
                raise InvalidParameterValue(str(exc)) from exc
    return {str(k): str(v) for k, v in tags.items()}


async def get_function(request: Request) -> Response:
    svc = services(request)
    version, alias = await resolve_version(
        svc, request.path_params["name"], request.query_params.get("Qualifier")
    )
    record = await blocking(svc.engine.functions.get_record, version.function_name)
    body: dict[str, Any] = {
        "Configuration": function_configuration(version, svc.config, alias),
        "Code": {
            "RepositoryType": "S3",
            "Location": svc.signer.url(str(request.base_url), version.code_sha256),
        },
    }
    if record.tags:
        body["Tags"] = record.tags
    if record.reserved_concurrency is not None:
        body["Concurrency"] = {"ReservedConcurrentExecutions": record.reserved_concurrency}
    return json_response(body)


async def get_function_configuration(request: Request) -> Response:
    svc = services(request)
    version, alias = await resolve_version(
        svc, request.path_params["name"], request.query_params.get("Qualifier")
    )
    return json_response(function_configuration(version, svc.config, alias))


async def list_functions(request: Request) -> Response:
    svc = services(request)
    max_items = query_int(request, "MaxItems", 50, 1, 10000)
    fv = request.query_params.get("FunctionVersion")
    params = Params({"FunctionVersion": fv})
    params.enum("FunctionVersion", ("ALL",))
    params.check()
    marker = request.query_params.get("Marker")
    page = await blocking(svc.engine.functions.list_functions, marker, max_items, fv == "ALL")
    # With FunctionVersion=ALL, Lambda names the $LATEST entries by their qualified ARN.
    latest = LATEST if fv == "ALL" else ""
    items = [
        function_configuration(v, svc.config, latest if v.version == LATEST else None, listed=True)
        for v in page.items
    ]
    return page_response("Functions", items, page.next_marker)


async def list_versions(request: Request) -> Response:
    svc = services(request)
    name = unqualified(request.path_params["name"], svc.config, NAMESPACED)
    max_items = query_int(request, "MaxItems", 50, 1, 10000)
    page = await blocking(
        svc.engine.functions.list_versions, name, request.query_params.get("Marker"), max_items
    )
    items = [function_configuration(v, svc.config, v.version, listed=True) for v in page.items]
    return page_response("Versions", items, page.next_marker)


async def update_function_code(request: Request) -> Response:
    svc = services(request)
    name = unqualified(request.path_params["name"], svc.config)
    body = await read_json(request, "UpdateFunctionCode", CODE_REQUEST_LIMIT)
    params = Params(body)
    publish = params.boolean("Publish") or False
    dry_run = params.boolean("DryRun") or False
    revision = params.string("RevisionId")
    archs = parse_architectures(params)
    params.check()
    check_architectures(archs)
    data = decode_zip(body, "", svc.config.max_zip_size, "UpdateFunctionCode")
    current = await blocking(svc.engine.functions.get_version, name, LATEST)
    if dry_run or current.layers:  # checked before anything is stored
        stored = await checked_code(svc, data)
        check_combined_size(svc, stored.unzipped_size, current.layers)
    # A package from S3 was copied in while it was checked: not again.
    if not dry_run and not (current.layers and isinstance(data, S3Location)):
        stored = await store_code(svc, data)

    def change(v: FunctionVersion) -> FunctionVersion:
        return v.replace(
            code_sha256=stored.sha256_hex,
            code_size=stored.size,
            architectures=archs or v.architectures,
            last_modified=lambda_timestamp(),
            revision_id=str(uuid.uuid4()),
        )

    if dry_run:
        check_revision(revision, current.revision_id)
        return json_response(function_configuration(change(current), svc.config))
    updated = await blocking(svc.engine.functions.update_latest, name, change, revision, publish)
    await make_snapshot(svc, updated)
    return json_response(function_configuration(updated, svc.config))


async def update_function_configuration(request: Request) -> Response:
    svc = services(request)
    name = unqualified(request.path_params["name"], svc.config)
    body = await read_json(request, "UpdateFunctionConfiguration")
    params = Params(body)
    revision = params.string("RevisionId")
    settings = parse_settings(body, params)
    params.check()
    check_settings(settings)
    check_apply_on(settings)
    await attach_layers(svc, settings)
    if settings.get("layers"):
        current = await blocking(svc.engine.functions.get_version, name, LATEST)
        await blocking(svc.engine.code.ensure, current.code_sha256)  # another node's upload
        code_unzipped = await blocking(svc.engine.code.tree_size, current.code_sha256)
        check_combined_size(svc, code_unzipped, settings["layers"])

    def change(v: FunctionVersion) -> FunctionVersion:
        extra = {**v.extra, **settings.pop("extra", {})}
        new = v.replace(**settings, extra=extra)
        require_zip_settings(new.runtime, new.handler)
        check_snapstart(new)
        return new.replace(last_modified=lambda_timestamp(), revision_id=str(uuid.uuid4()))

    updated = await blocking(svc.engine.functions.update_latest, name, change, revision)
    return json_response(function_configuration(updated, svc.config))


async def delete_function(request: Request) -> Response:
    svc = services(request)
    ref = parse_function_ref(
        request.path_params["name"], svc.config, request.query_params.get("Qualifier")
    )
    # Lambda refuses these before it looks for the function.
    if ref.qualifier == LATEST:
        raise InvalidParameterValue(
            "$LATEST version cannot be deleted without deleting the function."
        )
    if ref.qualifier is not None and re.fullmatch(ALIAS_PATTERN, ref.qualifier):
        raise InvalidParameterValue("Deletion of aliases is not currently supported.")
    await blocking(svc.engine.functions.delete, ref.name, ref.qualifier)
    return empty_response(204)


async def publish_version(request: Request) -> Response:
    svc = services(request)
    name = unqualified(request.path_params["name"], svc.config)
    params = Params(await read_json(request, "PublishVersion"))
    description = params.string("Description", max_len=256)
    sha = params.string("CodeSha256")
    revision = params.string("RevisionId")
    params.check()
    version = await blocking(svc.engine.functions.publish, name, description, sha, revision)
    await make_snapshot(svc, version)
    return json_response(function_configuration(version, svc.config), 201)


def check_apply_on(settings: dict[str, Any]) -> None:
    """SnapStart.ApplyOn as the service model's enum allows (Lambda's message)."""
    snap = settings.get("extra", {}).get("SnapStart")
    if snap is None:
        return
    apply_on = snap.get("ApplyOn") if isinstance(snap, dict) else snap
    if apply_on not in ("PublishedVersions", "None"):
        raise ValidationError(
            f"1 validation error detected: Value '{apply_on}' at 'snapStart.applyOn' failed "
            "to satisfy constraint: Member must satisfy enum value set: [PublishedVersions, None]"
        )


def check_snapstart(v: FunctionVersion) -> None:
    """What Lambda refuses with SnapStart on: a runtime without it, Amazon EFS, more
    than 512 MB of ephemeral storage."""
    if (v.extra.get("SnapStart") or {}).get("ApplyOn") != "PublishedVersions":
        return
    if not snapstart_runtime(v.runtime):
        raise InvalidParameterValue(f"{v.runtime} is not supported for SnapStart enabled "
                                    "functions.")
    if v.extra.get("FileSystemConfigs"):
        raise InvalidParameterValue("SnapStart is not supported for functions with Amazon "
                                    "EFS file systems (FileSystemConfigs). Remove one of them.")
    if v.ephemeral_storage > 512:
        raise InvalidParameterValue(
            f"SnapStart is not supported for functions with ephemeral storage (/tmp) above "
            f"512 MB; this function has {v.ephemeral_storage} MB. Lower EphemeralStorage.Size "
            "or turn SnapStart off.")


async def make_snapshot(svc: Services, version: FunctionVersion) -> None:
    """A published SnapStart version (Pending): its template is made in the background
    (init runs once), then the version is Active, or Failed (nimbus.invocation.snapstart)."""
    if version.state == "Pending" and snapstart_on(version):
        record = await blocking(svc.engine.functions.get_record, version.function_name)
        svc.engine.invoker.snapshots.prepare(version, record)


async def download_code(request: Request) -> Response:
    svc = services(request)
    sha = request.path_params["sha"]
    svc.signer.verify(
        sha, request.query_params.get("Expires"), request.query_params.get("Signature")
    )
    try:
        await blocking(svc.engine.code.ensure, sha)  # uploaded through another node
        data = await blocking(svc.engine.code.read, sha)
    except (FileNotFoundError, ServiceError) as exc:
        raise ResourceNotFound("This code package no longer exists.") from exc
    return Response(
        data,
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{sha}.zip"',
            "x-amz-meta-sha256": b64_sha(sha),
        },
    )


_F = "/2015-03-31/functions"
routes = [
    Route(_F, create_function, methods=["POST"]),
    Route(_F + "/", create_function, methods=["POST"]),
    Route(_F, list_functions, methods=["GET"]),
    Route(_F + "/", list_functions, methods=["GET"]),
    Route(_F + "/{name}", get_function, methods=["GET"]),
    Route(_F + "/{name}", delete_function, methods=["DELETE"]),
    Route(_F + "/{name}/configuration", get_function_configuration, methods=["GET"]),
    Route(_F + "/{name}/configuration", update_function_configuration, methods=["PUT"]),
    Route(_F + "/{name}/code", update_function_code, methods=["PUT"]),
    Route(_F + "/{name}/versions", publish_version, methods=["POST"]),
    Route(_F + "/{name}/versions", list_versions, methods=["GET"]),
    Route("/_nimbus/code/{sha:str}.zip", download_code, methods=["GET"]),
]
