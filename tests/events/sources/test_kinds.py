"""Which source an EventSourceArn names, and how it may be shown."""

from __future__ import annotations

import pytest

from nimbus.events.sources.kinds import shown


@pytest.mark.parametrize(
    ("given", "seen"),
    [
        ("amqp://guest:guest@127.0.0.1:5672/%2F?queue=q", "amqp://guest:***@127.0.0.1:5672/%2F?queue=q"),
        ("redis://:secret@h:6379/0/orders", "redis://:***@h:6379/0/orders"),
        ("nats://u:p@[::1]:4222/s?subject=a.>", "nats://u:***@[::1]:4222/s?subject=a.>"),
        ("mqtt://user@h/t/#", "mqtt://user@h/t/#"),  # no password: nothing to hide
        ("redis://h:6379/orders", "redis://h:6379/orders"),
        ("arn:aws:sqs:us-east-1:000000000000:q", "arn:aws:sqs:us-east-1:000000000000:q"),
    ],
)
def test_passwords_are_never_shown(given: str, seen: str) -> None:
    assert shown(given) == seen
