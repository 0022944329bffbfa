"""``Topics``: SNS-compatible topics, one per process (``engine.sns``), shared by the SNS
API, async destinations and dead-letter configs (which publish to topics).

Publish answers only once what every matching subscription is owed is stored (the
outbox in ``topic_store``): filter policies are applied and each endpoint's message is
made (signed) at publish time, so the fan-out only hands stored messages over and a
crash between the answer and the delivery loses nothing. A subscription of http(s)
stays pending until its endpoint confirms it (``ConfirmSubscription`` with the token a
SubscriptionConfirmation message posted to it carried).
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from nimbus.clock import Clock, now_ms
from nimbus.protocol.errors import AwsError
from nimbus.sns import attributes as attrs
from nimbus.sns.arns import (
    Arns,
    check_topic_name,
    invalid,
    subscription_not_found,
    topic_not_found,
)
from nimbus.sns.filter_policy import FilterPolicy
from nimbus.sns.notifications import (
    Publication,
    Rendering,
    confirmation,
    dumps,
    lambda_event,
    notification,
)
from nimbus.sns.signing import Signer
from nimbus.sns.topic_store import Delivery, SubscriptionRow, TopicRow, TopicStore
from nimbus.sqs.redrive import parse_queue_arn
from nimbus.store.database import Database
from nimbus.threads import blocking

PENDING = "pending confirmation"  # Subscribe's answer for an unconfirmed http(s) endpoint
LISTED_PENDING = "PendingConfirmation"  # the ARN List* show for one
PAGE = 100
USER_AGENT = "Amazon Simple Notification Service Agent"
_LAMBDA_ARN_PARTS = 7  # arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]


@dataclass(frozen=True)
class Page:
    items: list[Any]
    next_token: str | None


class Topics:
    """The topics of this nimbus (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        signer: Signer,
        *,
        region: str,
        account_id: str,
        base_url: str,
        clock: Clock = now_ms,
    ) -> None:
        self.store = TopicStore(db)
        self.signer = signer
        self.arns = Arns(region, account_id)
        self.account_id = account_id
        self.base_url = base_url.rstrip("/")
        self.clock = clock
        # Called when deliveries were stored (the fan-out of this process wakes up).
        self.on_owed: Callable[[], None] | None = None
        self._filters: dict[tuple[str, str, str], FilterPolicy | None] = {}

    # -- topics ----------------------------------------------------------------------------

    def topic_arn(self, name: str) -> str:
        return self.arns.topic(name)

    async def create(
        self,
        name: str,
        attributes: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
    ) -> TopicRow:
        """CreateTopic: idempotent for the same attributes and tags."""
        attributes = dict(attributes or {})
        if name.endswith(".fifo") or attributes.get("FifoTopic", "").lower() == "true":
            raise attrs.unsupported(
                "FifoTopic",
                "FIFO topics are not supported by nimbus yet; create a standard "
                "topic (a name without .fifo)",
            )
        check_topic_name(name)
        stored = {
            key: attrs.check_topic_attribute(key, value, creating=True)
            for key, value in attributes.items()
        }
        stored.pop("FifoTopic", None)
        row, created = await blocking(
            self.store.create_topic, name, stored, dict(tags or {}), self.clock()
        )
        if not created:
            if any(row.attributes.get(k, _default(k)) != v for k, v in stored.items()):
                raise invalid("Invalid parameter: Attributes Reason: Topic already exists with "
                              "different attributes")  # fmt: skip
            if tags and tags != row.tags:
                raise invalid("Invalid parameter: Tags Reason: Topic already exists with "
                              "different tags")  # fmt: skip
        return row

    async def get(self, topic_arn: str) -> TopicRow:
        row = await blocking(self.store.find_topic, self.arns.topic_name(topic_arn))
        if row is None:
            raise topic_not_found()
        return row

    async def exists(self, topic_arn: str) -> bool:
        name = self.arns.topic_name(topic_arn)
        return await blocking(self.store.find_topic, name) is not None

    async def delete(self, topic_arn: str) -> None:
        """DeleteTopic (of a topic that is gone: nothing, as SNS)."""
        await blocking(self.store.delete_topic, self.arns.topic_name(topic_arn))

    async def list_topics(self, next_token: str | None) -> Page:
        after = _after(next_token)
        names = await blocking(self.store.topic_names, after, PAGE + 1)
        page = names[:PAGE]
        token = _token(page[-1]) if len(names) > PAGE else None
        return Page([self.topic_arn(n) for n in page], token)

    async def attributes(self, topic_arn: str) -> dict[str, str]:
        """GetTopicAttributes: the stored ones and what SNS computes."""
        row = await self.get(topic_arn)
        confirmed, pending = await blocking(self.store.counts, row.name)
        arn = self.topic_arn(row.name)
        retry = attrs.http_retry_policy(row.attributes.get("DeliveryPolicy"))
        effective = {"http": {
            "defaultHealthyRetryPolicy": retry,
            "disableSubscriptionOverrides": False,
            "defaultRequestPolicy": {"headerContentType": "text/plain; charset=UTF-8"},
        }}  # fmt: skip
        return {
            "DisplayName": "",
            "Policy": attrs.default_policy(arn, self.account_id),
            **row.attributes,
            "EffectiveDeliveryPolicy": json.dumps(effective, separators=(",", ":")),
            "Owner": self.account_id,
            "SubscriptionsConfirmed": str(confirmed),
            "SubscriptionsDeleted": "0",
            "SubscriptionsPending": str(pending),
            "TopicArn": arn,
        }

    async def set_attribute(self, topic_arn: str, name: str, value: str | None) -> None:
        topic = self.arns.topic_name(topic_arn)
        if value or name not in attrs.TOPIC_SETTABLE:
            stored = attrs.check_topic_attribute(name, value or "", creating=False)
        else:
            stored = ""  # back to SNS's default
        if await blocking(self.store.update_topic, topic, {name: stored}) is None:
            raise topic_not_found()

    async def tag(self, resource_arn: str, tags: dict[str, str]) -> None:
        topic = self._tagged(resource_arn)
        if await blocking(self.store.update_topic, topic, None, tags) is None:
            raise _no_resource()

    async def untag(self, resource_arn: str, keys: Sequence[str]) -> None:
        topic = self._tagged(resource_arn)
        if await blocking(self.store.update_topic, topic, None, None, list(keys)) is None:
            raise _no_resource()

    async def tags(self, resource_arn: str) -> dict[str, str]:
        row = await blocking(self.store.find_topic, self._tagged(resource_arn))
        if row is None:
            raise _no_resource()
        return row.tags

    def _tagged(self, resource_arn: str) -> str:
        try:
            return self.arns.topic_name(resource_arn, "ResourceArn")
        except AwsError:
            raise _no_resource() from None

    # -- subscriptions -----------------------------------------------------------------------

    async def subscribe(
        self,
        topic_arn: str,
        protocol: str,
        endpoint: str | None,
        attributes: dict[str, str] | None = None,
        return_arn: bool = False,
    ) -> str:
        """Subscribe: the subscription's ARN ("pending confirmation" for an http(s) one
        until confirmed, unless ``return_arn``)."""
        topic = self.arns.topic_name(topic_arn)
        protocol = protocol.lower()
        if protocol in attrs.OTHER_PROTOCOLS:
            raise invalid(f"Invalid parameter: Protocol: nimbus does not deliver to {protocol} "
                          f"endpoints (it delivers to {', '.join(attrs.PROTOCOLS)})")  # fmt: skip
        if protocol not in attrs.PROTOCOLS:
            raise invalid(
                f"Invalid parameter: Amazon SNS does not support this protocol string: {protocol}"
            )
        endpoint = self._check_endpoint(protocol, endpoint or "")
        given = {
            key: attrs.check_subscription_attribute(key, value, protocol, subscribing=True)
            for key, value in (attributes or {}).items()
        }
        if given.get("RedrivePolicy"):
            self._check_dead_letter_target(given["RedrivePolicy"], subscribing=True)
        self._filter("", given, subscribing=True)
        web = protocol in ("http", "https")
        row = SubscriptionRow(
            arn=f"{self.topic_arn(topic)}:{uuid.uuid4()}",
            topic=topic,
            protocol=protocol,
            endpoint=endpoint,
            attributes=given,
            pending=web,
            token=secrets.token_hex(64) if web else None,
            created_ms=self.clock(),
        )
        try:
            stored, created = await blocking(self.store.subscribe, row)
        except KeyError:
            raise topic_not_found() from None
        if not created:
            if any(stored.attributes.get(k, _subscription_default(k)) != v
                   for k, v in given.items()):  # fmt: skip
                raise invalid("Invalid parameter: Attributes Reason: Subscription already exists "
                              "with different attributes")  # fmt: skip
        elif web:
            await self._ask_confirmation(stored)
        if stored.pending and not return_arn:
            return PENDING
        return stored.arn

    def _check_endpoint(self, protocol: str, endpoint: str) -> str:
        if protocol == "sqs":
            queue = parse_queue_arn(endpoint)
            if queue is None:
                raise invalid("Invalid parameter: SQS endpoint ARN")
            if (queue.region, queue.account) != (self.arns.region, self.arns.account):
                raise invalid(f"Invalid parameter: SQS endpoint ARN: {endpoint} is in another "
                              f"region or account than this nimbus serves")  # fmt: skip
            if queue.name.endswith(".fifo"):
                raise invalid("Invalid parameter: Invalid parameter: Endpoint Reason: FIFO SQS "
                              "Queues can not be subscribed to standard SNS topics")  # fmt: skip
        elif protocol == "lambda":
            parts = endpoint.split(":")
            if (
                len(parts) not in (_LAMBDA_ARN_PARTS, _LAMBDA_ARN_PARTS + 1)
                or parts[:3] != ["arn", "aws", "lambda"]
                or parts[5] != "function"
                or not parts[6]
            ):
                raise invalid("Invalid parameter: Lambda endpoint ARN")
            if (parts[3], parts[4]) != (self.arns.region, self.arns.account):
                raise invalid(f"Invalid parameter: Lambda endpoint ARN: {endpoint} is in another "
                              f"region or account than this nimbus serves")  # fmt: skip
        elif (
            not endpoint.lower().startswith(f"{protocol}://") or len(endpoint) <= len(protocol) + 3
        ):
            raise invalid("Invalid parameter: Endpoint must match the specified protocol")
        return endpoint

    def _check_dead_letter_target(self, policy: str, *, subscribing: bool) -> None:
        prefix = "Invalid parameter: Attributes Reason: " if subscribing else "Invalid parameter: "
        parsed = attrs.redrive_policy(policy, prefix)
        queue = parse_queue_arn(parsed.dead_letter_target_arn) if parsed else None
        if queue is None:
            raise invalid(f"{prefix}RedrivePolicy: deadLetterTargetArn is an invalid arn")

    def _filter(self, arn: str, attributes: dict[str, str], *, subscribing: bool
                ) -> FilterPolicy | None:  # fmt: skip
        """The subscription's filter policy, parsed once per policy text."""
        key = (arn, attributes.get("FilterPolicy", ""), attributes.get("FilterPolicyScope", ""))
        # Read once, kept in a local: worker threads and the loop share the cache, and a
        # clear() between a set and a get must not lose the policy.
        found = self._filters.get(key)
        if found is None and key not in self._filters:
            if len(self._filters) > 4096:
                self._filters.clear()
            found = self._filters[key] = attrs.check_filter(attributes, subscribing=subscribing)
        return found

    async def _ask_confirmation(self, sub: SubscriptionRow) -> None:
        assert sub.token is not None
        topic_arn = self.topic_arn(sub.topic)
        how = await self._rendering(sub.topic)
        message_id = str(uuid.uuid4())
        doc = confirmation(how, "SubscriptionConfirmation", message_id=message_id,
                           topic_arn=topic_arn, subscription_arn=sub.arn, token=sub.token,
                           sent_ms=self.clock())  # fmt: skip
        topic = await blocking(self.store.find_topic, sub.topic)
        delivery = Delivery(
            message_id, topic_arn, sub.arn, sub.protocol, sub.endpoint, dumps(doc),
            {"headers": _headers("SubscriptionConfirmation", message_id, topic_arn, None, False),
             "retry": attrs.http_retry_policy(topic.attributes.get("DeliveryPolicy")
                                              if topic else None)},
        )  # fmt: skip
        await self._owe(None, [delivery])

    async def confirm(self, topic_arn: str, token: str) -> str:
        """ConfirmSubscription: the confirmed subscription's ARN."""
        try:
            topic = self.arns.topic_name(topic_arn)
        except AwsError:
            raise invalid("Invalid parameter: Topic") from None
        found = await blocking(self.store.confirm, topic, token)
        if found is None:
            raise invalid("Invalid parameter: Token")
        return found.arn

    async def unsubscribe(self, subscription_arn: str) -> None:
        """Unsubscribe (of a subscription that is gone: nothing, as SNS)."""
        self.arns.subscription(subscription_arn)
        await blocking(self.store.unsubscribe, subscription_arn)

    async def subscription(self, subscription_arn: str) -> SubscriptionRow:
        self.arns.subscription(subscription_arn)
        found = await blocking(self.store.subscription, subscription_arn)
        if found is None:
            raise subscription_not_found()
        return found

    async def subscription_attributes(self, subscription_arn: str) -> dict[str, str]:
        sub = await self.subscription(subscription_arn)
        out = {
            "ConfirmationWasAuthenticated": "true" if sub.protocol in ("sqs", "lambda")
            else "false",
            "Endpoint": sub.endpoint,
            "Owner": self.account_id,
            "PendingConfirmation": "true" if sub.pending else "false",
            "Protocol": sub.protocol,
            "RawMessageDelivery": "false",
            "SubscriptionArn": sub.arn,
            "SubscriptionPrincipal": f"arn:aws:iam::{self.account_id}:user/nimbus",
            "TopicArn": self.topic_arn(sub.topic),
            **{k: v for k, v in sub.attributes.items() if v != ""},
        }  # fmt: skip
        if sub.attributes.get("FilterPolicy"):
            out.setdefault("FilterPolicyScope", "MessageAttributes")
        else:
            out.pop("FilterPolicyScope", None)
        if sub.protocol in ("http", "https"):
            topic = await blocking(self.store.find_topic, sub.topic)
            retry = self._retry_policy(sub, topic)
            out["EffectiveDeliveryPolicy"] = json.dumps(
                {"healthyRetryPolicy": retry}, separators=(",", ":")
            )
        return dict(sorted(out.items()))

    async def set_subscription_attribute(
        self, subscription_arn: str, name: str, value: str | None
    ) -> None:
        sub = await self.subscription(subscription_arn)
        text = value or ""
        if text or name != "FilterPolicy":
            checked = attrs.check_subscription_attribute(name, text, sub.protocol,
                                                         subscribing=False)  # fmt: skip
        else:
            checked = ""
        merged = {**sub.attributes, name: checked}
        if name == "RedrivePolicy" and checked:
            self._check_dead_letter_target(checked, subscribing=False)
        if name in ("FilterPolicy", "FilterPolicyScope"):
            self._filter("", merged, subscribing=False)
        if not await blocking(self.store.update_subscription, sub.arn, attributes=merged):
            raise subscription_not_found()

    async def list_subscriptions(self, topic_arn: str | None, next_token: str | None) -> Page:
        topic = self.arns.topic_name(topic_arn) if topic_arn is not None else None
        if topic is not None and await blocking(self.store.find_topic, topic) is None:
            raise topic_not_found()
        rows = await blocking(self.store.list_subscriptions, topic, _after(next_token), PAGE + 1)
        page = rows[:PAGE]
        token = _token(page[-1].arn) if len(rows) > PAGE else None
        items = [{
            "SubscriptionArn": LISTED_PENDING if r.pending else r.arn,
            "Owner": self.account_id,
            "Protocol": r.protocol,
            "Endpoint": r.endpoint,
            "TopicArn": self.topic_arn(r.topic),
        } for r in page]  # fmt: skip
        return Page(items, token)

    # -- publishing ----------------------------------------------------------------------------

    async def publish(self, topic_arn: str, publications: Sequence[Publication]) -> list[str]:
        """Publish (or PublishBatch): the messages' ids, once what each matching
        subscription is owed is stored."""
        topic = self.arns.topic_name(topic_arn)
        row, subs = await blocking(self.store.subscriptions_of, topic)
        if row is None:
            raise topic_not_found()
        message_ids = [str(uuid.uuid4()) for _ in publications]
        now = self.clock()
        # Signing is CPU work: off the event loop with the store work.
        deliveries = await blocking(self._render, row, subs, publications, message_ids, now)
        if not await self._owe(topic, deliveries):
            raise topic_not_found()
        return message_ids

    async def _owe(self, topic: str | None, deliveries: list[Delivery]) -> bool:
        stored = await blocking(self.store.owe, topic, deliveries, self.clock())
        if stored and deliveries and self.on_owed is not None:
            self.on_owed()
        return stored

    async def _rendering(self, topic: str) -> Rendering:
        row = await blocking(self.store.find_topic, topic)
        version = row.attributes.get("SignatureVersion", "1") if row else "1"
        return Rendering(self.signer, self.base_url, version or "1")

    def _retry_policy(self, sub: SubscriptionRow, topic: TopicRow | None) -> dict[str, Any]:
        own = sub.attributes.get("DeliveryPolicy")
        if own:
            return attrs.http_retry_policy(own)
        return attrs.http_retry_policy(topic.attributes.get("DeliveryPolicy") if topic else None)

    def _render(
        self,
        topic: TopicRow,
        subs: list[SubscriptionRow],
        publications: Sequence[Publication],
        message_ids: list[str],
        now: int,
    ) -> list[Delivery]:
        topic_arn = self.topic_arn(topic.name)
        how = Rendering(self.signer, self.base_url, topic.attributes.get("SignatureVersion") or "1")
        out: list[Delivery] = []
        for publication, message_id in zip(publications, message_ids, strict=True):
            for sub in subs:
                if sub.pending:
                    continue
                policy = self._filter(sub.arn, sub.attributes, subscribing=False)
                if policy is not None and not policy.matches(
                    publication.text_for(sub.protocol), publication.attributes
                ):
                    continue
                out.append(self._delivery(how, topic, topic_arn, sub, publication, message_id,
                                          now))  # fmt: skip
        return out

    def _delivery(
        self,
        how: Rendering,
        topic: TopicRow,
        topic_arn: str,
        sub: SubscriptionRow,
        publication: Publication,
        message_id: str,
        now: int,
    ) -> Delivery:
        raw = sub.attributes.get("RawMessageDelivery") == "true"
        envelope = notification(
            how,
            publication,
            sub.protocol,
            message_id=message_id,
            topic_arn=topic_arn,
            subscription_arn=sub.arn,
            sent_ms=now,
        )
        extra: dict[str, Any] = {}
        dlq = attrs.redrive_policy(sub.attributes.get("RedrivePolicy", ""), "")
        if dlq is not None:
            extra["dead_letter_arn"] = dlq.dead_letter_target_arn
        if publication.trace_header:
            extra["trace"] = publication.trace_header
        if sub.protocol == "lambda":
            body = dumps(lambda_event(envelope, sub.arn))
            extra["dead_letter_body"] = dumps(envelope)
        elif sub.protocol == "sqs":
            body = publication.text_for("sqs") if raw else dumps(envelope)
            if raw and publication.attributes:
                extra["attributes"] = publication.attributes
            if publication.group_id:  # SQS fair queues' groups, as SNS passes them on
                extra["group_id"] = publication.group_id
        else:
            body = publication.text_for(sub.protocol) if raw else dumps(envelope)
            extra["headers"] = _headers("Notification", message_id, topic_arn, sub.arn, raw)
            extra["retry"] = self._retry_policy(sub, topic)
        return Delivery(message_id, topic_arn, sub.arn, sub.protocol, sub.endpoint, body, extra)


def _headers(kind: str, message_id: str, topic_arn: str, subscription_arn: str | None,
             raw: bool) -> dict[str, str]:  # fmt: skip
    """The headers SNS posts an http(s) endpoint's messages with."""
    headers = {
        "Content-Type": "text/plain; charset=UTF-8",
        "User-Agent": USER_AGENT,
        "x-amz-sns-message-type": kind,
        "x-amz-sns-message-id": message_id,
        "x-amz-sns-topic-arn": topic_arn,
    }
    if subscription_arn is not None:
        headers["x-amz-sns-subscription-arn"] = subscription_arn
    if raw:
        headers["x-amz-sns-rawdelivery"] = "true"
    return headers


def _default(name: str) -> str:
    return {"DisplayName": ""}.get(name, "")


def _subscription_default(name: str) -> str:
    return {"RawMessageDelivery": "false", "FilterPolicyScope": "MessageAttributes"}.get(name, "")


def _token(last: str) -> str:
    return last.encode().hex()


def _after(token: str | None) -> str:
    if not token:
        return ""
    try:
        return bytes.fromhex(token).decode()
    except (ValueError, UnicodeDecodeError):
        raise invalid("Invalid parameter: NextToken") from None


def _no_resource() -> AwsError:
    return AwsError("ResourceNotFound", "Resource does not exist", status=404)
