"""Nothing a topic accepted is lost: kill -9 the server while publishes arrive and an
endpoint is down, restart it, and every message Publish answered 200 for reaches every
subscriber at least once."""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import live_server
from tests.sink import LOCAL_WEBHOOKS
from tests.sns.conftest import Endpoint, Post, queue_arn, receive_until

BATCHES = 200
KILL_AFTER = 40  # accepted batches of 10
SENDERS = 4


class Publishers:
    """Threads publishing numbered messages in batches of 10, sorted by the answer."""

    def __init__(self, client: Any, topic: str) -> None:
        self.accepted: set[int] = set()
        self.enough = threading.Event()
        self._lock = threading.Lock()
        per = BATCHES // SENDERS
        self._threads = [
            threading.Thread(target=self._send, args=(client, topic, range(k * per, (k + 1) * per)))
            for k in range(SENDERS)
        ]
        for t in self._threads:
            t.start()

    def _send(self, client: Any, topic: str, batches: range) -> None:
        for batch in batches:
            numbers = range(batch * 10, batch * 10 + 10)
            try:
                client.publish_batch(TopicArn=topic, PublishBatchRequestEntries=[
                    {"Id": str(n), "Message": json.dumps({"n": n})} for n in numbers
                ])  # fmt: skip
            except Exception:  # the server is gone (or went mid-answer): stop
                return
            with self._lock:
                self.accepted.update(numbers)
                if len(self.accepted) >= KILL_AFTER * 10:
                    self.enough.set()

    def join(self) -> None:
        for t in self._threads:
            t.join()


def notified(posts: list[Post]) -> set[int]:
    """The numbers of the notifications an endpoint got."""
    notes = [json.loads(p.body) for p in posts]
    return {json.loads(n["Message"])["n"] for n in notes if n["Type"] == "Notification"}


def test_kill_9_loses_no_published_message(tmp_path: Path) -> None:
    endpoint = Endpoint()
    data = tmp_path / "data"
    try:
        with live_server(data, LOCAL_WEBHOOKS) as server:  # the endpoint is on loopback
            sns, sqs = server.client("sns"), server.client("sqs")
            topic = sns.create_topic(Name="durable")["TopicArn"]
            url = sqs.create_queue(QueueName="durable-q")["QueueUrl"]
            sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn(sqs, url),
                          Attributes={"RawMessageDelivery": "true"})  # fmt: skip
            sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=endpoint.url, Attributes={
                "DeliveryPolicy": json.dumps({"healthyRetryPolicy": {
                    "numRetries": 100, "minDelayTarget": 1, "maxDelayTarget": 1}}),
            })  # fmt: skip
            (ask,) = endpoint.wait_until(lambda posts: len(posts) == 1)
            assert httpx.get(json.loads(ask.body)["SubscribeURL"]).status_code == 200
            endpoint.fail_first = 10**9  # the http endpoint is down from now on

            publishers = Publishers(sns, topic)
            assert publishers.enough.wait(120), "the server accepted too few messages"
            server.stop(signal.SIGKILL)
            publishers.join()
            accepted = set(publishers.accepted)
            assert len(accepted) >= KILL_AFTER * 10

            # Owed at the kill: what the endpoint that was down never got.
            with sqlite3.connect(data / "nimbus.db") as db:
                (owed,) = db.execute("SELECT count(*) FROM sns_deliveries").fetchone()
            assert owed >= len(accepted)

            endpoint.fail_first = 0  # the endpoint is back
            server.start()
            posts = endpoint.wait_until(lambda ps: accepted <= notified(ps), timeout=180)
            assert len(posts) - 1 >= len(accepted)  # the confirmation, then each message
            received = receive_until(
                sqs, url, lambda got: accepted <= {json.loads(m["Body"])["n"] for m in got}, 180
            )
            assert len(received) >= len(accepted)
    finally:
        endpoint.close()
