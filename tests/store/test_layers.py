"""Layer versions in the metadata store, on every backend (SQLite and PostgreSQL)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from nimbus.errors import InvalidParameterValue, ResourceNotFound
from nimbus.models import LayerRef, LayerVersion
from nimbus.store.schema import function_versions
from tests.store.conftest import Stores
from tests.store.records import LAYER_PREFIX, latest


def draft(name: str, sha: str, runtimes: list[str] | None = None) -> LayerVersion:
    return LayerVersion(name, 0, sha, 10, 30, "2026-12-02T00:00:00.000+0000",
                        compatible_runtimes=runtimes or [])


def test_what_functions_hold_survives_the_layer_version(stores: Stores) -> None:
    functions, layers = stores.functions, stores.layers
    one = layers.publish(draft("lib", "a" * 64))
    two = layers.publish(draft("lib", "b" * 64, ["python3.12"]))
    assert (one.version, two.version) == (1, 2)
    assert layers.total_size() == 20
    (ref,) = layers.resolve([LAYER_PREFIX + "lib:1"])
    assert ref == LayerRef(LAYER_PREFIX + "lib:1", "a" * 64, 10, 30)
    functions.create(latest("f", layers=[ref]), {}, False)
    assert functions.get_version("f").layers == [ref]  # read back as a LayerRef

    layers.delete("lib", 1)
    with pytest.raises(ResourceNotFound):
        layers.get("lib", 1)
    with pytest.raises(InvalidParameterValue, match="lib:1 does not exist"):
        layers.resolve([LAYER_PREFIX + "lib:1"])
    # The function still holds its copy, so garbage collection must keep the zip.
    assert layers.code_references() == {"a" * 64, "b" * 64}
    assert layers.publish(draft("lib", "c" * 64)).version == 3
    assert [v.version for v in layers.versions("lib", None, 10).items] == [3, 2]
    assert [v.version for v in layers.versions("lib", None, 10, "python3.12").items] == [2]
    assert layers.parse_arn("arn:aws:lambda:eu-west-1:000000000000:layer:lib:2") == (None, 0)


def test_layers_stored_as_bare_arns_still_read(stores: Stores) -> None:
    functions, layers = stores.functions, stores.layers
    functions.create(latest("f"), {}, False)
    with functions.db.write() as conn:  # as a nimbus before layer versions wrote it
        conn.execute(sa.update(function_versions).values(layers=[LAYER_PREFIX + "old:1"]))
    assert functions.get_version("f").layers == [LayerRef(LAYER_PREFIX + "old:1")]
    assert layers.code_references() == set()


def test_concurrent_publishers_get_distinct_versions(stores: Stores) -> None:
    layers = stores.layers
    with ThreadPoolExecutor(8) as pool:
        published = list(pool.map(lambda n: layers.publish(draft("lib", f"{n:064x}")), range(16)))
    assert sorted(v.version for v in published) == list(range(1, 17))
    assert {v.code_sha256 for v in layers.versions("lib", None, 50).items} == {
        v.code_sha256 for v in published
    }
