"""What each control-plane request does, in IAM's terms: its action and resource.

The auth middleware (``auth.py``) asks ``describe`` for every request a principal other
than the admin signs, then ``nimbus.iam.decision.authorize`` decides. The mapping:

- Lambda's REST API: the operation botocore's ``lambda`` model matches (method and
  ``requestUri``), as IAM names it: ``lambda:<Operation>``, except ``Invoke`` (and
  ``InvokeWithResponseStream``), which is ``lambda:InvokeFunction``. The resource is the
  function's ARN, with the qualifier the request names (``Qualifier`` or a qualified
  name): ``arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>]``; a layer's
  (``...:layer:<name>[:<version>]``), an event source mapping's
  (``...:event-source-mapping:<uuid>``), the tagged resource's, else ``*``.
- The other AWS services nimbus speaks (SQS, SNS, EventBridge Scheduler, CloudWatch
  Logs): ``<service>:<Operation>`` as the protocol layer names the operation (``sqs:
  SendMessage``, ``sns:Publish``, ``scheduler:CreateSchedule``, ``logs:FilterLogEvents``);
  the resource is the ARN the request names: an SQS queue's in whatever form it is named
  (``QueueUrl`` as a URL, a bare name or ``<account>/<name>``, read by the SQS handlers'
  own ``nimbus.sqs.queue_names``; ``QueueName``), a new topic's (``Name``), a schedule's
  or schedule group's (``Name``, ``GroupName``), a log group's (``logGroupName``,
  ``logGroupIdentifier``), a ``...Arn`` member's, else ``*``.
- API Gateway's management APIs (``/v2/apis``, ``/apikeys``, ``/usageplans``):
  ``apigateway:<HTTP method>`` on ``arn:aws:apigateway:<region>::<path>``, as IAM has it.
- nimbus's own endpoints (``/_nimbus/...``, ``/metrics``): ``nimbus:<Endpoint>`` (e.g.
  ``nimbus:ListDeadLetters``, ``nimbus:Redrive``, ``nimbus:FunctionLogs``), on the
  function's ARN for per-function ones, else ``*``.

``describe`` returns None for a request that names no action (an unknown path, a body
that does not parse, a malformed function name): the middleware refuses it
(AccessDeniedException) for any principal but the admin, whose request the route then
answers.
"""

from __future__ import annotations

import functools
import json
from typing import Any
from urllib.parse import parse_qsl

from starlette.routing import Match
from starlette.types import Scope

from nimbus.api import aws_services
from nimbus.api.names import parse_function_ref
from nimbus.config import Config
from nimbus.errors import NimbusError
from nimbus.iam.decision import Access
from nimbus.models import LATEST
from nimbus.protocol import rest
from nimbus.protocol.messages import HttpRequest
from nimbus.protocol.models import ServiceSpec, load
from nimbus.protocol.parser import parse
from nimbus.sigv4.verification import control_plane_service
from nimbus.sqs.queue_names import queue_ref
from nimbus.store.schedules import DEFAULT_GROUP

# IAM's action names where they are not the API operation's.
_LAMBDA_ACTIONS = {
    "Invoke": "InvokeFunction",
    "InvokeWithResponseStream": "InvokeFunction",
    "GetLayerVersionByArn": "GetLayerVersion",
}


@functools.cache
def _lambda() -> ServiceSpec:
    return load("lambda")


def describe(scope: Scope, body: bytes, config: Config) -> Access | None:
    """The action and resource of a control-plane request (None: it names none)."""
    path: str = scope["path"]
    if control_plane_service(path) == "apigateway":
        return Access(
            f"apigateway:{scope['method']}", f"arn:aws:apigateway:{config.region}::{path}"
        )
    if aws_services.claim(scope) is not None:
        return _aws_service(scope, body, config)
    raw = scope.get("raw_path")
    raw_path = raw.decode("latin-1") if raw else path
    query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    matched = rest.match(_lambda(), scope["method"], raw_path, query, headers)
    if matched is not None:
        route, labels = matched
        return _lambda_access(route.operation.name, labels, dict(query), body, config)
    return _nimbus_endpoint(scope, config)


def _lambda_access(
    operation: str, labels: dict[str, str], query: dict[str, str], body: bytes, config: Config
) -> Access | None:
    action = "lambda:" + _LAMBDA_ACTIONS.get(operation, operation)
    name = labels.get("FunctionName")
    if name is None and operation == "CreateFunction":
        name = _body_member(body, "FunctionName")
    if name is not None:
        try:
            ref = parse_function_ref(name, config, query.get("Qualifier"))
        except NimbusError:
            return None  # the route refuses the name in the same words
        arn = config.function_arn(ref.name, ref.qualifier)
        return Access(action, arn, function=(ref.name, ref.qualifier or LATEST))
    prefix = f"arn:aws:lambda:{config.region}:{config.account_id}"
    if "LayerName" in labels:
        layer = labels["LayerName"].rpartition(":layer:")[2] or labels["LayerName"]
        version = labels.get("VersionNumber")
        return Access(action, f"{prefix}:layer:{layer}" + (f":{version}" if version else ""))
    if "UUID" in labels:
        return Access(action, f"{prefix}:event-source-mapping:{labels['UUID']}")
    if "Resource" in labels:  # tags
        return Access(action, labels["Resource"])
    if operation == "GetLayerVersionByArn" and query.get("Arn", "").startswith("arn:"):
        return Access(action, query["Arn"])
    return Access(action, "*")


def _aws_service(scope: Scope, body: bytes, config: Config) -> Access | None:
    found = aws_services.claim(scope)
    if found is None:
        return None
    claimed, headers = found
    raw = scope.get("raw_path")
    request = HttpRequest(
        method=scope["method"],
        raw_path=(raw.decode("latin-1") if raw else scope["path"]).split("?", 1)[0],
        query_string=scope["query_string"].decode("latin-1"),
        headers=headers,
        body=body,
    )
    resolved = aws_services.router().resolve(claimed, request)
    if resolved is None:
        return None  # no registered service has it: a 404, nothing done
    spec = resolved[1]
    try:
        parsed = parse(spec, claimed.protocol, request)
    except NimbusError:
        return None  # the service refuses the same request in its own shape
    action = f"{spec.signing_name}:{parsed.operation.name}"
    return Access(
        action, _named_arn(spec.signing_name, parsed.operation.name, parsed.params, config)
    )


def _named_arn(service: str, operation: str, params: dict[str, Any], config: Config) -> str:
    """The ARN of what an AWS-service request acts on, as far as its members say, read as
    the service's handlers read them (never the caller's word for the account)."""
    here = f"{config.region}:{config.account_id}"
    if service == "sqs":
        # Every form the SQS handlers accept (a URL, a bare name, account/name...) is
        # the queue's ARN here, read by the same function, so no form dodges a Deny.
        url, name = params.get("QueueUrl"), params.get("QueueName")
        if isinstance(url, str):
            account, queue = queue_ref(url, config.account_id)
            return f"arn:aws:sqs:{config.region}:{account}:{queue}"
        if isinstance(name, str):  # CreateQueue, GetQueueUrl
            owner = params.get("QueueOwnerAWSAccountId")
            account = owner if isinstance(owner, str) and owner else config.account_id
            return f"arn:aws:sqs:{config.region}:{account}:{name}"
    name = params.get("Name")
    if service == "sns" and isinstance(name, str):  # CreateTopic
        return f"arn:aws:sns:{here}:{name}"
    if service == "scheduler" and isinstance(name, str):
        if operation.endswith("ScheduleGroup"):
            return f"arn:aws:scheduler:{here}:schedule-group/{name}"
        group = params.get("GroupName") or DEFAULT_GROUP
        return f"arn:aws:scheduler:{here}:schedule/{group}/{name}"
    if service == "logs":
        group = _log_group(params)
        if group is not None:
            return f"arn:aws:logs:{here}:log-group:{group}"
    for key, value in params.items():
        if key.endswith("Arn") and isinstance(value, str) and value.startswith("arn:"):
            return value
    return "*"


def _log_group(params: dict[str, Any]) -> str | None:
    """The log group a CloudWatch Logs request names, as ``api/cloudwatch_logs`` reads it:
    ``logGroupName``, or ``logGroupIdentifier`` (a name, or an ARN whose region and
    account the handler does not look at, so neither is taken from it here)."""
    name, identifier = params.get("logGroupName"), params.get("logGroupIdentifier")
    if isinstance(identifier, str) and identifier:
        if not identifier.startswith("arn:"):
            return identifier
        parts = identifier.split(":", 6)
        return parts[6].removesuffix(":*") if len(parts) == 7 else None
    return name if isinstance(name, str) and name else None


def _nimbus_endpoint(scope: Scope, config: Config) -> Access | None:
    from nimbus.api import routes  # the route table imports this module's importers

    for route in routes:
        if isinstance(route, aws_services.AwsRoute):
            continue
        match, child = route.matches(scope)
        if match != Match.FULL:
            continue
        endpoint = getattr(route, "endpoint", None)
        name = getattr(endpoint, "__name__", type(route).__name__)
        action = "nimbus:" + "".join(part.capitalize() for part in name.strip("_").split("_"))
        per_function = "/functions/{name}" in getattr(route, "path", "")
        function = child.get("path_params", {}).get("name") if per_function else None
        if function is None:
            return Access(action, "*")
        try:
            ref = parse_function_ref(function, config)
        except NimbusError:
            return None
        return Access(
            action,
            config.function_arn(ref.name, ref.qualifier),
            function=(ref.name, ref.qualifier or LATEST),
        )
    return None


def _body_member(body: bytes, name: str) -> str | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    value = document.get(name) if isinstance(document, dict) else None
    return value if isinstance(value, str) else None
