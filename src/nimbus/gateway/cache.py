"""Read-through caches for the data plane's lookups (URL id -> config, API id -> routes).

Every HTTP-triggered request needs one of these lookups, so they must not touch the
database on the warm path. A store's ``on_change`` drops entries; a load that raced
with a change (the store's generation moved while it read) is used but not kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from nimbus.threads import blocking

K = TypeVar("K")
V = TypeVar("V")


class Cache(Generic[K, V]):
    """Values of ``load(key)`` (None included, so unknown ids cost one read each), at
    most ``limit`` of them: past that the cache starts over rather than grow without
    bound from requests for random ids."""

    def __init__(
        self, load: Callable[[K], V], generation: Callable[[], int], limit: int = 10_000
    ) -> None:
        self._load = load
        self._generation = generation
        self._limit = limit
        self._values: dict[K, V] = {}

    async def get(self, key: K) -> V:
        try:
            return self._values[key]
        except KeyError:
            pass
        generation = self._generation()
        value = await blocking(self._load, key)
        if self._generation() == generation:
            if len(self._values) >= self._limit:
                self._values = {}
            self._values[key] = value
        return value

    def drop(self, stale: Callable[[K, V], bool]) -> None:
        """Forget the entries ``stale`` picks. Called from the thread that committed a
        change, so it replaces the dict rather than mutate it under a reader."""
        self._values = {k: v for k, v in self._values.items() if not stale(k, v)}
