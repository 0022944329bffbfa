"""http(s) subscriptions go through nimbus' egress policy (``nimbus.net_policy``): an
endpoint on this host's loopback, link-local or private addresses is refused unless
``webhook_allow`` lists it, and a refusal is final (not retried, nothing posted)."""

from __future__ import annotations

import time
from typing import Any

from tests.nimbus_process import NimbusProcess
from tests.sns.conftest import Endpoint

DEADLINE_S = 60


def logged(server: NimbusProcess, *needles: str) -> str:
    """The server's log line holding every one of ``needles`` (awaited, with a deadline)."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        for line in list(server.output):
            if all(needle in line for needle in needles):
                return line
        time.sleep(0.05)
    raise AssertionError(f"no log line with {needles}:\n" + "".join(server.output))


def test_a_loopback_endpoint_is_refused_without_the_allow_list(
    server: NimbusProcess, sns: Any, endpoint: Endpoint
) -> None:
    topic = sns.create_topic(Name="egress")["TopicArn"]
    answer = sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=endpoint.url)
    assert answer["SubscriptionArn"] == "pending confirmation"
    line = logged(server, "SNS gave up delivering", endpoint.url, "loopback")
    assert "NIMBUS_WEBHOOK_ALLOW" in line  # says how to allow it
    assert endpoint.posts == []  # the confirmation never reached it
    # Refused once, given up at once: no retry was scheduled for it.
    assert not any("retrying" in out and endpoint.url in out for out in server.output)
