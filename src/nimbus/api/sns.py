"""The SNS API: one thin handler per operation over ``nimbus.sns.Topics``, and the route
that serves the certificate messages are signed with.

The protocol layer parses SNS's query requests into the model's members and writes the
XML answers; handlers map members to the domain and back. What nimbus does not do (SMS,
mobile push, FIFO topics, permissions, data protection) is answered as an operation or
parameter nimbus does not serve, never stored and ignored.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from nimbus.api.services import services, services_of_context
from nimbus.protocol.errors import AwsError
from nimbus.protocol.service import AwsService, RequestContext
from nimbus.sns.arns import invalid
from nimbus.sns.notifications import MAX_MESSAGE_BYTES, Publication, check_publication, size_of
from nimbus.sns.signing import CERT_PATH
from nimbus.sns.topics import Topics

Params = dict[str, Any]
MAX_BATCH = 10
_ENTRY_ID = re.compile(r"[A-Za-z0-9_-]+")


def _topics(ctx: RequestContext) -> Topics:
    return services_of_context(ctx).engine.sns


def _tags(tags: Sequence[Params] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for tag in tags or []:
        key = tag.get("Key", "")
        if key in out:
            raise invalid("Invalid parameter: Duplicated keys are not allowed.")
        out[key] = tag.get("Value", "")
    return out


# -- topics ---------------------------------------------------------------------------------


async def create_topic(ctx: RequestContext, p: Params) -> Params:
    if p.get("DataProtectionPolicy"):
        raise invalid("Invalid parameter: DataProtectionPolicy: message data protection is not "
                      "supported by nimbus")  # fmt: skip
    topics = _topics(ctx)
    row = await topics.create(p["Name"], p.get("Attributes"), _tags(p.get("Tags")))
    return {"TopicArn": topics.topic_arn(row.name)}


async def delete_topic(ctx: RequestContext, p: Params) -> Params:
    await _topics(ctx).delete(p["TopicArn"])
    return {}


async def list_topics(ctx: RequestContext, p: Params) -> Params:
    page = await _topics(ctx).list_topics(p.get("NextToken"))
    out: Params = {"Topics": [{"TopicArn": arn} for arn in page.items]}
    if page.next_token:
        out["NextToken"] = page.next_token
    return out


async def get_topic_attributes(ctx: RequestContext, p: Params) -> Params:
    return {"Attributes": await _topics(ctx).attributes(p["TopicArn"])}


async def set_topic_attributes(ctx: RequestContext, p: Params) -> Params:
    await _topics(ctx).set_attribute(p["TopicArn"], p["AttributeName"], p.get("AttributeValue"))
    return {}


async def tag_resource(ctx: RequestContext, p: Params) -> Params:
    await _topics(ctx).tag(p["ResourceArn"], _tags(p.get("Tags")))
    return {}


async def untag_resource(ctx: RequestContext, p: Params) -> Params:
    await _topics(ctx).untag(p["ResourceArn"], p.get("TagKeys") or [])
    return {}


async def list_tags_for_resource(ctx: RequestContext, p: Params) -> Params:
    tags = await _topics(ctx).tags(p["ResourceArn"])
    return {"Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}


# -- subscriptions ----------------------------------------------------------------------------


async def subscribe(ctx: RequestContext, p: Params) -> Params:
    arn = await _topics(ctx).subscribe(
        p["TopicArn"],
        p["Protocol"],
        p.get("Endpoint"),
        p.get("Attributes"),
        bool(p.get("ReturnSubscriptionArn")),
    )
    return {"SubscriptionArn": arn}


async def confirm_subscription(ctx: RequestContext, p: Params) -> Params:
    return {"SubscriptionArn": await _topics(ctx).confirm(p["TopicArn"], p["Token"])}


async def unsubscribe(ctx: RequestContext, p: Params) -> Params:
    await _topics(ctx).unsubscribe(p["SubscriptionArn"])
    return {}


async def list_subscriptions(ctx: RequestContext, p: Params) -> Params:
    page = await _topics(ctx).list_subscriptions(None, p.get("NextToken"))
    return _subscriptions(page.items, page.next_token)


async def list_subscriptions_by_topic(ctx: RequestContext, p: Params) -> Params:
    page = await _topics(ctx).list_subscriptions(p["TopicArn"], p.get("NextToken"))
    return _subscriptions(page.items, page.next_token)


def _subscriptions(items: list[Any], next_token: str | None) -> Params:
    out: Params = {"Subscriptions": items}
    if next_token:
        out["NextToken"] = next_token
    return out


async def get_subscription_attributes(ctx: RequestContext, p: Params) -> Params:
    return {"Attributes": await _topics(ctx).subscription_attributes(p["SubscriptionArn"])}


async def set_subscription_attributes(ctx: RequestContext, p: Params) -> Params:
    await _topics(ctx).set_subscription_attribute(
        p["SubscriptionArn"], p["AttributeName"], p.get("AttributeValue")
    )
    return {}


# -- publishing ---------------------------------------------------------------------------------


def _publication(ctx: RequestContext, p: Params) -> Publication:
    if p.get("MessageDeduplicationId") is not None:
        raise invalid(
            "Invalid parameter: MessageDeduplicationId Reason: The request includes "
            "MessageDeduplicationId parameter that is not valid for this topic type"
        )
    return check_publication(
        p.get("Message"),
        p.get("Subject"),
        p.get("MessageStructure"),
        p.get("MessageAttributes"),
        group_id=p.get("MessageGroupId"),
        trace_header=ctx.headers.get("x-amzn-trace-id"),
    )  # fmt: skip


def _target(ctx: RequestContext, p: Params) -> str:
    if p.get("PhoneNumber"):
        raise invalid("Invalid parameter: PhoneNumber: nimbus does not send SMS; publish to a "
                      "topic")  # fmt: skip
    topic, target = p.get("TopicArn"), p.get("TargetArn")
    if topic is not None:
        return str(topic)
    if target is None:
        raise invalid("Invalid parameter: TopicArn or TargetArn Reason: no value for required "
                      "parameter")  # fmt: skip
    topics = _topics(ctx)
    topics.arns.parse(target, "TargetArn")
    if not topics.arns.is_topic(target):  # a mobile push endpoint: nimbus has none
        raise invalid("Invalid parameter: TargetArn Reason: No endpoint found for the target "
                      "arn specified")  # fmt: skip
    return str(target)


async def publish(ctx: RequestContext, p: Params) -> Params:
    topic = _target(ctx, p)
    (message_id,) = await _topics(ctx).publish(topic, [_publication(ctx, p)])
    return {"MessageId": message_id}


async def publish_batch(ctx: RequestContext, p: Params) -> Params:
    entries = p.get("PublishBatchRequestEntries") or []
    if not entries:
        raise AwsError("EmptyBatchRequest", "The batch request doesn't contain any entries.")
    if len(entries) > MAX_BATCH:
        raise AwsError("TooManyEntriesInBatchRequest",
                       "The batch request contains more entries than permissible.")  # fmt: skip
    seen: set[str] = set()
    for entry in entries:
        entry_id = entry.get("Id", "")
        if len(entry_id) > 80:
            raise AwsError("InvalidBatchEntryId", "The Id of a batch entry in the batch request "
                           f"is too long: {entry_id}")  # fmt: skip
        if not _ENTRY_ID.fullmatch(entry_id):
            raise AwsError("InvalidBatchEntryId", "The Id of a batch entry in the batch request "
                           f"contains an impermissible character: {entry_id}")  # fmt: skip
        if entry_id in seen:
            raise AwsError(
                "BatchEntryIdsNotDistinct",
                "Two or more batch entries in the request have the same Id.",
            )
        seen.add(entry_id)
    publications = [_publication(ctx, entry) for entry in entries]
    total = sum(size_of(pub.message, pub.attributes) for pub in publications)
    if total > MAX_MESSAGE_BYTES:
        raise AwsError(
            "BatchRequestTooLong",
            "The length of all the messages put together is more than the limit.",
        )
    message_ids = await _topics(ctx).publish(p["TopicArn"], publications)
    return {
        "Successful": [{"Id": e["Id"], "MessageId": m} for e, m in zip(entries, message_ids,
                                                                         strict=True)],
        "Failed": [],
    }  # fmt: skip


SNS = AwsService(
    "sns",
    {
        "CreateTopic": create_topic,
        "DeleteTopic": delete_topic,
        "ListTopics": list_topics,
        "GetTopicAttributes": get_topic_attributes,
        "SetTopicAttributes": set_topic_attributes,
        "TagResource": tag_resource,
        "UntagResource": untag_resource,
        "ListTagsForResource": list_tags_for_resource,
        "Subscribe": subscribe,
        "ConfirmSubscription": confirm_subscription,
        "Unsubscribe": unsubscribe,
        "ListSubscriptions": list_subscriptions,
        "ListSubscriptionsByTopic": list_subscriptions_by_topic,
        "GetSubscriptionAttributes": get_subscription_attributes,
        "SetSubscriptionAttributes": set_subscription_attributes,
        "Publish": publish,
        "PublishBatch": publish_batch,
    },
)


async def signing_certificate(request: Request) -> Response:
    """The certificate SNS messages' ``SigningCertURL`` names (public, like AWS's)."""
    signer = services(request).engine.sns.signer
    if request.path_params["name"] != signer.cert_name:
        return Response(status_code=404)
    return Response(signer.cert_pem, media_type="application/x-pem-file")


routes: list[BaseRoute] = [
    Route(CERT_PATH + "{name}", signing_certificate, methods=["GET"]),
]
