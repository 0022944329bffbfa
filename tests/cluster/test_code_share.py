"""Packages reach every node through the shared database: a node that lacks one fetches
it, checks its digest and unpacks it as an upload would be (store/code_share.py)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import update

from nimbus.errors import ServiceError
from nimbus.store.archive import PackageLimits
from nimbus.store.code import CodeStore
from nimbus.store.code_share import CHUNK, CodeShare, code_chunks
from nimbus.store.database import Database
from nimbus.store.schema import metadata
from tests.conftest import make_zip

pytestmark = pytest.mark.postgres

LIMITS = PackageLimits(max_unzipped=250 << 20, max_entries=10_000)


def node(tmp_path: Path, name: str, db: Database) -> CodeStore:
    return CodeStore(tmp_path / name, LIMITS, share=CodeShare(db))


def test_the_migration_matches_the_table(db: Database) -> None:
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert [d for d in diff if "code_chunks" in repr(d)] == []


def test_a_package_stored_on_one_node_runs_from_another(tmp_path: Path, db: Database) -> None:
    # Large enough for several chunks, incompressible so the zip is too.
    blob = random.Random(1).randbytes(2 * CHUNK + 1000)
    data = make_zip({"app.py": "def handler(e, c):\n    return e\n", "big.bin": blob})
    a, b = node(tmp_path, "a", db), node(tmp_path, "b", db)
    stored = a.put(data)
    assert len(data) > 2 * CHUNK and not b.has(stored.sha256_hex)
    b.ensure(stored.sha256_hex)
    assert b.has(stored.sha256_hex)
    assert b.read(stored.sha256_hex) == data
    tree = b.tree_path(stored.sha256_hex)
    assert (tree / "app.py").read_text().startswith("def handler")
    assert (tree / "big.bin").read_bytes() == blob
    b.ensure(stored.sha256_hex)  # here already: nothing to do
    assert a.put(data) == stored  # an identical upload writes no second copy
    with db.read() as conn:
        rows = conn.execute(sa.select(sa.func.count()).select_from(code_chunks)).scalar()
    assert rows == -(-len(data) // CHUNK)


def test_a_package_nowhere_or_damaged_is_a_clear_error(tmp_path: Path, db: Database) -> None:
    a, b = node(tmp_path, "a", db), node(tmp_path, "b", db)
    with pytest.raises(ServiceError, match="on no node"):
        b.ensure("0" * 64)
    stored = a.put(make_zip({"app.py": "x = 1\n"}))
    with db.write() as conn:
        conn.execute(update(code_chunks).values(data=b"not the zip"))
    with pytest.raises(ServiceError, match="does not match"):
        b.ensure(stored.sha256_hex)
    assert not b.has(stored.sha256_hex)
    assert list((tmp_path / "b" / "tmp").iterdir()) == []  # no litter


def test_garbage_collection_reaches_the_shared_copy(tmp_path: Path, db: Database) -> None:
    a = node(tmp_path, "a", db)
    kept = a.put(make_zip({"app.py": "x = 1\n"})).sha256_hex
    gone = a.put(make_zip({"app.py": "x = 2\n"})).sha256_hex
    assert a.collect_garbage({kept}, grace_seconds=0) == 1
    assert a.share is not None
    assert a.share.has(kept) and not a.share.has(gone)
