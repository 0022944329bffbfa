"""Admission control: account-wide and reserved concurrency, as Lambda counts it.

Functions with reserved concurrency draw only from their reservation; all others share
what is left of the account limit after every reservation. Over the limit, a sync
invoke is refused with 429 ``TooManyRequestsException`` and Lambda's ``Reason``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

from nimbus.errors import TooManyRequests

RESERVED_REASON = "ReservedFunctionConcurrentInvocationLimitExceeded"
ACCOUNT_REASON = "ConcurrentInvocationLimitExceeded"


class ConcurrencyLimiter:
    """Counts in-flight invocations (event-loop only: no locking needed)."""

    def __init__(self, account_limit: int) -> None:
        self.account_limit = account_limit
        self.in_flight: dict[str, int] = defaultdict(int)
        self.unreserved_in_flight = 0

    def check(self, function: str, reserved: int | None, reserved_total: int) -> None:
        if reserved is not None:
            if self.in_flight[function] >= reserved:
                raise TooManyRequests("Rate Exceeded.", reason=RESERVED_REASON)
        elif self.unreserved_in_flight >= self.account_limit - reserved_total:
            raise TooManyRequests("Rate Exceeded.", reason=ACCOUNT_REASON)

    @contextmanager
    def slot(self, function: str, reserved: int | None, reserved_total: int) -> Iterator[None]:
        """Hold one unit of concurrency for the duration of an invocation."""
        self.check(function, reserved, reserved_total)
        self.in_flight[function] += 1
        if reserved is None:
            self.unreserved_in_flight += 1
        try:
            yield
        finally:
            self.in_flight[function] -= 1
            if not self.in_flight[function]:
                del self.in_flight[function]
            if reserved is None:
                self.unreserved_in_flight -= 1
