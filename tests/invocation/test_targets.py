"""Qualifier resolution (``Targets``) on real stores over a temporary SQLite database.

Covers: no qualifier and ``$LATEST``; published versions; aliases, with and without
weighted routing (the roll is injected: ``Resolution.pick`` reads the ``random``
module); unknown functions, versions and aliases -> ResourceNotFound with Lambda's
message; the cache (kept while nothing changes, dropped when that function changes,
kept when another one does); and the reserved-concurrency total.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from nimbus.errors import ResourceNotFound
from nimbus.invocation import targets as targets_module
from nimbus.invocation.targets import Targets
from nimbus.models import LATEST, Alias
from tests.fakes import Stores, create_function, publish, stores_in

ARN = "arn:aws:lambda:us-east-1:000000000000:function:fn"


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    with stores_in(tmp_path / "data") as stores:
        create_function(stores.functions, "fn", memory_size=128)
        publish(stores.functions, "fn", memory_size=256)  # version 1
        publish(stores.functions, "fn", memory_size=512)  # version 2
        yield stores


@pytest.fixture
def targets(stores: Stores) -> Targets:
    return Targets(stores.functions, stores.aliases)


def alias(name: str, version: str, routing: dict[str, float] | None = None) -> Alias:
    return Alias("fn", name, version, f"rev-{name}", routing=routing or {})


def rolls(monkeypatch: pytest.MonkeyPatch, *values: float) -> None:
    """Make ``Resolution.pick`` draw ``values`` in order."""
    draws = iter(values)
    monkeypatch.setattr(targets_module, "random", SimpleNamespace(random=lambda: next(draws)))


@pytest.mark.parametrize("qualifier", [None, "", LATEST])
async def test_no_qualifier_means_latest(targets: Targets, qualifier: str | None) -> None:
    resolution = await targets.resolve("fn", qualifier)
    assert resolution.alias is None
    assert list(resolution.versions) == [LATEST]
    picked = resolution.pick()
    assert (picked.version, picked.memory_size) == (LATEST, 512)
    assert resolution.record.name == "fn" and resolution.record.last_published == 2


async def test_a_version_number_resolves_to_that_version(targets: Targets) -> None:
    for number, memory in (("1", 256), ("2", 512)):
        resolution = await targets.resolve("fn", number)
        assert resolution.alias is None and list(resolution.versions) == [number]
        assert resolution.pick().memory_size == memory


async def test_an_alias_resolves_to_its_version(targets: Targets, stores: Stores) -> None:
    stores.aliases.create(alias("live", "1"))
    resolution = await targets.resolve("fn", "live")
    assert resolution.alias is not None and resolution.alias.function_version == "1"
    assert list(resolution.versions) == ["1"]
    assert {resolution.pick().version for _ in range(20)} == {"1"}


async def test_a_weighted_alias_routes_by_its_weights(
    targets: Targets, stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    stores.aliases.create(alias("canary", "1", {"2": 0.25}))
    resolution = await targets.resolve("fn", "canary")
    assert set(resolution.versions) == {"1", "2"}
    rolls(monkeypatch, 0.0, 0.2499, 0.25, 0.9999)
    assert [resolution.pick().version for _ in range(4)] == ["2", "2", "1", "1"]


async def test_weighted_routing_splits_traffic_in_proportion(
    targets: Targets, stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    stores.aliases.create(alias("canary", "1", {"2": 0.3}))
    resolution = await targets.resolve("fn", "canary")
    generator = random.Random(1234)
    monkeypatch.setattr(targets_module, "random", generator)
    picks = Counter(resolution.pick().version for _ in range(10_000))
    assert set(picks) == {"1", "2"}
    assert 2700 < picks["2"] < 3300


@pytest.mark.parametrize("weight, expected", [(0.0, {"1"}), (1.0, {"2"})])
async def test_weights_of_zero_and_one_route_all_one_way(
    targets: Targets, stores: Stores, weight: float, expected: set[str]
) -> None:
    stores.aliases.create(alias("edge", "1", {"2": weight}))
    resolution = await targets.resolve("fn", "edge")
    assert {resolution.pick().version for _ in range(200)} == expected


@pytest.mark.parametrize(
    "name, qualifier, arn",
    [
        # Lambda's Invoke names what was invoked, $LATEST when no qualifier was given
        # (recorded: test_function_name_and_qualifier_validation[...-invoke]).
        ("ghost", None, "arn:aws:lambda:us-east-1:000000000000:function:ghost:$LATEST"),
        ("ghost", "live", "arn:aws:lambda:us-east-1:000000000000:function:ghost:live"),
        ("fn", "7", f"{ARN}:7"),
        ("fn", "nope", f"{ARN}:nope"),
    ],
    ids=["unknown function", "alias of unknown function", "unknown version", "unknown alias"],
)
async def test_unknown_targets_are_not_found(
    targets: Targets, name: str, qualifier: str | None, arn: str
) -> None:
    with pytest.raises(ResourceNotFound) as info:
        await targets.resolve(name, qualifier)
    assert info.value.message == f"Function not found: {arn}"
    assert info.value.status == 404


async def test_resolutions_are_cached_until_the_function_changes(
    targets: Targets, stores: Stores
) -> None:
    stores.aliases.create(alias("live", "1"))
    create_function(stores.functions, "other")
    first = await targets.resolve("fn", "live")
    assert await targets.resolve("fn", "live") is first  # no second read
    stores.functions.update_tags("other", {"team": "b"})  # another function: kept
    assert await targets.resolve("fn", "live") is first
    stores.aliases.update("fn", "live", "2", None, None, None)
    moved = await targets.resolve("fn", "live")
    assert moved is not first and moved.pick().version == "2"


async def test_a_cached_resolution_is_dropped_when_its_function_is_deleted(
    targets: Targets, stores: Stores
) -> None:
    await targets.resolve("fn", None)
    stores.functions.delete("fn", None)
    with pytest.raises(ResourceNotFound):
        await targets.resolve("fn", None)


async def test_a_failed_resolution_is_not_cached(targets: Targets, stores: Stores) -> None:
    with pytest.raises(ResourceNotFound):
        await targets.resolve("fn", "later")
    stores.aliases.create(alias("later", "2"))
    assert (await targets.resolve("fn", "later")).pick().version == "2"


async def test_reserved_total_sums_reservations_and_follows_changes(
    targets: Targets, stores: Stores
) -> None:
    assert await targets.reserved_total() == 0
    create_function(stores.functions, "other")
    stores.functions.set_reserved_concurrency("fn", 10, 1000, 100)
    stores.functions.set_reserved_concurrency("other", 5, 1000, 100)
    assert await targets.reserved_total() == 15
    stores.functions.set_reserved_concurrency("other", None, 1000, 100)
    assert await targets.reserved_total() == 10
    record = (await targets.resolve("fn", None)).record
    assert record.reserved_concurrency == 10
