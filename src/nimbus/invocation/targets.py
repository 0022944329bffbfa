"""What an invocation runs: a function name and qualifier resolved to one version.

The warm path must not touch the database, so resolutions are cached in memory and
dropped whenever the store commits a change to that function (``on_change``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from nimbus.errors import ResourceNotFound
from nimbus.invocation.cache import Cache
from nimbus.models import LATEST, Alias, FunctionRecord, FunctionVersion
from nimbus.store.aliases import AliasStore
from nimbus.store.functions import FunctionStore
from nimbus.threads import blocking


@dataclass(frozen=True)
class Resolution:
    """A qualifier's meaning: the record, the alias (if any) and its candidate versions."""

    record: FunctionRecord
    alias: Alias | None
    versions: dict[str, FunctionVersion]

    def pick(self) -> FunctionVersion:
        """Choose the version to run, honouring an alias's weighted routing."""
        if self.alias is None:
            return next(iter(self.versions.values()))
        roll = random.random()
        for version, weight in self.alias.routing.items():
            if roll < weight:
                return self.versions[version]
            roll -= weight
        return self.versions[self.alias.function_version]


class Targets:
    """Resolves (function, qualifier) with an in-memory cache kept honest by the store."""

    def __init__(self, functions: FunctionStore, aliases: AliasStore) -> None:
        self.functions = functions
        self.aliases = aliases
        self._cache: Cache[tuple[str, str], Resolution] = Cache(
            lambda key: self._load(*key), lambda: functions.generation
        )
        self._reserved_total: int | None = None
        functions.on_change(self._forget)

    def _forget(self, name: str) -> None:
        self._cache.drop(lambda key, _: key[0] == name)
        self._reserved_total = None

    def forget(self, name: str) -> None:
        """Read ``name`` from the store again at its next resolve (another node changed
        it, and this one has not heard yet)."""
        self._forget(name)

    def names(self) -> set[str]:
        """The functions this cache holds something of."""
        return {name for name, _ in self._cache.held_keys()}

    async def resolve(self, name: str, qualifier: str | None) -> Resolution:
        return await self._cache.get((name, qualifier or LATEST))

    def _load(self, name: str, qualifier: str) -> Resolution:
        try:
            record = self.functions.get_record(name)
        except ResourceNotFound as exc:  # Lambda names what was invoked: $LATEST if nothing
            raise ResourceNotFound(
                f"Function not found: {self.functions.arn(name, qualifier)}"
            ) from exc
        if qualifier == LATEST or qualifier.isdigit():
            version = self.functions.get_version(name, qualifier)
            return Resolution(record, None, {version.version: version})
        try:
            alias = self.aliases.get(name, qualifier)
        except ResourceNotFound as exc:
            raise ResourceNotFound(
                f"Function not found: {self.functions.arn(name, qualifier)}"
            ) from exc
        versions = {
            v: self.functions.get_version(name, v) for v in [alias.function_version, *alias.routing]
        }
        return Resolution(record, alias, versions)

    async def reserved_total(self) -> int:
        if self._reserved_total is None:
            generation = self.functions.generation
            total = await blocking(self.functions.reserved_sum)
            if self.functions.generation == generation:
                self._reserved_total = total
            return total
        return self._reserved_total
