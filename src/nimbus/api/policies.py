"""Resource-based policies: AddPermission, RemovePermission and GetPolicy.

A policy belongs to the unqualified function (no ``Qualifier``), to a published version
or to an alias; each statement's ``Resource`` is the ARN of what it belongs to. Statements
are built as Lambda builds them::

    {"Sid": ..., "Effect": "Allow", "Principal": ..., "Action": ..., "Resource": ...,
     "Condition": {"StringEquals": {...}, "ArnLike": {"AWS:SourceArn": ...},
                   "Bool": {"lambda:InvokedViaFunctionUrl": "true"}}}

with ``Principal`` ``{"Service": p}`` for a service (``s3.amazonaws.com``),
``{"AWS": "arn:aws:iam::<account>:root"}`` for an account id, ``{"AWS": arn}`` for an IAM
or STS ARN and ``"*"`` for ``*``.

With api_auth = "sigv4" and a principals file (``nimbus.iam``), they are enforced as in
AWS's same-account evaluation: a principal may do what its identity policies or the
function's resource-based policy (a statement naming its user ARN, or ``*``) allow, and
an explicit Deny wins; the admin may do anything. Service principals (``s3.amazonaws.com``)
and account grants are stored and reported for tooling that adds them, but grant no user.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nimbus.api.names import parse_function_ref
from nimbus.api.services import services
from nimbus.api.wire import Params, empty_response, json_response, read_json
from nimbus.config import Config
from nimbus.errors import InvalidParameterValue, PreconditionFailed
from nimbus.models import LATEST
from nimbus.store.policies import policy_document
from nimbus.threads import blocking

# Patterns and lengths of the service model's AddPermissionRequest members.
STATEMENT_ID_PATTERN = r"([a-zA-Z0-9-_]+)"
NAMESPACED_STATEMENT_ID_PATTERN = r"([a-zA-Z0-9-_.]+)"
ACTION_PATTERN = r"(lambda:[*]|lambda:[a-zA-Z]+|[*])"
PRINCIPAL_PATTERN = r"[^\s]+"
ARN_PATTERN = (
    r"arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-])+:((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?"
    r"-[a-z]+-\d{1})?:(\d{12})?:(.*)"
)
SOURCE_ACCOUNT_PATTERN = r"\d{12}"
EVENT_SOURCE_TOKEN_PATTERN = r"[a-zA-Z0-9._\-]+"
PRINCIPAL_ORG_ID_PATTERN = r"o-[a-z0-9]{10,32}"
AUTH_TYPES = ("NONE", "AWS_IAM")

_ACCOUNT = re.compile(r"\d{12}")
_IAM_ARN = re.compile(r"arn:aws[a-zA-Z-]*:(iam|sts)::\d{12}:.+")
# Service principals are domain-style: s3.amazonaws.com, alexa-appkit.amazon.com, ...
_SERVICE = re.compile(r"[a-z0-9-]+(\.[a-z0-9-]+)*\.(amazonaws\.com(\.cn)?|amazon\.com)")


def principal_element(principal: str) -> str | dict[str, str]:
    """The statement's Principal for what the client named, as Lambda writes it."""
    if principal == "*":
        return "*"
    if _ACCOUNT.fullmatch(principal):
        return {"AWS": f"arn:aws:iam::{principal}:root"}
    if _IAM_ARN.fullmatch(principal):
        return {"AWS": principal}
    if _SERVICE.fullmatch(principal):
        return {"Service": principal}
    raise InvalidParameterValue(
        "The provided principal was invalid. Please check the principal and try again."
    )


def build_statement(resource: str, params: dict[str, Any]) -> dict[str, Any]:
    """A statement from AddPermission's (validated) members; ``resource`` is the ARN."""
    statement: dict[str, Any] = {
        "Sid": params["StatementId"],
        "Effect": "Allow",
        "Principal": principal_element(params["Principal"]),
        "Action": params["Action"],
        "Resource": resource,
    }
    equals: dict[str, str] = {}
    if params.get("FunctionUrlAuthType") is not None:
        equals["lambda:FunctionUrlAuthType"] = params["FunctionUrlAuthType"]
    if params.get("PrincipalOrgID") is not None:
        equals["aws:PrincipalOrgID"] = params["PrincipalOrgID"]
    if params.get("SourceAccount") is not None:
        equals["AWS:SourceAccount"] = params["SourceAccount"]
    if params.get("EventSourceToken") is not None:
        equals["lambda:EventSourceToken"] = params["EventSourceToken"]
    condition: dict[str, dict[str, str]] = {}
    if equals:
        condition["StringEquals"] = equals
    if params.get("SourceArn") is not None:
        condition["ArnLike"] = {"AWS:SourceArn": params["SourceArn"]}
    if params.get("InvokedViaFunctionUrl") is not None:
        flag = "true" if params["InvokedViaFunctionUrl"] else "false"
        condition["Bool"] = {"lambda:InvokedViaFunctionUrl": flag}
    if condition:
        statement["Condition"] = condition
    return statement


def _target(request: Request, config: Config) -> tuple[str, str | None]:
    """(function, qualifier or None) from the path and ``Qualifier``; no database."""
    ref = parse_function_ref(
        request.path_params["name"], config, request.query_params.get("Qualifier")
    )
    return ref.name, ref.qualifier


def _validated(params: Params) -> dict[str, Any]:
    values = {
        "StatementId": params.string(
            "StatementId", required=True, min_len=1, max_len=100, pattern=STATEMENT_ID_PATTERN
        ),
        "Action": params.string("Action", required=True, max_len=10000, pattern=ACTION_PATTERN),
        "Principal": params.string(
            "Principal", required=True, max_len=2048, pattern=PRINCIPAL_PATTERN
        ),
        "SourceArn": params.string("SourceArn", max_len=10000, pattern=ARN_PATTERN),
        "SourceAccount": params.string("SourceAccount", max_len=12, pattern=SOURCE_ACCOUNT_PATTERN),
        "EventSourceToken": params.string(
            "EventSourceToken", max_len=256, pattern=EVENT_SOURCE_TOKEN_PATTERN
        ),
        "PrincipalOrgID": params.string(
            "PrincipalOrgID", min_len=12, max_len=34, pattern=PRINCIPAL_ORG_ID_PATTERN
        ),
        "FunctionUrlAuthType": params.string("FunctionUrlAuthType"),
        "InvokedViaFunctionUrl": params.boolean("InvokedViaFunctionUrl"),
        "RevisionId": params.string("RevisionId"),
    }
    auth_type = values["FunctionUrlAuthType"]
    if auth_type is not None and auth_type not in AUTH_TYPES:
        params._fail(
            auth_type, "FunctionUrlAuthType", f"satisfy enum value set: [{', '.join(AUTH_TYPES)}]"
        )
    params.check()
    return values


def _revision_mismatch() -> PreconditionFailed:
    """Lambda points to GetPolicy whichever RevisionId the request was checked against."""
    return PreconditionFailed(
        "The Revision Id provided does not match the latest Revision Id. Call the GetPolicy "
        "API to retrieve the latest Revision Id"
    )


async def add_permission(request: Request) -> Response:
    svc = services(request)
    function, qualifier = _target(request, svc.config)
    values = _validated(Params(await read_json(request, "AddPermission")))
    if qualifier == LATEST:
        raise InvalidParameterValue("We currently do not support adding policies for $LATEST.")
    statement = build_statement(svc.config.function_arn(function, qualifier), values)
    try:
        await blocking(
            svc.policies.add, function, qualifier or LATEST, statement, values["RevisionId"]
        )
    except PreconditionFailed as exc:
        raise _revision_mismatch() from exc
    return json_response({"Statement": json.dumps(statement, separators=(",", ":"))}, 201)


async def get_policy(request: Request) -> Response:
    svc = services(request)
    function, qualifier = _target(request, svc.config)
    policy = await blocking(svc.policies.get, function, qualifier or LATEST)
    return json_response(
        {"Policy": policy_document(policy.statements), "RevisionId": policy.revision_id}
    )


async def remove_permission(request: Request) -> Response:
    svc = services(request)
    function, qualifier = _target(request, svc.config)
    sid = request.path_params["sid"]
    params = Params({"StatementId": sid})
    params.string(
        "StatementId",
        required=True,
        min_len=1,
        max_len=100,
        pattern=NAMESPACED_STATEMENT_ID_PATTERN,
    )
    params.check()
    try:
        await blocking(
            svc.policies.remove,
            function,
            qualifier or LATEST,
            sid,
            request.query_params.get("RevisionId"),
        )
    except PreconditionFailed as exc:
        raise _revision_mismatch() from exc
    return empty_response(204)


_P = "/2015-03-31/functions/{name}/policy"
routes = [
    Route(_P, add_permission, methods=["POST"]),
    Route(_P, get_policy, methods=["GET"]),
    Route(_P + "/{sid}", remove_permission, methods=["DELETE"]),
]
