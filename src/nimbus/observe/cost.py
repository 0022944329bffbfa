"""What the invocations nimbus ran would cost on Lambda: GB-seconds and requests, priced
with a configurable table (``Config.pricing``; Lambda's us-east-1 prices by default).

Lambda bills each invocation its billed duration (whole milliseconds, rounded up) times
its configured memory: GB-seconds = billed ms x MemorySize / 1024 / 1000, plus a price
per request. Compute is priced by tiers of monthly volume per architecture, across the
account; here the tiers apply to the total of the period asked about, and each function
gets its share of that total's compute charge in proportion to its GB-seconds, so the
functions' costs add up to the total. The free tier is left out: the figure is what the
same load costs, not what a particular bill says.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from nimbus.config import ArchitecturePrices, Pricing

ARCHITECTURES = ("x86_64", "arm64")


def gb_seconds(billed_ms: int, memory_mb: int) -> float:
    """One invocation's compute: billed ms x MemorySize / 1024 / 1000."""
    return billed_ms * memory_mb / 1024 / 1000


@dataclass
class Usage:
    """Requests and compute of one function (or all) over a period, per architecture.
    Compute is kept in MB-milliseconds, an exact integer, until it is priced."""

    requests: dict[str, int] = field(default_factory=dict)
    mb_ms: dict[str, int] = field(default_factory=dict)

    def add(self, architecture: str, requests: int, mb_ms: int) -> None:
        self.requests[architecture] = self.requests.get(architecture, 0) + requests
        self.mb_ms[architecture] = self.mb_ms.get(architecture, 0) + mb_ms

    def merge(self, other: Usage) -> None:
        for arch in other.requests.keys() | other.mb_ms.keys():
            self.add(arch, other.requests.get(arch, 0), other.mb_ms.get(arch, 0))

    def gb_seconds(self, architecture: str | None = None) -> float:
        if architecture is not None:
            return self.mb_ms.get(architecture, 0) / 1024 / 1000
        return sum(self.mb_ms.values()) / 1024 / 1000

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())


@dataclass(frozen=True)
class Cost:
    """A priced ``Usage``."""

    requests: int
    gb_seconds: float
    request_cost: float
    compute_cost: float
    currency: str

    @property
    def total(self) -> float:
        return self.request_cost + self.compute_cost

    def as_json(self) -> dict[str, object]:
        return {
            "Requests": self.requests,
            "GBSeconds": self.gb_seconds,
            "RequestCost": self.request_cost,
            "ComputeCost": self.compute_cost,
            "TotalCost": self.total,
            "Currency": self.currency,
        }


def compute_charge(volume_gb_s: float, prices: ArchitecturePrices) -> float:
    """The tiered charge for ``volume_gb_s`` GB-seconds of one architecture."""
    bounds = [(0.0, prices.gb_second)] + [(t.above_gb_seconds, t.gb_second) for t in prices.tiers]
    charge = 0.0
    for i, (start, price) in enumerate(bounds):
        end = bounds[i + 1][0] if i + 1 < len(bounds) else float("inf")
        if volume_gb_s <= start:
            break
        charge += (min(volume_gb_s, end) - start) * price
    return charge


class CostModel:
    """Prices usages with one ``Pricing`` table."""

    def __init__(self, pricing: Pricing) -> None:
        self.pricing = pricing

    def prices(self, architecture: str) -> ArchitecturePrices:
        # Lambda has two architectures; anything else is priced as x86_64.
        return self.pricing.arm64 if architecture == "arm64" else self.pricing.x86_64

    def price(self, usage: Usage) -> Cost:
        """``usage`` priced as a period's whole volume."""
        return self.price_share(usage, usage)

    def price_share(self, part: Usage, whole: Usage) -> Cost:
        """``part`` of ``whole``: its requests at the request price, and its share (by
        GB-seconds, per architecture) of the tiered compute charge of ``whole``."""
        request_cost = 0.0
        compute_cost = 0.0
        for arch in part.requests.keys() | part.mb_ms.keys():
            prices = self.prices(arch)
            request_cost += part.requests.get(arch, 0) * prices.request
            whole_gb_s = whole.gb_seconds(arch)
            if whole_gb_s > 0:
                share = part.gb_seconds(arch) / whole_gb_s
                compute_cost += compute_charge(whole_gb_s, prices) * share
        return Cost(
            requests=part.total_requests,
            gb_seconds=part.gb_seconds(),
            request_cost=request_cost,
            compute_cost=compute_cost,
            currency=self.pricing.currency,
        )

    def per_function(self, usages: Mapping[str, Usage]) -> tuple[dict[str, Cost], Cost]:
        """Each function's cost and the total, tiers applied to the total."""
        whole = Usage()
        for usage in usages.values():
            whole.merge(usage)
        return {name: self.price_share(u, whole) for name, u in usages.items()}, self.price(whole)
