"""Provisioned concurrency configs (how many environments to keep initialised)."""

from __future__ import annotations

from sqlalchemy import func, select

from nimbus.errors import InvalidParameterValue, ProvisionedConcurrencyConfigNotFound
from nimbus.models import ProvisionedConfig
from nimbus.store.functions import FunctionStore
from nimbus.store.qualified import QualifiedSettings
from nimbus.store.schema import provisioned_concurrency


class ProvisionedStore(QualifiedSettings[ProvisionedConfig]):
    def __init__(self, functions: FunctionStore) -> None:
        super().__init__(functions, provisioned_concurrency, ProvisionedConfig)

    def put(self, config: ProvisionedConfig, account_limit: int,
            unreserved_minimum: int) -> ProvisionedConfig:
        """Store ``config``, refused (as Lambda refuses it) beyond the function's reserved
        concurrency with its other configs, or beyond what the account leaves unreserved."""
        name, count = config.function_name, config.requested
        with self.functions.writing(name) as conn:
            record = self.functions.record(conn, name, lock=True)
            others = conn.execute(
                select(func.coalesce(func.sum(self.table.c.requested), 0)).where(
                    self.table.c.function_name == name, self.table.c.qualifier != config.qualifier
                )
            ).scalar_one()
            reserved = record.reserved_concurrency
            if reserved is not None and reserved < others + count:
                raise InvalidParameterValue(
                    "Requested Provisioned Concurrency should not be greater than the "
                    "reservedConcurrentExecution for function")
            if count > account_limit:
                raise InvalidParameterValue(
                    "Specified ConcurrentExecutions for function is greater than account's "
                    f"unreserved concurrency [{account_limit}].", typed=False)
            unreserved = account_limit - self.functions.reserved_total(conn)
            if unreserved - count < unreserved_minimum:
                raise InvalidParameterValue(
                    "Specified ConcurrentExecutions for function decreases account's "
                    "UnreservedConcurrentExecution below its minimum value of "
                    f"[{unreserved_minimum}].", typed=False)
            exists = self._find(conn, name, config.qualifier) is not None
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
