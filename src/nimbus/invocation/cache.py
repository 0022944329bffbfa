"""Read-through caches for lookups on the invocation path (qualifier -> versions, event
invoke configs, URL id -> config, API id -> routes).

Every invocation needs some of these, so they must not touch the database on the warm
path. A store's ``on_change`` drops entries; a load that raced with a change (the
store's generation moved while it read) is used but not kept. Concurrent misses for a
key share one load, so a change under load costs one read, not one per event in flight.
"""

from __future__ import annotations

import asyncio
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
        # Loads under way, by key, with the generation they started at: a caller joins
        # one only if nothing changed since it began.
        self._loading: dict[K, tuple[int, asyncio.Task[V]]] = {}

    async def get(self, key: K) -> V:
        try:
            return self._values[key]
        except KeyError:
            pass
        generation = self._generation()
        loading = self._loading.get(key)
        if loading is None or loading[0] != generation:
            task = asyncio.get_running_loop().create_task(self._fill(key, generation))
            # Retrieved here too, so a failure nobody waits for any more is not reported
            # as "never retrieved".
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            loading = self._loading[key] = (generation, task)
        return await asyncio.shield(loading[1])

    async def _fill(self, key: K, generation: int) -> V:
        try:
            value = await blocking(self._load, key)
        finally:
            if self._loading.get(key, (None,))[0] == generation:
                del self._loading[key]
        if self._generation() == generation:
            if len(self._values) >= self._limit:
                self._values = {}
            self._values[key] = value
        return value

    def held_keys(self) -> list[K]:
        """The keys held now."""
        return list(self._values)

    def drop(self, stale: Callable[[K, V], bool]) -> None:
        """Forget the entries ``stale`` picks. Called from the thread that committed a
        change, so it replaces the dict rather than mutate it under a reader."""
        self._values = {k: v for k, v in self._values.items() if not stale(k, v)}
