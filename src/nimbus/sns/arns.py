"""Topic and subscription ARNs, and the errors SNS answers about them and other input.

A topic ARN is ``arn:aws:sns:REGION:ACCOUNT:NAME``; a subscription's is its topic's ARN
followed by ``:<uuid>``. SNS checks an ARN's shape before looking it up, in its own words
("An ARN must have at least 6 elements, not 1"), and names an ARN of another region or
account only as an invalid parameter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nimbus.protocol.errors import AwsError

_TOPIC_NAME = re.compile(r"[A-Za-z0-9_-]{1,256}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def invalid(message: str) -> AwsError:
    """SNS's InvalidParameter (400), message as SNS words it."""
    return AwsError("InvalidParameter", message)


def not_found(message: str) -> AwsError:
    return AwsError("NotFound", message, status=404)


def topic_not_found() -> AwsError:
    return not_found("Topic does not exist")


def subscription_not_found() -> AwsError:
    return not_found("Subscription does not exist")


@dataclass(frozen=True)
class Arn:
    region: str
    account: str
    resource: str  # the topic name, or "<topic>:<uuid>" for a subscription


def check_topic_name(name: str) -> None:
    """Topic names as SNS allows them: [A-Za-z0-9_-]{1,256} (FIFO topics are refused
    elsewhere, with their own reason)."""
    if not _TOPIC_NAME.fullmatch(name):
        raise invalid("Invalid parameter: Topic Name")


class Arns:
    """This nimbus's region and account, for making and reading SNS ARNs."""

    def __init__(self, region: str, account: str) -> None:
        self.region = region
        self.account = account

    def topic(self, name: str) -> str:
        return f"arn:aws:sns:{self.region}:{self.account}:{name}"

    def parse(self, arn: str, member: str) -> Arn:
        """``arn`` split, or SNS's InvalidParameter naming ``member`` (TopicArn...)."""
        parts = arn.split(":")
        if len(parts) < 6:
            raise invalid(
                f"Invalid parameter: {member} Reason: An ARN must have at least 6 elements, "
                f"not {len(parts)}"
            )
        if parts[0] != "arn" or parts[2] != "sns":
            raise invalid(f"Invalid parameter: {member}")
        return Arn(parts[3], parts[4], ":".join(parts[5:]))

    def topic_name(self, arn: str, member: str = "TopicArn") -> str:
        """The name of this nimbus's topic ``arn`` names (not looked up)."""
        parsed = self.parse(arn, member)
        if (
            parsed.region != self.region
            or parsed.account != self.account
            or not _TOPIC_NAME.fullmatch(parsed.resource)
        ):
            raise invalid(f"Invalid parameter: {member}")
        return parsed.resource

    def subscription(self, arn: str, member: str = "SubscriptionArn") -> tuple[str, str]:
        """(topic name, id) of a subscription ARN of this nimbus (not looked up)."""
        parsed = self.parse(arn, member)
        topic, _, sub_id = parsed.resource.rpartition(":")
        if not topic or not _UUID.fullmatch(sub_id):
            raise invalid("Invalid parameter: SubscriptionId")
        if parsed.region != self.region or parsed.account != self.account:
            raise invalid(f"Invalid parameter: {member}")
        return topic, sub_id

    def is_topic(self, arn: str) -> bool:
        """Whether ``arn`` is well-formed as a topic ARN of this region and account."""
        try:
            self.topic_name(arn)
        except AwsError:
            return False
        return True
