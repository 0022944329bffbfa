"""Property: any archive either is refused with a 4xx or leaves every inode it writes
inside the package directory ([S zip escape]).

Archives are generated from files, directories and symlinks with relative, absolute,
chained and ``..`` names and targets, duplicates and case variants. Every name a
generated entry can write carries a per-run marker, so an escaped write is found by
looking beside the store, in every ancestor directory up to ``/``, and in the staging
directory before it is removed. This runs through ``CodeStore.put``, the one path
CreateFunction, UpdateFunctionCode and PublishLayerVersion all store packages by.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from nimbus.errors import UserError
from nimbus.store import code as code_module
from nimbus.store.archive import PackageLimits
from nimbus.store.code import CodeStore
from tests.conftest import escape_chain, zip_of
from tests.store.unchecked import naive_inspect

MARK = uuid.uuid4().hex[:10]
BASE = Path(tempfile.mkdtemp(prefix=f"nimbus-archive-{MARK}-"))
OUTSIDE = BASE / "outside"
OUTSIDE.mkdir()
LIMITS = PackageLimits(max_unzipped=1 << 20, max_entries=64)

plain = st.sampled_from([f"s{MARK}", f"a{MARK}", f"A{MARK}", f"d{MARK}", f"e{MARK}.py"])
component = st.one_of(plain, plain, plain, st.sampled_from([".", "..", ""]))
clean = st.lists(plain, min_size=1, max_size=4).map("/".join)
relative = st.lists(component, min_size=1, max_size=5).map("/".join)
name = st.one_of(
    clean,
    clean,
    clean,
    relative,
    relative.map(lambda n: "/" + n),
    relative.map(lambda n: n.replace("/", "\\")),
    relative.map(lambda n: f"{OUTSIDE}/{n}"),
)
target = st.one_of(
    clean,
    relative,
    st.integers(1, 12).map(lambda k: "../" * k),
    st.sampled_from([".", "..", "/", str(OUTSIDE), f"{OUTSIDE}/x{MARK}"]),
    relative.map(lambda n: "../" + n),
)
entry = st.one_of(
    st.tuples(st.just("file"), name, st.binary(max_size=64)),
    st.tuples(st.just("dir"), name, st.just(b"")),
    st.tuples(st.just("link"), name, target),
)
# The victim path starts with a marked name, so wherever a write through the chain lands
# (an ancestor of the store, or inside it), the marked name appears right there.
chain = st.integers(1, 12).map(lambda depth: escape_chain(f"/c{MARK}/x", depth))
tidy = st.one_of(
    st.tuples(st.just("file"), clean, st.binary(max_size=64)),
    st.tuples(st.just("dir"), clean, st.just(b"")),
    st.tuples(st.just("link"), clean, st.one_of(clean, clean.map(lambda n: "../" + n))),
)
archive = st.one_of(
    st.lists(entry, max_size=10),
    # Mostly plausible packages, so that many are stored and their trees checked.
    st.lists(tidy, max_size=10, unique_by=lambda e: e[1]),
    st.tuples(st.lists(tidy, max_size=8, unique_by=lambda e: e[1]), entry).map(
        lambda pair: [*pair[0], pair[1]]
    ),
    # The known attack with generated entries around it, in any order.
    st.tuples(chain, st.lists(entry, max_size=4)).flatmap(
        lambda pair: st.permutations(pair[0] + pair[1])
    ),
    # Duplicates and near-duplicates of what is already there.
    st.lists(entry, min_size=1, max_size=6).flatmap(
        lambda es: st.permutations(es + es[: len(es) // 2 + 1])
    ),
)


def escaped() -> list[str]:
    """Every marked name outside the stores' trees: anywhere below BASE, and directly in
    each ancestor of BASE up to ``/``."""
    found = []
    for ancestor in BASE.parents:
        found += [os.path.join(ancestor, n) for n in os.listdir(ancestor) if MARK in n]
    found.remove(str(BASE))
    for folder, dirs, files in os.walk(BASE):
        if Path(folder).parent.name == "trees":
            dirs.clear()  # inside a package: where a package's files belong
            continue
        found += [os.path.join(folder, n) for n in dirs + files if MARK in n]
    return found


@pytest.fixture(scope="module", autouse=True)
def base() -> Iterator[None]:
    yield
    shutil.rmtree(BASE, ignore_errors=True)


def check(entries: list[tuple[str, str, str | bytes]]) -> None:
    store = CodeStore(BASE / "stores" / uuid.uuid4().hex, LIMITS)
    staged: list[list[str]] = []
    real_rmtree = shutil.rmtree

    def checking_rmtree(path: str | os.PathLike[str], **kwargs: object) -> None:
        if Path(path).parent == store.tmp:  # a staging directory, before it goes
            staged.append(sorted(os.listdir(path)))
        real_rmtree(path, **kwargs)

    code_module.shutil.rmtree = checking_rmtree
    try:
        stored = store.put(zip_of(entries))
        event("stored")
    except UserError as exc:
        event("refused")
        assert 400 <= exc.status < 500
        stored = None
    finally:
        code_module.shutil.rmtree = real_rmtree
    assert escaped() == []
    assert all(set(names) <= {"tree", "blob.zip"} for names in staged), staged
    if stored is not None:
        tree = store.tree_path(stored.sha256_hex)
        for folder, dirs, files in os.walk(tree):
            for n in dirs + files:  # every inode lies below the tree, none is a device
                mode = os.lstat(os.path.join(folder, n)).st_mode
                assert stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)
    real_rmtree(store.root, ignore_errors=True)


EXAMPLES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@EXAMPLES
@given(entries=archive)
def test_every_archive_is_refused_or_stays_inside(entries: list) -> None:
    check(entries)


@EXAMPLES
@given(entries=archive)
def test_writing_alone_keeps_every_archive_inside(entries: list) -> None:
    """The same with validation switched off: the unpack child is safe by construction."""
    real = code_module.inspect
    code_module.inspect = naive_inspect
    try:
        check(entries)
    finally:
        code_module.inspect = real
