"""Cost: GB-seconds and requests priced with the table, checked against hand sums."""

from __future__ import annotations

import math

import pytest

from nimbus.config import ArchitecturePrices, Config, ConfigError, PriceTier, Pricing, load_config
from nimbus.observe.cost import CostModel, Usage, compute_charge, gb_seconds


def test_gb_seconds_is_billed_ms_times_memory() -> None:
    assert gb_seconds(1000, 1024) == 1.0
    assert gb_seconds(250, 512) == 0.125
    assert math.isclose(gb_seconds(3, 128), 3 * 128 / 1024 / 1000)


def test_a_function_costs_what_a_hand_calculation_says() -> None:
    # 1,000,000 invocations of a 512 MB x86 function billed 120 ms each, and 200,000 of
    # a 2048 MB arm64 one billed 1,500 ms, at Lambda's us-east-1 prices.
    usage = Usage()
    usage.add("x86_64", 1_000_000, 1_000_000 * 120 * 512)
    usage.add("arm64", 200_000, 200_000 * 1500 * 2048)
    cost = CostModel(Pricing()).price(usage)
    x86_gb_s = 1_000_000 * 0.120 * 0.5  # 60,000 GB-s
    arm_gb_s = 200_000 * 1.5 * 2.0  # 600,000 GB-s
    assert math.isclose(cost.gb_seconds, x86_gb_s + arm_gb_s)
    assert cost.requests == 1_200_000
    assert math.isclose(cost.request_cost, 1.2 * 0.20)
    by_hand = x86_gb_s * 0.0000166667 + arm_gb_s * 0.0000133334
    assert math.isclose(cost.compute_cost, by_hand)  # $1.000002 + $8.00004
    assert math.isclose(cost.total, 0.24 + by_hand)


def test_tiers_apply_past_their_volume() -> None:
    prices = Pricing().x86_64
    # 10 billion GB-s: 6e9 at the first price, 4e9 at the second.
    assert math.isclose(compute_charge(10e9, prices), 6e9 * 0.0000166667 + 4e9 * 0.000015)
    # 20 billion: all three tiers.
    assert math.isclose(compute_charge(20e9, prices),
                        6e9 * 0.0000166667 + 9e9 * 0.000015 + 5e9 * 0.0000133334)
    assert compute_charge(0, prices) == 0


def test_functions_share_the_tiered_total() -> None:
    table = Pricing(x86_64=ArchitecturePrices(
        request=1.0, gb_second=10.0, tiers=[PriceTier(above_gb_seconds=1.0, gb_second=5.0)]))
    a, b = Usage(), Usage()
    a.add("x86_64", 1, 1024 * 1000)  # 1 GB-s
    b.add("x86_64", 2, 2 * 1024 * 1000)  # 2 GB-s
    each, whole = CostModel(table).per_function({"a": a, "b": b})
    # 3 GB-s in all: 1 at 10 and 2 at 5 = 20, shared 1:2.
    assert math.isclose(whole.compute_cost, 20.0)
    assert math.isclose(each["a"].compute_cost, 20.0 / 3)
    assert math.isclose(each["b"].compute_cost, 40.0 / 3)
    assert math.isclose(each["a"].total + each["b"].total, whole.total)
    assert each["b"].request_cost == 2.0


def test_pricing_comes_from_the_config_file(tmp_path) -> None:
    path = tmp_path / "nimbus.toml"
    path.write_text('[pricing.arm64]\nrequest = 0.000001\ngb_second = 0.00001\n')
    config = load_config(path)
    assert config.pricing.arm64.gb_second == 0.00001
    assert config.pricing.arm64.tiers == []
    assert config.pricing.x86_64 == Pricing().x86_64  # untouched: the default
    bad = tmp_path / "bad.toml"
    bad.write_text('[pricing.x86_64]\nrequest = -1\ngb_second = 1\n')
    with pytest.raises(ConfigError, match=r"pricing\.x86_64\.request"):
        load_config(bad)
    with pytest.raises(ValueError, match="ascending"):
        Config(pricing={"x86_64": {"request": 0, "gb_second": 1, "tiers": [
            {"above_gb_seconds": 5, "gb_second": 1}, {"above_gb_seconds": 2, "gb_second": 1}]}})
