"""Where a mapping's OnFailure records go, as the server's supervisor delivers them: an
SNS topic is published to (it used to stall the stream on an assertion), and a webhook
goes through the egress policy like every other webhook (no SSRF past it)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from nimbus.config import Config
from nimbus.events.sources.supervisor import MappingSupervisor
from nimbus.net_policy import EgressRefused
from nimbus.store.database import Database

TOPIC = "arn:aws:sns:us-east-1:000000000000:stream-failures"


class Dispatcher:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    async def publish(self, topic: str, payload: bytes, attributes: dict, trace: Any) -> bool:
        self.published.append((topic, payload))
        return True


def supervisor(tmp_path: Path) -> tuple[MappingSupervisor, Dispatcher]:
    config = Config(data_dir=tmp_path)
    dispatcher = Dispatcher()
    database = Database(f"sqlite:///{tmp_path / 'meta.db'}")
    engine = SimpleNamespace(config=config, dispatcher=dispatcher, sqs=None, db=database,
                             invoker=None, functions=None)
    return MappingSupervisor.for_engine(engine), dispatcher


async def test_on_failure_to_a_topic_is_published(tmp_path: Path) -> None:
    found, dispatcher = supervisor(tmp_path)
    assert found.deliver is not None
    assert await found.deliver(TOPIC, {"requestContext": {"condition": "RetriesExhausted"}})
    ((topic, body),) = dispatcher.published
    assert topic == TOPIC and b"RetriesExhausted" in body


async def test_on_failure_webhook_to_loopback_is_refused(tmp_path: Path) -> None:
    found, _ = supervisor(tmp_path)
    assert found.deliver is not None
    with pytest.raises(EgressRefused):
        await found.deliver("http://127.0.0.1:9/fail", {"x": 1})
