"""Bucket notification configurations: checked and normalised as S3 does when one is
put, and matched against object events (``targets``) for whoever delivers them.

A configuration is kept as the API's ``NotificationConfiguration`` member (model
member names): ``LambdaFunctionConfigurations``, ``QueueConfigurations`` and
``TopicConfigurations`` (to this nimbus' SNS topics), each with
an ``Id``, its ARN, ``Events`` (``s3:ObjectCreated:*``...) and an optional
``Filter.Key.FilterRules`` of ``Prefix`` / ``Suffix`` rules (names are matched without
regard to case and stored capitalised, as S3 answers them).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus

from nimbus.protocol.errors import AwsError
from nimbus.s3.errors import invalid_argument
from nimbus.s3.records import ObjectEvent

LAMBDA = "LambdaFunctionConfigurations"
QUEUE = "QueueConfigurations"
TOPIC = "TopicConfigurations"
KINDS = (QUEUE, TOPIC, LAMBDA)
# The Subject of the SNS messages S3 publishes to a topic (events and the test event).
SNS_SUBJECT = "Amazon S3 Notification"
ARN_MEMBER = {LAMBDA: "LambdaFunctionArn", QUEUE: "QueueArn", TOPIC: "TopicArn"}
# The ArgumentName S3 uses when a configuration's ARN does not parse.
ARN_ARGUMENT = {LAMBDA: "CloudFunction", QUEUE: "Queue", TOPIC: "Topic"}
EVENTS = frozenset(
    {
        "s3:ReducedRedundancyLostObject",
        "s3:ObjectCreated:*",
        "s3:ObjectCreated:Put",
        "s3:ObjectCreated:Post",
        "s3:ObjectCreated:Copy",
        "s3:ObjectCreated:CompleteMultipartUpload",
        "s3:ObjectRemoved:*",
        "s3:ObjectRemoved:Delete",
        "s3:ObjectRemoved:DeleteMarkerCreated",
        "s3:ObjectRestore:*",
        "s3:ObjectRestore:Post",
        "s3:ObjectRestore:Completed",
        "s3:ObjectRestore:Delete",
        "s3:Replication:*",
        "s3:Replication:OperationFailedReplication",
        "s3:Replication:OperationNotTracked",
        "s3:Replication:OperationMissedThreshold",
        "s3:Replication:OperationReplicatedAfterThreshold",
        "s3:LifecycleTransition",
        "s3:IntelligentTiering",
        "s3:ObjectAcl:Put",
        "s3:LifecycleExpiration:*",
        "s3:LifecycleExpiration:Delete",
        "s3:LifecycleExpiration:DeleteMarkerCreated",
        "s3:ObjectTagging:*",
        "s3:ObjectTagging:Put",
        "s3:ObjectTagging:Delete",
        "s3:ObjectAnnotation:*",
        "s3:ObjectAnnotation:Put",
        "s3:ObjectAnnotation:Delete",
        "s3:ObjectRetention:Put",
    }
)


@dataclass(frozen=True)
class Target:
    """One configuration an event matches: where to deliver and under which Id."""

    kind: str  # LAMBDA, QUEUE or TOPIC
    arn: str
    configuration_id: str


def normalise(configuration: dict[str, Any]) -> dict[str, Any]:
    """A put configuration, checked (event names, filter rules, overlaps; not whether
    the ARNs exist: the API does that) and normalised (Ids given, rule names
    capitalised); raises S3's ``InvalidArgument``."""
    if configuration.get("EventBridgeConfiguration") is not None:
        raise AwsError(
            "InvalidArgument",
            "nimbus has no EventBridge: EventBridgeConfiguration cannot be set.",
            ArgumentName="EventBridgeConfiguration",
        )
    normalised: dict[str, Any] = {}
    seen_ids: set[str] = set()
    for kind in KINDS:
        items = []
        for item in configuration.get(kind) or []:
            checked = _configuration(kind, item)
            if checked["Id"] in seen_ids:
                raise invalid_argument(
                    "Configurations on the same bucket must have unique Ids.", "Id", checked["Id"]
                )
            seen_ids.add(checked["Id"])
            items.append(checked)
        if items:
            normalised[kind] = items
    _check_overlaps([c for kind in KINDS for c in normalised.get(kind, [])])
    return normalised


def _configuration(kind: str, item: dict[str, Any]) -> dict[str, Any]:
    arn = item.get(ARN_MEMBER[kind])
    if not arn:
        raise invalid_argument(
            f"A {kind[:-1]} must name its {ARN_MEMBER[kind]}.", ARN_ARGUMENT[kind], ""
        )
    events = list(item.get("Events") or [])
    if not events:
        raise invalid_argument(
            "A notification configuration must name at least one event.", "Event", ""
        )
    for event in events:
        if event not in EVENTS:
            raise invalid_argument("The event is not supported for notifications", "Event", event)
    checked: dict[str, Any] = {
        "Id": item.get("Id") or secrets.token_urlsafe(24),
        ARN_MEMBER[kind]: arn,
        "Events": events,
    }
    rules = ((item.get("Filter") or {}).get("Key") or {}).get("FilterRules")
    if rules is not None:
        checked["Filter"] = {"Key": {"FilterRules": _rules(rules)}}
    return checked


def _rules(rules: list[dict[str, Any]]) -> list[dict[str, str]]:
    found: list[dict[str, str]] = []
    names: set[str] = set()
    for rule in rules:
        name = str(rule.get("Name") or "").lower()
        if name not in ("prefix", "suffix"):
            raise invalid_argument(
                "filter rule name must be either prefix or suffix",
                "FilterRule.Name",
                str(rule.get("Name")),
            )
        if name in names:
            raise invalid_argument(
                f"Cannot specify more than one {name} rule in a filter.",
                "FilterRule.Name",
                str(rule.get("Name")),
            )
        names.add(name)
        value = str(rule.get("Value") or "")
        if len(value.encode()) > 1024:
            raise invalid_argument(
                "The filter rule value cannot be longer than 1024 bytes.",
                "FilterRule.Value",
                value[:64],
            )
        found.append({"Name": name.capitalize(), "Value": value})
    return found


def _filter(configuration: dict[str, Any]) -> tuple[str, str]:
    prefix = suffix = ""
    for rule in configuration.get("Filter", {}).get("Key", {}).get("FilterRules", []):
        if rule["Name"] == "Prefix":
            prefix = rule["Value"]
        else:
            suffix = rule["Value"]
    return prefix, suffix


def _covers(pattern: str, event: str) -> bool:
    """Whether the configured event name ``pattern`` (maybe ``...:*``) covers ``event``."""
    if pattern.endswith(":*"):
        return event.startswith(pattern[:-1])
    return pattern == event


def _events_overlap(a: list[str], b: list[str]) -> bool:
    for x in a:
        for y in b:
            if _covers(x, y) or _covers(y, x):
                return True
    return False


def _check_overlaps(configurations: list[dict[str, Any]]) -> None:
    for i, first in enumerate(configurations):
        for second in configurations[i + 1 :]:
            if not _events_overlap(first["Events"], second["Events"]):
                continue
            (p1, s1), (p2, s2) = _filter(first), _filter(second)
            prefixes_overlap = p1.startswith(p2) or p2.startswith(p1)
            suffixes_overlap = s1.endswith(s2) or s2.endswith(s1)
            if prefixes_overlap and suffixes_overlap:
                raise invalid_argument(
                    "Configurations overlap. Configurations on the same bucket cannot share a "
                    "common event type.",
                    "Event",
                    ", ".join(sorted(set(first["Events"]) | set(second["Events"]))),
                )


def destinations(configuration: dict[str, Any]) -> list[tuple[str, str]]:
    """(kind, ARN) of every configuration, for checking that they exist."""
    return [
        (kind, item[ARN_MEMBER[kind]])
        for kind in KINDS
        for item in configuration.get(kind) or []
    ]


def targets(configuration: dict[str, Any], event: ObjectEvent) -> list[Target]:
    """The configurations an object event matches (by event name and key filter)."""
    name = f"s3:{event.name}"
    found: list[Target] = []
    for kind in KINDS:
        for item in configuration.get(kind) or []:
            if not any(_covers(pattern, name) for pattern in item["Events"]):
                continue
            prefix, suffix = _filter(item)
            if event.key.startswith(prefix) and event.key.endswith(suffix):
                found.append(Target(kind, item[ARN_MEMBER[kind]], item["Id"]))
    return found


def record(event: ObjectEvent, target: Target, *, region: str, owner: str) -> dict[str, Any]:
    """The S3 event record Lambda functions and SQS consumers receive for ``event`` (in
    ``{"Records": [...]}``): the key URL-encoded as S3 sends it (``red flower.jpg`` as
    ``red+flower.jpg``), ``owner`` the bucket owner's principal id."""
    request = event.request
    obj: dict[str, Any] = {"key": quote_plus(event.key, safe="/")}
    if event.size is not None:
        obj["size"] = event.size
    if event.etag is not None:
        obj["eTag"] = event.etag
    if event.version_id is not None:
        obj["versionId"] = event.version_id
    obj["sequencer"] = event.sequencer
    moment = datetime.fromtimestamp(event.time_ms / 1000, UTC)
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": region,
        "eventTime": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
        "eventName": event.name,
        "userIdentity": {"principalId": f"AWS:{request.principal}" if request else owner},
        "requestParameters": {"sourceIPAddress": request.source_ip if request else "127.0.0.1"},
        "responseElements": {
            "x-amz-request-id": request.request_id if request else event.sequencer,
            "x-amz-id-2": request.request_id if request else event.sequencer,
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": target.configuration_id,
            "bucket": {
                "name": event.bucket,
                "ownerIdentity": {"principalId": owner},
                "arn": f"arn:aws:s3:::{event.bucket}",
            },
            "object": obj,
        },
    }
