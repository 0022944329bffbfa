"""Deployment package validation: every way a zip can be hostile is refused, and a
refused package leaves nothing behind."""

from __future__ import annotations

import io
import stat
import struct
import zipfile
from pathlib import Path

import pytest

from nimbus.errors import InvalidParameterValue
from nimbus.store.archive import PackageLimits
from nimbus.store.code import CodeStore
from tests.conftest import make_zip

LIMITS = PackageLimits(max_unzipped=1 << 20, max_entries=50)


@pytest.fixture
def code(tmp_path: Path) -> CodeStore:
    return CodeStore(tmp_path / "code", LIMITS)


def stored_nothing(code: CodeStore) -> bool:
    return (
        not any((code.root / "blobs").iterdir())
        and not any((code.root / "trees").iterdir())
        and not any(code.tmp.iterdir())
    )


def refuse(code: CodeStore, data: bytes, match: str) -> None:
    with pytest.raises(InvalidParameterValue, match=match):
        code.put(data)
    assert stored_nothing(code)


def test_valid_package_is_extracted_with_modes(code: CodeStore) -> None:
    data = make_zip(
        {"app.py": "x = 1\n", "bin/bootstrap": "#!/bin/sh\n", "lib/a/b.py": ""},
        **{"bin/bootstrap": 0o755},
    )
    stored = code.put(data)
    tree = code.tree_path(stored.sha256_hex)
    assert (tree / "app.py").read_text() == "x = 1\n"
    assert (tree / "bin/bootstrap").stat().st_mode & 0o111
    assert not (tree / "app.py").stat().st_mode & 0o111
    assert code.read(stored.sha256_hex) == data
    assert code.put(data) == stored  # idempotent, content-addressed


def test_not_a_zip(code: CodeStore) -> None:
    refuse(code, b"PK\x03\x04 but not really", "Could not unzip uploaded file")


@pytest.mark.parametrize(
    "name", ["../evil.py", "a/../../evil.py", "/etc/cron.d/x", "C:/windows/x", "..\\evil.py"]
)
def test_paths_escaping_the_package(code: CodeStore, name: str) -> None:
    refuse(code, make_zip({name: "boom"}), r"absolute path|'\.\.'")


def _symlink_zip(name: str, target: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo(name)
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, target)
        zf.writestr("app.py", "")
    return buf.getvalue()


@pytest.mark.parametrize("target", ["/etc/shadow", "../../outside", "a/../../.."])
def test_symlinks_pointing_outside(code: CodeStore, target: str) -> None:
    refuse(code, _symlink_zip("link", target), "symlink .* outside the package")


def test_symlink_inside_is_kept(code: CodeStore) -> None:
    stored = code.put(_symlink_zip("lib/link.py", "../app.py"))
    assert (code.tree_path(stored.sha256_hex) / "lib/link.py").is_symlink()


def test_too_many_entries(code: CodeStore) -> None:
    refuse(code, make_zip({f"f{i}.txt": "" for i in range(51)}), "51 entries; at most 50")


def test_declared_size_over_limit(code: CodeStore) -> None:
    refuse(code, make_zip({"big.bin": b"\0" * ((1 << 20) + 1)}), "Unzipped size must be smaller")


def _lie_about_size(data: bytes, declared: int) -> bytes:
    """Rewrite every size field of the only member to ``declared`` (a classic bomb)."""
    buf = bytearray(data)
    local = buf.find(b"PK\x03\x04")
    struct.pack_into("<I", buf, local + 22, declared)
    central = buf.find(b"PK\x01\x02")
    struct.pack_into("<I", buf, central + 24, declared)
    return bytes(buf)


def test_actual_size_beyond_declared(code: CodeStore) -> None:
    honest = make_zip({"bomb.bin": b"\0" * (4 << 20)})
    refuse(code, _lie_about_size(honest, 1000), "Could not unzip|zip bomb")


def test_real_limit_enforced_while_inflating(tmp_path: Path) -> None:
    store = CodeStore(tmp_path / "c", PackageLimits(max_unzipped=(1 << 20), max_entries=50))
    # Each member declares little; together they inflate past the limit.
    files = {f"part{i}.bin": b"\1" * (300 << 10) for i in range(5)}
    data = make_zip(files)
    with pytest.raises(InvalidParameterValue, match="Unzipped size"):
        store.put(data)
    assert stored_nothing(store)
