"""The contract between the protocol layer and a service nimbus speaks.

A service is only its handlers, by operation name: each gets the request's context and
the operation's input as botocore's shapes describe it (model member names, timestamps
as ``datetime``, blobs as ``bytes``, ints as ``int``, lists and maps as ``list`` and
``dict``: what a boto3 user passes) and returns the output shape as a dict in the same
conventions. Errors are raised as ``nimbus.errors.NimbusError`` subclasses whose
``type_name`` is the error shape's name in the service model (``AwsError`` when a
handler needs one without a class of its own).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RequestContext:
    """Who asked what, where: handed to every handler with the request's input."""

    service: str  # botocore's service name, e.g. "sqs"
    operation: str  # e.g. "SendMessage"
    region: str
    account_id: str
    request_id: str
    base_url: str  # scheme://host[:port] the request came to (SQS builds QueueUrls from it)
    headers: Mapping[str, str]  # lower-case names
    protocol: str = "json"  # the wire protocol the client spoke: query, json, rest-json, rest-xml
    # The serving process's own objects (nimbus' Services), where handlers find their
    # stores; opaque to the protocol layer.
    state: Any = None


Handler = Callable[[RequestContext, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass
class AwsService:
    """A service nimbus serves: botocore's service name and its handlers by operation."""

    name: str
    handlers: dict[str, Handler] = field(default_factory=dict)
