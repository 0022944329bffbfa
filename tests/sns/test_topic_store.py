"""The outbox of fan-out on each store backend: deliveries owed in one transaction,
claimed under a lease (a claimed delivery is not claimed again until its lease lapses),
settled only by the claim's holder, and released at start-up after a crash."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nimbus.sns.topic_store import Delivery, SubscriptionRow, TopicStore
from nimbus.store.database import Database

NOW = 1_700_000_000_000


@pytest.fixture
def store(database_url: str) -> Iterator[TopicStore]:
    db = Database(database_url)
    db.migrate()
    yield TopicStore(db)
    db.dispose()


def owed(n: int) -> list[Delivery]:
    return [
        Delivery(f"m{i}", "arn:t", "arn:t:s", "sqs", "arn:q", f"body {i}", {"k": i})
        for i in range(n)
    ]


def test_deliveries_are_claimed_once_and_settled_by_their_holder(store: TopicStore) -> None:
    store.create_topic("t", {}, {}, NOW)
    assert store.owe("t", owed(3), NOW)
    assert not store.owe("gone", owed(1), NOW)  # a deleted topic: nothing stored
    first = store.claim(NOW, 60_000, 2)
    assert [d.body for d in first] == ["body 0", "body 1"] and first[0].extra == {"k": 0}
    (third,) = store.claim(NOW, 60_000, 5)  # the first two are held
    assert store.claim(NOW, 60_000, 5) == []
    assert store.done(first[0])
    assert store.retry(first[1], NOW + 1000, "HTTP 503")
    stale = Delivery(**{**third.__dict__, "lease": "someone-else"})
    assert not store.done(stale)  # only the holder settles it
    assert store.claim(NOW + 999, 60_000, 5) == []
    (again,) = store.claim(NOW + 1000, 60_000, 5)
    assert (again.body, again.attempts) == ("body 1", 1)
    assert store.retry(again, None, "gave up")  # kept, never due again
    assert [d.body for d in store.failed()] == ["body 1"]
    # A crash: what was claimed is due again at once.
    assert store.recover(NOW + 2000) == 1
    (back,) = store.claim(NOW + 2000, 60_000, 5)
    assert back.body == "body 2"
    assert store.pending_count() == 1


def test_topics_and_subscriptions(store: TopicStore) -> None:
    _, created = store.create_topic("t", {"DisplayName": "x"}, {"a": "1"}, NOW)
    assert created and not store.create_topic("t", {}, {}, NOW)[1]
    sub = SubscriptionRow("arn:t:1", "t", "http", "http://e", {}, True, "tok", NOW)
    assert store.subscribe(sub) == (sub, True)
    same = SubscriptionRow("arn:t:2", "t", "http", "http://e", {}, True, "tok2", NOW)
    assert store.subscribe(same) == (sub, False)  # one subscription per endpoint
    with pytest.raises(KeyError):
        store.subscribe(SubscriptionRow("arn:u:1", "u", "sqs", "q", {}, False, None, NOW))
    assert store.counts("t") == (0, 1)
    assert store.confirm("t", "wrong") is None
    confirmed = store.confirm("t", "tok")
    assert confirmed is not None and not confirmed.pending
    assert store.counts("t") == (1, 0)
    updated = store.update_topic("t", untag=["a"], tags={"b": "2"})
    assert updated is not None and updated.tags == {"b": "2"}
    assert store.delete_topic("t")
    assert store.subscription("arn:t:1") is None  # gone with its topic
