"""Provisioned concurrency configs (how many environments to keep initialised)."""

from __future__ import annotations

from sqlalchemy import func, select, update

from nimbus.errors import InvalidParameterValue, ProvisionedConcurrencyConfigNotFound
from nimbus.models import ProvisionedConfig
from nimbus.store.functions import FunctionStore
from nimbus.store.qualified import QualifiedSettings
from nimbus.store.schema import functions, provisioned_concurrency


class ProvisionedStore(QualifiedSettings[ProvisionedConfig]):
    def __init__(self, functions: FunctionStore) -> None:
        super().__init__(functions, provisioned_concurrency, ProvisionedConfig)

    def put(self, config: ProvisionedConfig, account_limit: int,
            unreserved_minimum: int) -> ProvisionedConfig:
        """Store ``config`` (any failure recorded for the one it replaces goes), refused
        as Lambda refuses it: beyond the function's reserved concurrency with its other
        configs; without a reservation, beyond what the account leaves unreserved (its
        reservations and the other unreserved functions' configs taken off)."""
        name, count = config.function_name, config.requested
        table = self.table
        with self.functions.writing(name) as conn:
            record = self.functions.record(conn, name, lock=True)
            reserved = record.reserved_concurrency
            if reserved is not None:
                others = conn.execute(
                    select(func.coalesce(func.sum(table.c.requested), 0)).where(
                        table.c.function_name == name, table.c.qualifier != config.qualifier)
                ).scalar_one()
                if reserved < others + count:
                    raise InvalidParameterValue(
                        "Requested Provisioned Concurrency should not be greater than the "
                        "reservedConcurrentExecution for function")
            else:
                if count > account_limit:
                    raise InvalidParameterValue(
                        "Specified ConcurrentExecutions for function is greater than "
                        f"account's unreserved concurrency [{account_limit}].", typed=False)
                unreserved_configs = conn.execute(
                    select(func.coalesce(func.sum(table.c.requested), 0))
                    .select_from(table.join(functions, functions.c.name == table.c.function_name))
                    .where(functions.c.reserved_concurrency.is_(None),
                           ~((table.c.function_name == name)
                             & (table.c.qualifier == config.qualifier)))
                ).scalar_one()
                unreserved = (account_limit - self.functions.reserved_total(conn)
                              - unreserved_configs)
                if unreserved - count < unreserved_minimum:
                    raise InvalidParameterValue(
                        "Specified ConcurrentExecutions for function decreases account's "
                        "UnreservedConcurrentExecution below its minimum value of "
                        f"[{unreserved_minimum}].", typed=False)
            exists = self._find(conn, name, config.qualifier) is not None
            self._save(conn, config, exists)
            conn.execute(update(table).where(self._where(name, config.qualifier))
                         .values(failure=None, failed_ms=None))
        return config

    def record_failure(self, config: ProvisionedConfig, reason: str, at_ms: int) -> None:
        """Note that a node failed to start one of ``config``'s environments (a config
        deleted or put again meanwhile: nothing to note)."""
        with self.db.write() as conn:
            conn.execute(update(self.table)
                         .where(self._where(config.function_name, config.qualifier),
                                self.table.c.last_modified == config.last_modified)
                         .values(failure=reason[:2000], failed_ms=at_ms))

    def failures_since(self, since_ms: int) -> set[tuple[str, str]]:
        """The configs (function, qualifier) a node failed to provision since then."""
        with self.db.read() as conn:
            rows = conn.execute(select(self.table.c.function_name, self.table.c.qualifier)
                                .where(self.table.c.failed_ms >= since_ms)).all()
        return {(r.function_name, r.qualifier) for r in rows}

    def failure(self, function: str, qualifier: str) -> tuple[str, int] | None:
        """The last failure noted for the config, and when (epoch ms)."""
        with self.db.read() as conn:
            row = conn.execute(select(self.table.c.failure, self.table.c.failed_ms)
                               .where(self._where(function, qualifier))).first()
        if row is None or row.failure is None or row.failed_ms is None:
            return None
        return str(row.failure), int(row.failed_ms)

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
