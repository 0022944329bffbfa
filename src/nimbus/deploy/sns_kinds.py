"""SNS topics and subscriptions (``AWS::SNS::Topic``, ``AWS::SNS::Subscription``), deployed
with boto3's ``sns`` client. SAM's ``SNS`` event on a function expands into a
subscription of protocol ``lambda`` (and a permission), deployed as any other."""

from __future__ import annotations

import json
from typing import Any

from nimbus.deploy.kinds import Context, Kind, Made, ignore_missing, register, tags_dict

_TOPIC_ATTRIBUTES = ("DisplayName", "SignatureVersion", "TracingConfig")
_TOPIC_DEFAULTS = {"DisplayName": "", "SignatureVersion": "1", "TracingConfig": "PassThrough"}
_SUBSCRIPTION_ATTRIBUTES = (
    "FilterPolicy", "FilterPolicyScope", "RawMessageDelivery", "RedrivePolicy", "DeliveryPolicy",
)  # fmt: skip
# What a subscription attribute is set back to when the template stops setting it.
_SUBSCRIPTION_DEFAULTS = {
    "FilterPolicy": "", "FilterPolicyScope": "MessageAttributes", "RawMessageDelivery": "false",
    "RedrivePolicy": "", "DeliveryPolicy": "",
}  # fmt: skip


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _sns(ctx: Context) -> Any:
    return ctx.client("sns")


def _tag_list(value: Any) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags_dict(value).items()]


def _inline(props: dict[str, Any]) -> set[tuple[str, str]]:
    return {(str(s["Protocol"]), str(s["Endpoint"])) for s in props.get("Subscription") or []}


@register
class Topic(Kind):
    type_name = "AWS::SNS::Topic"
    properties = frozenset({*_TOPIC_ATTRIBUTES, "TopicName", "Tags", "Subscription"})
    replace_on = frozenset({"TopicName"})

    def check(self, props: dict[str, Any]) -> list[tuple[str | None, str]]:
        for sub in props.get("Subscription") or []:
            if not isinstance(sub, dict) or not {"Protocol", "Endpoint"} <= set(sub):
                return [("Subscription", "each subscription needs Protocol and Endpoint")]
        return []

    def create(self, ctx: Context, logical_id: str, props: dict[str, Any]) -> Made:
        sns = _sns(ctx)
        name = str(props.get("TopicName") or ctx.name(logical_id, 256))
        args: dict[str, Any] = {
            "Name": name,
            "Attributes": {k: _text(props[k]) for k in _TOPIC_ATTRIBUTES if k in props},
        }
        if props.get("Tags"):
            args["Tags"] = _tag_list(props["Tags"])
        arn = sns.create_topic(**args)["TopicArn"]
        for protocol, endpoint in sorted(_inline(props)):
            sns.subscribe(TopicArn=arn, Protocol=protocol, Endpoint=endpoint,
                          ReturnSubscriptionArn=True)  # fmt: skip
        return Made(arn, {"TopicArn": arn, "TopicName": name})

    def update(
        self, ctx: Context, logical_id: str, made: Made, props: dict[str, Any],
        old: dict[str, Any],
    ) -> Made:  # fmt: skip
        sns, arn = _sns(ctx), made.physical_id
        for key in _TOPIC_ATTRIBUTES:
            new, before = props.get(key), old.get(key)
            if new != before:
                value = _text(new) if new is not None else _TOPIC_DEFAULTS[key]
                sns.set_topic_attributes(TopicArn=arn, AttributeName=key, AttributeValue=value)
        tags, old_tags = tags_dict(props.get("Tags")), tags_dict(old.get("Tags"))
        gone = [k for k in old_tags if k not in tags]
        if gone:
            sns.untag_resource(ResourceArn=arn, TagKeys=gone)
        if tags and tags != old_tags:
            sns.tag_resource(ResourceArn=arn, Tags=_tag_list(tags))
        wanted, had = _inline(props), _inline(old)
        if wanted != had:
            current = {
                (s["Protocol"], s["Endpoint"]): s["SubscriptionArn"]
                for page in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=arn)
                for s in page["Subscriptions"]
            }
            for gone_sub in had - wanted:
                if current.get(gone_sub, "").startswith("arn:"):
                    ignore_missing(sns.unsubscribe, SubscriptionArn=current[gone_sub])
            for protocol, endpoint in sorted(wanted - had):
                sns.subscribe(TopicArn=arn, Protocol=protocol, Endpoint=endpoint,
                              ReturnSubscriptionArn=True)  # fmt: skip
        return made

    def delete(self, ctx: Context, made: Made) -> None:
        ignore_missing(_sns(ctx).delete_topic, TopicArn=made.physical_id)


@register
class Subscription(Kind):
    type_name = "AWS::SNS::Subscription"
    properties = frozenset({*_SUBSCRIPTION_ATTRIBUTES, "TopicArn", "Protocol", "Endpoint"})
    required = frozenset({"TopicArn", "Protocol", "Endpoint"})
    replace_on = frozenset({"TopicArn", "Protocol", "Endpoint"})

    def create(self, ctx: Context, logical_id: str, props: dict[str, Any]) -> Made:
        attributes = {k: _text(props[k]) for k in _SUBSCRIPTION_ATTRIBUTES if k in props}
        arn = _sns(ctx).subscribe(
            TopicArn=props["TopicArn"], Protocol=props["Protocol"], Endpoint=props["Endpoint"],
            Attributes=attributes, ReturnSubscriptionArn=True,
        )["SubscriptionArn"]  # fmt: skip
        return Made(arn)

    def update(
        self, ctx: Context, logical_id: str, made: Made, props: dict[str, Any],
        old: dict[str, Any],
    ) -> Made:  # fmt: skip
        sns = _sns(ctx)
        # The scope first: a body policy can only be set under the MessageBody scope.
        for key in ("FilterPolicyScope", *(k for k in _SUBSCRIPTION_ATTRIBUTES
                                           if k != "FilterPolicyScope")):  # fmt: skip
            new, before = props.get(key), old.get(key)
            if new != before:
                value = _text(new) if new is not None else _SUBSCRIPTION_DEFAULTS[key]
                sns.set_subscription_attributes(
                    SubscriptionArn=made.physical_id, AttributeName=key, AttributeValue=value
                )
        return made

    def delete(self, ctx: Context, made: Made) -> None:
        ignore_missing(_sns(ctx).unsubscribe, SubscriptionArn=made.physical_id)
