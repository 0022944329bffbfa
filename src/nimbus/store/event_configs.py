"""Event invoke configs (async retries, max age, destinations) in the metadata store."""

from __future__ import annotations

import dataclasses

from nimbus.errors import ResourceNotFound
from nimbus.models import LATEST, EventInvokeConfig
from nimbus.store.functions import FunctionStore
from nimbus.store.qualified import QualifiedSettings
from nimbus.store.schema import event_invoke_configs


class EventConfigStore(QualifiedSettings[EventInvokeConfig]):
    """One config per (function, qualifier); invocations use their qualifier's config."""

    def __init__(self, functions: FunctionStore) -> None:
        super().__init__(functions, event_invoke_configs, EventInvokeConfig)

    def get(self, function: str, qualifier: str) -> EventInvokeConfig:
        config = self.find(function, qualifier)
        if config is None:
            self.functions.get_record(function)
            arn = self.functions.arn(function, None if qualifier == LATEST else qualifier)
            raise ResourceNotFound(f"The function {arn} doesn't have an EventInvokeConfig")
        return config

    def put(self, config: EventInvokeConfig, merge: bool) -> EventInvokeConfig:
        """Put replaces the whole config; Update (``merge``) keeps unspecified members."""
        with self.functions.writing(config.function_name) as conn:
            self.functions.record(conn, config.function_name, lock=True)
            current = self._find(conn, config.function_name, config.qualifier)
            if current is not None and merge:
                changes = {k: v for k, v in dataclasses.asdict(config).items() if v is not None}
                config = dataclasses.replace(current, **changes)
            self._save(conn, config, exists=current is not None)
        return config

    def delete(self, function: str, qualifier: str) -> None:
        self.get(function, qualifier)
        self._delete(function, qualifier)
