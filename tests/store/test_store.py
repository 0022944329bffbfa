"""The metadata store, run on every backend (SQLite and the local PostgreSQL)."""

from __future__ import annotations

import threading

import pytest

from nimbus.errors import (
    InvalidParameterValue,
    PreconditionFailed,
    ResourceConflict,
    ResourceNotFound,
)
from nimbus.models import LATEST, Alias
from tests.store.conftest import Stores
from tests.store.records import latest


def test_create_read_duplicate(stores: Stores) -> None:
    functions = stores.functions
    functions.create(latest("f", environment={"A": "1"}, layers=[]), {"team": "x"}, False)
    got = functions.get_version("f")
    assert got.environment == {"A": "1"} and got.runtime == "python3.12"
    assert functions.get_record("f").tags == {"team": "x"}
    with pytest.raises(ResourceConflict, match="Function already exist: f"):
        functions.create(latest("f"), {}, False)
    with pytest.raises(ResourceNotFound, match="function:nope"):
        functions.get_version("nope")


def test_pagination_covers_everything_once(stores: Stores) -> None:
    functions = stores.functions
    names = [f"fn-{i:02d}" for i in range(7)]
    for n in names:
        functions.create(latest(n), {}, False)
    seen, marker = [], None
    while True:
        page = functions.list_functions(marker, 3, False)
        seen += [v.function_name for v in page.items]
        marker = page.next_marker
        if marker is None:
            break
    assert seen == names
    with pytest.raises(InvalidParameterValue, match="Marker"):
        functions.list_functions("!!garbage", 3, False)


def test_publish_versions_and_revision_checks(stores: Stores) -> None:
    functions = stores.functions
    functions.create(latest("f"), {}, publish=True)
    assert functions.get_version("f", "1").version == "1"
    # Nothing changed: publishing again returns version 1, as Lambda does.
    assert functions.publish("f", None, None, None).version == "1"
    cur = functions.get_version("f")
    with pytest.raises(PreconditionFailed):
        functions.update_latest("f", lambda v: v.replace(timeout=9), "wrong-revision")
    functions.update_latest("f", lambda v: v.replace(timeout=9, revision_id="r2"), cur.revision_id)
    v2 = functions.publish("f", "second", None, "r2")
    assert (v2.version, v2.timeout, v2.description) == ("2", 9, "second")
    # Publishing gave $LATEST a new RevisionId, as on Lambda: r2 no longer guards it; a
    # publish that returns the existing version leaves it as it is.
    after = functions.get_version("f").revision_id
    assert after not in ("r2", v2.revision_id)
    with pytest.raises(PreconditionFailed):
        functions.publish("f", None, None, "r2")
    assert functions.publish("f", None, None, after) == v2
    assert functions.get_version("f").revision_id == after
    with pytest.raises(InvalidParameterValue, match="CodeSHA256"):
        functions.publish("f", None, "bm90LXRoaXM=", None)
    page = functions.list_versions("f", None, 2)
    assert [v.version for v in page.items] == [LATEST, "1"]
    page = functions.list_versions("f", page.next_marker, 2)
    assert [v.version for v in page.items] == ["2"] and page.next_marker is None

    # The newest version deleted: publishing again takes a new number, never reuses 2.
    functions.delete("f", "2")
    assert functions.publish("f", None, None, None).version == "3"


def test_concurrent_publishes_get_distinct_numbers(stores: Stores) -> None:
    functions = stores.functions
    functions.create(latest("f"), {}, False)
    errors: list[BaseException] = []

    def bump_and_publish(i: int) -> None:
        try:
            functions.update_latest("f", lambda v: v.replace(memory_size=128 + i), None, True)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=bump_and_publish, args=(i,)) for i in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    versions = [v.version for v in functions.list_versions("f", None, 50).items]
    assert versions == [LATEST, *[str(i) for i in range(1, 9)]]


def test_aliases_routing_and_deletion_rules(stores: Stores) -> None:
    functions, aliases = stores.functions, stores.aliases
    functions.create(latest("f"), {}, True)
    functions.update_latest("f", lambda v: v.replace(timeout=5), None, True)
    alias = aliases.create(Alias("f", "live", "1", "rev", routing={"2": 0.25}))
    assert aliases.get("f", "live").routing == {"2": 0.25}
    with pytest.raises(ResourceConflict, match="Alias already exists"):
        aliases.create(alias)
    with pytest.raises(ResourceNotFound, match="function:f:9"):
        aliases.create(Alias("f", "bad", "9", "rev"))
    with pytest.raises(InvalidParameterValue, match="greater than 1"):
        aliases.update("f", "live", None, None, {"2": 0.1, "3": 0.1}, None)
    with pytest.raises(ResourceConflict, match=r"aliases reference it: \[live\]"):
        functions.delete("f", "2")
    with pytest.raises(PreconditionFailed):
        aliases.update("f", "live", "2", None, {}, "stale")
    moved = aliases.update("f", "live", "2", None, {}, alias.revision_id)
    assert moved.function_version == "2" and moved.routing == {}
    functions.delete("f", "1")
    with pytest.raises(InvalidParameterValue, match=r"\$LATEST version cannot be deleted"):
        functions.delete("f", LATEST)
    assert [a.name for a in aliases.list("f", None, None, 10).items] == ["live"]
    functions.delete("f", None)
    with pytest.raises(ResourceNotFound):
        aliases.get("f", "live")


def test_reserved_concurrency_keeps_unreserved_minimum(stores: Stores) -> None:
    functions = stores.functions
    functions.create(latest("a"), {}, False)
    functions.create(latest("b"), {}, False)
    functions.set_reserved_concurrency("a", 800, 1000, 100)
    with pytest.raises(InvalidParameterValue, match=r"minimum value of \[100\]"):
        functions.set_reserved_concurrency("b", 101, 1000, 100)
    functions.set_reserved_concurrency("b", 100, 1000, 100)
    assert functions.reserved_sum() == 900
    functions.set_reserved_concurrency("a", None, 1000, 100)
    assert functions.get_record("a").reserved_concurrency is None


def test_tags_and_usage(stores: Stores) -> None:
    functions = stores.functions
    functions.create(latest("a", sha="cd" * 32), {"k": "v"}, True)
    assert functions.update_tags("a", {"x": "1"}, ["k"]) == {"x": "1"}
    assert functions.usage() == (1, 20)  # $LATEST and version 1 each count
    assert functions.code_references() == {"cd" * 32}
