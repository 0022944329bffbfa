"""Layer permissions: AddLayerVersionPermission, GetLayerVersionPolicy and
RemoveLayerVersionPermission.

Statements are built as Lambda builds them for layers::

    {"Sid": ..., "Effect": "Allow", "Principal": "*" | {"AWS": "arn:aws:iam::<id>:root"},
     "Action": "lambda:GetLayerVersion", "Resource": <layer version ARN>,
     "Condition": {"StringEquals": {"aws:PrincipalOrgID": ...}}}

As with functions' policies (``api/policies.py``), they are stored and reported but not
enforced: one nimbus is one account, and every caller it accepts may use every layer.
They exist so that tooling that shares layers (Terraform, CloudFormation/SAM-style
scripts) works unchanged.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nimbus.api.layers import layer_name, version_number
from nimbus.api.policies import STATEMENT_ID_PATTERN, principal_element
from nimbus.api.services import Services, services
from nimbus.api.wire import Params, empty_response, json_response, read_json
from nimbus.errors import PreconditionFailed, ResourceNotFound
from nimbus.models import LayerVersion
from nimbus.store.policies import policy_document
from nimbus.threads import blocking

# The service model's LayerPermissionAllowedAction / ...AllowedPrincipal / OrganizationId.
ACTION_PATTERN = r"lambda:GetLayerVersion"
PRINCIPAL_PATTERN = r"\d{12}|\*|arn:(aws[a-zA-Z-]*):iam::\d{12}:root"
ORGANIZATION_PATTERN = r"o-[a-z0-9]{10,32}"


def _target(svc: Services, request: Request) -> tuple[str, int]:
    """(layer name, version number) from the path."""
    name = layer_name(svc, request.path_params["name"])
    return name, version_number(request.path_params["version"])


async def _existing(svc: Services, name: str, version: int) -> LayerVersion:
    """The layer version, or Lambda's 404 naming it."""
    try:
        return await blocking(svc.layers.get, name, version)
    except ResourceNotFound as exc:
        arn = svc.layers.version_arn(name, version)
        raise ResourceNotFound(f"Layer version {arn} does not exist.") from exc


def _revision_mismatch() -> PreconditionFailed:
    return PreconditionFailed(
        "The Revision Id provided does not match the latest Revision Id. Call the "
        "GetLayerPolicy API to retrieve the latest Revision Id"
    )


async def add_permission(request: Request) -> Response:
    svc = services(request)
    name, version = _target(svc, request)
    params = Params(await read_json(request, "AddLayerVersionPermission"))
    sid = params.string(
        "StatementId", required=True, min_len=1, max_len=100, pattern=STATEMENT_ID_PATTERN
    )
    action = params.string("Action", required=True, max_len=22, pattern=ACTION_PATTERN)
    principal = params.string("Principal", required=True, max_len=10000, pattern=PRINCIPAL_PATTERN)
    organization = params.string("OrganizationId", max_len=34, pattern=ORGANIZATION_PATTERN)
    params.check()
    assert principal is not None
    statement: dict[str, Any] = {
        "Sid": sid,
        "Effect": "Allow",
        "Principal": principal_element(principal),
        "Action": action,
        "Resource": svc.layers.version_arn(name, version),
    }
    if organization is not None:
        statement["Condition"] = {"StringEquals": {"aws:PrincipalOrgID": organization}}
    await _existing(svc, name, version)
    try:
        revision = await blocking(
            svc.layers.add_permission,
            name,
            version,
            statement,
            request.query_params.get("RevisionId"),
        )
    except PreconditionFailed as exc:
        raise _revision_mismatch() from exc
    body = {"Statement": json.dumps(statement, separators=(",", ":")), "RevisionId": revision}
    return json_response(body, 201)


async def get_policy(request: Request) -> Response:
    svc = services(request)
    name, version = _target(svc, request)
    found = await _existing(svc, name, version)
    if not found.statements:
        raise ResourceNotFound("No policy is associated with the given resource.")
    return json_response(
        {"Policy": policy_document(found.statements), "RevisionId": found.policy_revision}
    )


async def remove_permission(request: Request) -> Response:
    svc = services(request)
    name, version = _target(svc, request)
    sid = request.path_params["sid"]
    params = Params({"StatementId": sid})
    params.string("StatementId", min_len=1, max_len=100, pattern=STATEMENT_ID_PATTERN)
    params.check()
    await _existing(svc, name, version)
    try:
        await blocking(
            svc.layers.remove_permission, name, version, sid, request.query_params.get("RevisionId")
        )
    except PreconditionFailed as exc:
        raise _revision_mismatch() from exc
    return empty_response(204)


_P = "/2018-10-31/layers/{name}/versions/{version}/policy"
routes = [
    Route(_P, add_permission, methods=["POST"]),
    Route(_P, get_policy, methods=["GET"]),
    Route(_P + "/{sid}", remove_permission, methods=["DELETE"]),
]
