"""Layers: PublishLayerVersion, GetLayerVersion(ByArn), ListLayers, ListLayerVersions,
DeleteLayerVersion.

A layer version's zip is stored like a function's (validated, content-addressed) and is
mounted read-only at ``/opt`` of the functions that list it in ``Layers`` (several merge,
later ones winning). Python finds ``/opt/python`` and its ``lib/pythonX.Y/site-packages``,
as on Lambda. Content comes inline (``Content.ZipFile``) or from one of nimbus' buckets
(``Content.S3Bucket/S3Key``, see ``code_s3.py``). Permissions are in ``layer_policies.py``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nimbus.api.functions import CODE_REQUEST_LIMIT, decode_zip, store_code
from nimbus.api.services import Services, services
from nimbus.api.settings import (
    ARCHITECTURES,
    LISTED_RUNTIME_ENUM,
    LISTED_RUNTIMES,
    RUNTIMES,
)
from nimbus.api.shapes import b64_sha, lambda_timestamp
from nimbus.api.wire import (
    Params,
    decimal_int,
    empty_response,
    json_response,
    page_response,
    query_int,
    read_json,
)
from nimbus.errors import InvalidParameterValue, ResourceNotFound
from nimbus.models import LayerVersion
from nimbus.threads import blocking

# The service model's LayerName / LayerNameOrArn: a name, or the layer's ARN.
NAME_PATTERN = (
    r"(arn:(aws[a-zA-Z-]*)?:lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:"
    r"\d{12}:layer:[a-zA-Z0-9-_]{1,140})|[a-zA-Z0-9-_]{1,140}"
)


def layer_name(svc: Services, raw: str) -> str:
    """The layer's name from the path (a name or this nimbus' layer ARN)."""
    params = Params({"LayerName": raw})
    params.string("LayerName", min_len=1, max_len=140, pattern=NAME_PATTERN)
    params.check()
    if raw.startswith("arn:"):
        prefix = svc.layers.arn_prefix
        if not raw.startswith(prefix):
            raise ResourceNotFound(
                f"Layer {raw} is not in this nimbus: its layers are {prefix}<name>."
            )
        return raw[len(prefix) :]
    return raw


# The service model's LayerVersionArn (GetLayerVersionByArn).
VERSION_ARN_PATTERN = (
    r"(arn:(aws[a-zA-Z-]*)?:lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:"
    r"\d{12}:layer:[a-zA-Z0-9-_]+:[0-9]+)|(arn:[a-zA-Z0-9-]+:lambda:::awslayer:[a-zA-Z0-9-_]+)"
)


def version_number(raw: str) -> int:
    number = decimal_int(raw)  # None for "²", which isdigit() takes and int() refuses
    if number is not None and number < 1:
        raise InvalidParameterValue("Layer Version Cannot be less than 1")
    if number is None or number >= 2**63:
        raise InvalidParameterValue(
            f"VersionNumber must be a layer version number (1, 2, ...), not '{raw}'."
        )
    return number


def _enum_list(
    params: Params,
    member: str,
    allowed: tuple[str, ...],
    max_items: int,
    nullable: bool,
    listed: tuple[str, ...] | None = None,
) -> list[str]:
    """A list of enum values; Lambda words the constraint of a list that may hold nulls
    (Architectures) differently from one that may not. ``listed``: the values the
    message names, where Lambda names others than it takes."""
    values = params.sequence(member, max_items=max_items) or []
    if any(value not in allowed for value in values):
        enum = f"satisfy enum value set: [{', '.join(listed or allowed)}]"
        if nullable:
            enum = f"satisfy constraint: [Member must {enum}, Member must not be null]"
        params._fail(values, member, enum)
    return [str(v) for v in values]


def _filters(request: Request) -> tuple[str | None, str | None]:
    runtime = request.query_params.get("CompatibleRuntime")
    architecture = request.query_params.get("CompatibleArchitecture")
    params = Params({})
    for member, value, allowed, listed in (
        ("CompatibleRuntime", runtime, RUNTIMES, LISTED_RUNTIME_ENUM),
        ("CompatibleArchitecture", architecture, ARCHITECTURES, ARCHITECTURES),
    ):
        if value is not None and value not in allowed:
            params._fail(value, member, f"satisfy enum value set: [{', '.join(listed)}]")
    params.check()
    return runtime, architecture


def _item(svc: Services, v: LayerVersion) -> dict[str, Any]:
    """LayerVersionsListItem: what every shape of a layer version has."""
    body: dict[str, Any] = {
        "LayerVersionArn": svc.layers.version_arn(v.layer_name, v.version),
        "Version": v.version,
        "Description": v.description,
        "CreatedDate": v.created_date,
        "CompatibleRuntimes": v.compatible_runtimes,
        "CompatibleArchitectures": v.compatible_architectures,
    }
    if v.license_info is not None:
        body["LicenseInfo"] = v.license_info
    return body


def _full(svc: Services, v: LayerVersion, base_url: str) -> dict[str, Any]:
    """GetLayerVersionResponse (and PublishLayerVersion's)."""
    return {
        "Content": {
            "Location": svc.signer.url(base_url, v.code_sha256),
            "CodeSha256": b64_sha(v.code_sha256),
            "CodeSize": v.code_size,
        },
        "LayerArn": svc.layers.layer_arn(v.layer_name),
        **_item(svc, v),
    }


async def publish_layer_version(request: Request) -> Response:
    svc = services(request)
    name = layer_name(svc, request.path_params["name"])
    body = await read_json(request, "PublishLayerVersion", CODE_REQUEST_LIMIT)
    params = Params(body)
    description = params.string("Description", max_len=256) or ""
    license_info = params.string("LicenseInfo", max_len=512)
    runtimes = _enum_list(
        params, "CompatibleRuntimes", RUNTIMES, 15, nullable=False, listed=LISTED_RUNTIMES
    )
    architectures = _enum_list(params, "CompatibleArchitectures", ARCHITECTURES, 2, nullable=True)
    if params.data.get("Content") is None:
        params.string("Content", required=True)
    params.check()
    data = decode_zip(body, "Content.", svc.config.max_zip_size, "PublishLayerVersion")
    stored = await store_code(svc, data)
    draft = LayerVersion(
        layer_name=name,
        version=0,
        code_sha256=stored.sha256_hex,
        code_size=stored.size,
        unzipped_size=stored.unzipped_size,
        created_date=lambda_timestamp(),
        description=description,
        compatible_runtimes=runtimes,
        compatible_architectures=architectures,
        license_info=license_info,
    )
    published = await blocking(svc.layers.publish, draft)
    return json_response(_full(svc, published, str(request.base_url)), 201)


async def get_layer_version(request: Request) -> Response:
    svc = services(request)
    name = layer_name(svc, request.path_params["name"])
    version = version_number(request.path_params["version"])
    found = await blocking(svc.layers.get, name, version)
    return json_response(_full(svc, found, str(request.base_url)))


async def delete_layer_version(request: Request) -> Response:
    svc = services(request)
    name = layer_name(svc, request.path_params["name"])
    version = version_number(request.path_params["version"])
    await blocking(svc.layers.delete, name, version)
    return empty_response(204)


async def list_layer_versions(request: Request) -> Response:
    svc = services(request)
    name = layer_name(svc, request.path_params["name"])
    runtime, architecture = _filters(request)
    max_items = query_int(request, "MaxItems", 50, 1, 50)
    page = await blocking(
        svc.layers.versions,
        name,
        request.query_params.get("Marker"),
        max_items,
        runtime,
        architecture,
    )
    items = [_item(svc, v) for v in page.items]
    return page_response("LayerVersions", items, page.next_marker)


async def layers(request: Request) -> Response:
    """ListLayers, or GetLayerVersionByArn (``?find=LayerVersion&Arn=...``)."""
    svc = services(request)
    if request.query_params.get("find") == "LayerVersion":
        return await _get_by_arn(svc, request)
    runtime, architecture = _filters(request)
    max_items = query_int(request, "MaxItems", 50, 1, 50)
    page = await blocking(
        svc.layers.latest, request.query_params.get("Marker"), max_items, runtime, architecture
    )
    items = [
        {
            "LayerName": v.layer_name,
            "LayerArn": svc.layers.layer_arn(v.layer_name),
            "LatestMatchingVersion": _item(svc, v),
        }
        for v in page.items
    ]
    return page_response("Layers", items, page.next_marker)


async def _get_by_arn(svc: Services, request: Request) -> Response:
    arn = request.query_params.get("Arn")
    params = Params({"Arn": arn})
    params.string("Arn", required=True, min_len=1, max_len=140, pattern=VERSION_ARN_PATTERN)
    params.check()
    assert arn is not None
    name, version = svc.layers.parse_arn(arn)
    if name is None:
        raise ResourceNotFound(f"Layer version {arn} does not exist.")
    found = await blocking(svc.layers.get, name, version)
    return json_response(_full(svc, found, str(request.base_url)))


_L = "/2018-10-31/layers"
routes = [
    Route(_L, layers, methods=["GET"]),
    Route(_L + "/{name}/versions", publish_layer_version, methods=["POST"]),
    Route(_L + "/{name}/versions", list_layer_versions, methods=["GET"]),
    Route(_L + "/{name}/versions/{version}", get_layer_version, methods=["GET"]),
    Route(_L + "/{name}/versions/{version}", delete_layer_version, methods=["DELETE"]),
]
