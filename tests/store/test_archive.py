"""Deployment package validation: every way a zip can be hostile is refused, and a
refused package leaves nothing behind."""

from __future__ import annotations

import io
import json
import os
import stat
import struct
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import pytest

from nimbus.errors import InvalidParameterValue
from nimbus.store import unpack
from nimbus.store.archive import PackageLimits
from nimbus.store.code import CodeStore
from tests.conftest import escape_chain, make_zip, zip_of
from tests.store.unchecked import naive_inspect

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


# -- [S zip escape]: the package's own symlinks never carry a write out of it ----------


def victim_path(tmp_path: Path) -> Path:
    return tmp_path / "outside" / f"victim-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("order", [[0, 1, 2, 3], [2, 0, 1, 3]], ids=["as found", "file first"])
def test_the_symlink_chain_cannot_write_outside(
    code: CodeStore, tmp_path: Path, order: list[int]
) -> None:
    victim = victim_path(tmp_path)
    victim.parent.mkdir()
    chain = escape_chain(str(victim))
    refuse(code, zip_of([chain[i] for i in order]), "inside 's', which the package makes a symlink")
    assert not victim.exists()


def test_an_existing_file_is_not_overwritten_through_links(
    code: CodeStore, tmp_path: Path
) -> None:
    victim = victim_path(tmp_path)
    victim.parent.mkdir()
    victim.write_text("original")
    refuse(code, zip_of(escape_chain(str(victim))), "symlink")
    assert victim.read_text() == "original"


@pytest.mark.parametrize(
    ("entries", "match"),
    [
        # Harmless as text (normpath says "."), outside when the kernel follows "a".
        ([("link", "a", "."), ("link", "b", "a/a/a/../../..")], "resolves outside"),
        ([("link", "d/up", "../x"), ("link", "x", "..")], "resolves outside"),
        ([("link", "a", "b"), ("link", "b", "a")], "loop of symlinks"),
        ([("link", "l", "app.py"), ("file", "l/x.py", "")], "inside 'l'"),
        ([("link", "l", "app.py"), ("dir", "l", "")], "directory, but .* symlink"),
        ([("file", "d", ""), ("file", "d/x.py", "")], "also has a file by that name"),
        ([("file", "d/x.py", ""), ("file", "d", "")], "also has a directory"),
        ([("file", "a.py", "1"), ("file", "a.py", "2")], "more than once"),
        ([("file", "a.py", "1"), ("file", "./a.py", "2")], "more than once"),
        ([("link", "l", b"\xff\xfe")], "not valid UTF-8"),
        ([("link", "l", "/etc/passwd")], "outside the package"),
        ([("file", "x" * 256, "")], "longer than 255 bytes"),
    ],
    ids=[
        "chain through a link", "link to a link upwards", "loop", "file through a link",
        "link and directory", "file then directory", "directory then file", "duplicate",
        "duplicate after normalising", "non-utf8 target", "absolute target", "long name",
    ],
)
def test_trees_the_kernel_would_not_keep_inside(
    code: CodeStore, entries: list[tuple[str, str, str | bytes]], match: str
) -> None:
    refuse(code, zip_of([("file", "app.py", ""), *entries]), match)


def test_case_variants_and_inside_chains_are_kept(code: CodeStore) -> None:
    stored = code.put(zip_of([
        ("file", "App.py", "upper"), ("file", "app.py", "lower"),
        ("file", "lib/real.py", "real"),
        ("link", "lib/alias.py", "real.py"), ("link", "top.py", "lib/alias.py"),
        ("link", "here", "."), ("link", "bin/tool", "../lib/../lib/real.py"),
    ]))
    tree = code.tree_path(stored.sha256_hex)
    assert (tree / "App.py").read_text() == "upper" and (tree / "app.py").read_text() == "lower"
    assert (tree / "top.py").read_text() == "real" and (tree / "bin/tool").read_text() == "real"
    assert os.readlink(tree / "here") == "."


def test_written_tree_is_owned_and_moded_safely(code: CodeStore) -> None:
    info = zipfile.ZipInfo("bin/suid")
    info.external_attr = (0o104777) << 16  # setuid, world-writable
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(info, "#!/bin/sh\n")
        zf.writestr("app.py", "")
    tree = code.tree_path(code.put(buf.getvalue()).sha256_hex)
    assert stat.S_IMODE((tree / "bin/suid").stat().st_mode) == 0o755
    assert stat.S_IMODE((tree / "app.py").stat().st_mode) == 0o644
    assert stat.S_IMODE((tree / "bin").stat().st_mode) == 0o755
    assert stat.S_IMODE(tree.stat().st_mode) == 0o755
    for path in [tree, *tree.rglob("*")]:
        assert path.lstat().st_uid == os.geteuid()


def _corrupt_deflate() -> bytes:
    data = bytearray(make_zip({"app.py": "x = 1\n" * 2000}))
    start = data.find(b"app.py") + len("app.py")  # first member's compressed stream
    data[start : start + 40] = b"\xff" * 40
    return bytes(data)


def _unsupported_method() -> bytes:
    data = bytearray(make_zip({"app.py": "x = 1\n"}))
    struct.pack_into("<H", data, data.find(b"PK\x03\x04") + 8, 99)  # AES (WinZip)
    struct.pack_into("<H", data, data.find(b"PK\x01\x02") + 10, 99)
    return bytes(data)


@pytest.mark.parametrize("data", [_corrupt_deflate(), _unsupported_method()],
                         ids=["corrupt deflate stream", "unsupported compression"])
def test_members_that_do_not_inflate_are_a_400(code: CodeStore, data: bytes) -> None:
    refuse(code, data, "Could not unzip uploaded file")


def test_writing_is_safe_without_validation(
    code: CodeStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By construction, not by checking: with every validation of the tree switched
    off, the unpack child still writes nothing outside the package directory."""
    victim = victim_path(tmp_path)
    victim.parent.mkdir()

    monkeypatch.setattr("nimbus.store.code.inspect", naive_inspect)
    for order in ([0, 1, 2, 3], [2, 0, 1, 3], [0, 2, 1, 3]):
        chain = escape_chain(str(victim))
        with pytest.raises(InvalidParameterValue):
            code.put(zip_of([chain[i] for i in order]))
        assert not victim.exists()
    # Even a ".." the validation would have refused goes nowhere.
    with pytest.raises(InvalidParameterValue, match=r"path component '\.\.'"):
        code.put(zip_of([("file", "../../outside/x", "")]))
    assert not (tmp_path / "outside" / "x").exists()


def test_the_unpack_child_runs_unprivileged(tmp_path: Path) -> None:
    """Given a directory only root may write, the child cannot write into it: it
    dropped root before reading the package."""
    if os.geteuid() != 0:
        pytest.skip("dropping privileges needs root to begin with")
    target = tmp_path / "rootonly"
    target.mkdir(mode=0o755)
    blob = tmp_path / "p.zip"
    blob.write_bytes(make_zip({"app.py": ""}))
    zip_fd, root_fd = os.open(blob, os.O_RDONLY), os.open(target, os.O_RDONLY)
    plan = {"max_unzipped": 1 << 20, "entries": [[0, "file", "app.py", None]]}
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-S", unpack.__file__, str(zip_fd), str(root_fd),
             "65534", "65534"],
            input=json.dumps(plan).encode(), capture_output=True, pass_fds=(zip_fd, root_fd),
            timeout=60, check=True,
        )
    finally:
        os.close(zip_fd)
        os.close(root_fd)
    answer = json.loads(done.stdout)
    assert "Permission denied" in answer["error"]
    assert list(target.iterdir()) == []


@pytest.mark.parametrize("name", ["../../etc/passwd", "AB" * 32, "0" * 63, ""])
def test_only_digests_become_code_paths(code: CodeStore, name: str) -> None:
    with pytest.raises(ValueError, match="not a SHA-256 hex digest"):
        code.read(name)
    with pytest.raises(ValueError, match="not a SHA-256 hex digest"):
        code.tree_path(name)
