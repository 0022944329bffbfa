"""Fixtures of the store tests: every store over one freshly migrated database, on each
backend (``database_url``: SQLite, and the local PostgreSQL for tests marked postgres)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from nimbus.models import Alias
from nimbus.store.aliases import AliasStore
from nimbus.store.database import Database
from nimbus.store.function_urls import FunctionUrlStore
from nimbus.store.functions import FunctionStore
from nimbus.store.layers import LayerStore
from nimbus.store.policies import PolicyStore
from tests.store.records import LAYER_PREFIX, arn, latest


@dataclass
class Stores:
    functions: FunctionStore
    aliases: AliasStore
    layers: LayerStore
    policies: PolicyStore
    urls: FunctionUrlStore


@pytest.fixture
def stores(database_url: str) -> Iterator[Stores]:
    """The stores over an empty database."""
    db = Database(database_url)
    db.migrate()
    db.migrate()  # idempotent
    functions = FunctionStore(db, arn)
    yield Stores(
        functions=functions,
        aliases=AliasStore(functions),
        layers=LayerStore(db, LAYER_PREFIX),
        policies=PolicyStore(functions),
        urls=FunctionUrlStore(functions),
    )
    db.dispose()


@pytest.fixture
def stores_with_f(stores: Stores) -> Stores:
    """The stores holding function ``f``, published as version 1, and its alias ``live``
    pointing at that version."""
    stores.functions.create(latest("f"), {}, publish=True)
    stores.aliases.create(Alias("f", "live", "1", str(uuid.uuid4())))
    return stores
