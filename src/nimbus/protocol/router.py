"""Which registered service a request is for, and in which protocol it speaks.

In order: an ``X-Amz-Target`` header names a JSON service by its model's
``targetPrefix``; else the SigV4 credential scope (``Authorization`` header or presigned
``X-Amz-Credential``) names the service it was signed for; else an unsigned query request
(form body, or GET with ``Action=``) goes to the registered query service that has its
``Action``, and an unsigned REST request to the REST service one of whose ``requestUri``
templates it matches. JSON and query services are served at ``/`` and, for SQS, at queue
URLs (``/{account_id}/{queue_name}``), where query clients post.

``claim`` looks at the method, path and headers only (the body has not arrived: the auth
middleware and the route matcher ask it); ``resolve`` finishes an unsigned query request
once its body is read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

from nimbus.protocol import rest
from nimbus.protocol.errors import AwsError
from nimbus.protocol.messages import HttpRequest
from nimbus.protocol.models import ServiceSpec, load
from nimbus.protocol.parser import FORM, query_params
from nimbus.protocol.service import AwsService


@dataclass(frozen=True)
class Claim:
    """A request some registered service takes: ``service`` and ``spec`` are None for an
    unsigned query request until ``Router.resolve`` has read its ``Action``."""

    service: AwsService | None
    spec: ServiceSpec | None
    protocol: str


class Router:
    """The registered services, indexed the ways requests name them (built once)."""

    def __init__(self, services: Sequence[AwsService]) -> None:
        self.entries = [(service, load(service.name)) for service in services]
        self.by_target: dict[str, tuple[AwsService, ServiceSpec]] = {}
        self.by_signer: dict[str, tuple[AwsService, ServiceSpec]] = {}
        for service, spec in self.entries:
            if spec.target_prefix and "json" in spec.protocols:
                self.by_target.setdefault(spec.target_prefix, (service, spec))
            self.by_signer.setdefault(spec.signing_name, (service, spec))
        self.query = [(s, spec) for s, spec in self.entries if "query" in spec.protocols]
        self.rest = [(s, spec) for s, spec in self.entries if spec.is_rest]

    def __bool__(self) -> bool:
        return bool(self.entries)

    def claim(
        self, method: str, raw_path: str, headers: Mapping[str, str], query_string: str
    ) -> Claim | None:
        """The service and protocol of a request, if a registered service takes it."""
        if not self.entries:
            return None
        target = headers.get("x-amz-target")
        if target:
            found = self.by_target.get(target.rpartition(".")[0])
            if found is None or not _rpc_path(found[1], raw_path):
                return None
            return Claim(found[0], found[1], "json")
        signer = _signed_for(headers, query_string)
        if signer is not None:
            found = self.by_signer.get(signer)
            if found is None:
                return None
            service, spec = found
            if spec.is_rest:
                matched = rest.match(spec, method, raw_path, _pairs(query_string), headers)
                return Claim(service, spec, spec.protocol) if matched else None
            if not _rpc_path(spec, raw_path):
                return None
            if "query" in spec.protocols and _is_query(method, headers, query_string):
                return Claim(service, spec, "query")
            if "json" in spec.protocols:
                return Claim(service, spec, "json")
            return None
        if (
            self.query
            and _is_query(method, headers, query_string)
            and any(_rpc_path(spec, raw_path) for _, spec in self.query)
        ):
            return Claim(None, None, "query")
        for service, spec in self.rest:
            if rest.match(spec, method, raw_path, _pairs(query_string), headers):
                return Claim(service, spec, spec.protocol)
        return None

    def resolve(self, claim: Claim, request: HttpRequest) -> tuple[AwsService, ServiceSpec] | None:
        """The service of a claimed request (an unsigned query one: the first registered
        query service with its Action; None: none has it)."""
        if claim.service is not None and claim.spec is not None:
            return claim.service, claim.spec
        serving = [(s, spec) for s, spec in self.query if _rpc_path(spec, request.raw_path)]
        try:
            action = query_params(request).get("Action", "")
        except AwsError:
            # A form body that does not read (not UTF-8): no Action to go by. When one
            # query service serves this path it refuses it, in its own error shape.
            return serving[0] if len(serving) == 1 else None
        for service, spec in serving:
            if spec.operation(action, "query") is not None:
                return service, spec
        return None  # no registered service has this Action: Lambda's 404, as before


def _rpc_path(spec: ServiceSpec, raw_path: str) -> bool:
    if raw_path == "/":
        return True
    compat = spec.compat
    return (
        compat is not None
        and compat.resource_path is not None
        and bool(compat.resource_path.fullmatch(raw_path))
    )


def _is_query(method: str, headers: Mapping[str, str], query_string: str) -> bool:
    content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if method == "POST" and content_type == FORM:
        return True
    return method == "GET" and "Action=" in query_string


def _signed_for(headers: Mapping[str, str], query_string: str) -> str | None:
    """The service in the request's SigV4 credential scope, if it is signed."""
    authorization = headers.get("authorization", "")
    start = authorization.find("Credential=")
    if start != -1:
        credential = authorization[start + 11 :].split(",", 1)[0]
    elif "X-Amz-Credential=" in query_string:
        credential = dict(_pairs(query_string)).get("X-Amz-Credential", "")
    else:
        return None
    parts = unquote(credential.strip()).split("/")
    return parts[3] if len(parts) == 5 else None


def _pairs(query_string: str) -> list[tuple[str, str]]:
    return parse_qsl(query_string, keep_blank_values=True)
