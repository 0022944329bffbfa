"""Provisioned concurrency configs (how many environments to keep initialised)."""

from __future__ import annotations

from sqlalchemy import select

from nimbus.errors import ProvisionedConcurrencyConfigNotFound
from nimbus.models import ProvisionedConfig
from nimbus.store.functions import FunctionStore
from nimbus.store.qualified import QualifiedSettings
from nimbus.store.schema import provisioned_concurrency


class ProvisionedStore(QualifiedSettings[ProvisionedConfig]):
    def __init__(self, functions: FunctionStore) -> None:
        super().__init__(functions, provisioned_concurrency, ProvisionedConfig)

    def put(self, config: ProvisionedConfig) -> ProvisionedConfig:
        with self.functions.writing(config.function_name) as conn:
            self.functions.record(conn, config.function_name, lock=True)
            exists = self._find(conn, config.function_name, config.qualifier) is not None
            self._save(conn, config, exists)
        return config

    def get(self, function: str, qualifier: str) -> ProvisionedConfig:
        with self.db.read() as conn:
            self.functions.record(conn, function)
            config = self._find(conn, function, qualifier)
        if config is None:
            raise ProvisionedConcurrencyConfigNotFound(
                "No Provisioned Concurrency Config found for this function "
                f"({self.functions.arn(function, qualifier)})"
            )
        return config

    def delete(self, function: str, qualifier: str) -> None:
        self.get(function, qualifier)
        self._delete(function, qualifier)

    def all(self) -> list[ProvisionedConfig]:
        with self.db.read() as conn:
            return [self._row(r) for r in conn.execute(select(self.table)).all()]
