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
  the resource is the ARN the request names (``QueueUrl`` as the queue's ARN, a
  ``...Arn`` member), else ``*``.
- API Gateway's management APIs (``/v2/apis``, ``/apikeys``, ``/usageplans``):
  ``apigateway:<HTTP method>`` on ``arn:aws:apigateway:<region>::<path>``, as IAM has it.
- nimbus's own endpoints (``/_nimbus/...``, ``/metrics``): ``nimbus:<Endpoint>`` (e.g.
  ``nimbus:ListDeadLetters``, ``nimbus:Redrive``, ``nimbus:FunctionLogs``), on the
  function's ARN for per-function ones, else ``*``.

``describe`` returns None for a request that names no action (an unknown path, a body
that does not parse, a malformed function name): the route refuses it the same way,
without acting, whoever signed it.
"""

from __future__ import annotations

import functools
import json
import re
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

# IAM's action names where they are not the API operation's.
_LAMBDA_ACTIONS = {
    "Invoke": "InvokeFunction",
    "InvokeWithResponseStream": "InvokeFunction",
    "GetLayerVersionByArn": "GetLayerVersion",
}
_SQS_QUEUE_URL = re.compile(r"https?://[^/]+/(?P<account>\d{12})/(?P<name>[\w-]{1,80}(\.fifo)?)")


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
    return Access(action, _named_arn(parsed.params, config))


def _named_arn(params: dict[str, Any], config: Config) -> str:
    """The ARN of what an AWS-service request acts on, as far as its members say."""
    url = params.get("QueueUrl")
    if isinstance(url, str):
        matched = _SQS_QUEUE_URL.fullmatch(url)
        if matched:
            return f"arn:aws:sqs:{config.region}:{matched['account']}:{matched['name']}"
    for key, value in params.items():
        if key.endswith("Arn") and isinstance(value, str) and value.startswith("arn:"):
            return value
    return "*"


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
