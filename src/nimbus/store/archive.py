"""Validation and extraction of deployment packages (zip files).

Everything a hostile or broken zip can do is checked before anything is stored:
not-a-zip, too many entries, paths that escape the package (``..``, absolute, drive
letters), symlinks pointing outside it, and zip bombs — both by the sizes the archive
declares and by the bytes it actually inflates to, which are counted while extracting.
"""

from __future__ import annotations

import io
import os
import posixpath
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

from nimbus.errors import InvalidParameterValue

_CHUNK = 1 << 16
# A deflate stream inflates at most ~1032:1; beyond a generous ratio on a large member
# the archive is built to exhaust memory or disk rather than to deploy code.
_MAX_RATIO = 1100
_RATIO_FLOOR = 1 << 20  # small members may compress absurdly well (e.g. zero files)


@dataclass(frozen=True)
class PackageLimits:
    max_unzipped: int
    max_entries: int


@dataclass(frozen=True)
class Entry:
    info: zipfile.ZipInfo
    name: str  # normalised relative path
    symlink: bool


def _bad(message: str) -> InvalidParameterValue:
    return InvalidParameterValue(message)


def open_package(data: bytes) -> zipfile.ZipFile:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise _bad(
            "Could not unzip uploaded file. Please check your file, then try to upload "
            f"again. ({exc})"
        ) from exc
    return zf


def _normalise(raw: str) -> str:
    name = raw.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise _bad(
            f"The zip entry '{raw}' has an absolute path. Package paths must be relative "
            "to the package root; rebuild the zip from inside the folder."
        )
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _bad(
            f"The zip entry '{raw}' contains '..' and would be written outside the "
            "package. Rebuild the zip without parent-directory references."
        )
    if "\x00" in name:
        raise _bad(f"The zip entry {raw!r} contains a NUL character.")
    return "/".join(parts)


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


def inspect(zf: zipfile.ZipFile, limits: PackageLimits) -> list[Entry]:
    """Check names, counts and declared sizes; return the entries to extract."""
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise _bad(
            f"The deployment package has {len(infos)} entries; at most "
            f"{limits.max_entries} are allowed. Move dependencies into a layer or "
            "remove files you do not need."
        )
    declared = 0
    entries: list[Entry] = []
    for info in infos:
        name = _normalise(info.filename)
        declared += info.file_size
        if declared > limits.max_unzipped:
            raise _bad(
                f"Unzipped size must be smaller than {limits.max_unzipped} bytes; this "
                "package declares more. Remove files or move dependencies into a layer."
            )
        if info.file_size > _RATIO_FLOOR and info.file_size > _MAX_RATIO * max(
            info.compress_size, 1
        ):
            raise _bad(
                f"The zip entry '{info.filename}' declares a compression ratio of "
                f"{info.file_size // max(info.compress_size, 1)}:1, which only a zip bomb "
                "has. Upload the real files."
            )
        if not name:
            continue
        entries.append(Entry(info, name, _is_symlink(info)))
    for entry in entries:
        if entry.symlink:
            target = zf.read(entry.info)[:4096].decode("utf-8", "replace")
            _check_link(entry.name, target)
    return entries


def _check_link(name: str, target: str) -> None:
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
    if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
        raise _bad(
            f"The zip entry '{name}' is a symlink to '{target}', outside the package. "
            "Symlinks may only point at files inside the package."
        )


def extract(zf: zipfile.ZipFile, entries: list[Entry], dest: Path, limits: PackageLimits) -> int:
    """Extract into ``dest`` (which must not exist), counting the real inflated bytes.

    Returns the unzipped size. On any failure nothing is left behind.
    """
    dest.mkdir(parents=True)
    total = 0
    try:
        for entry in entries:
            path = dest / entry.name
            if entry.info.is_dir():
                path.mkdir(parents=True, exist_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if entry.symlink:
                os.symlink(zf.read(entry.info).decode("utf-8"), path)
                continue
            written = 0
            with zf.open(entry.info) as src, open(path, "wb") as out:
                while chunk := src.read(_CHUNK):
                    written += len(chunk)
                    total += len(chunk)
                    if written > entry.info.file_size or total > limits.max_unzipped:
                        raise _bad(
                            f"The zip entry '{entry.info.filename}' inflates past its "
                            "declared size or past the unzipped limit of "
                            f"{limits.max_unzipped} bytes (a zip bomb). Upload the real files."
                        )
                    out.write(chunk)
            mode = (entry.info.external_attr >> 16) & 0o777
            # Keep execute bits (bootstrap binaries) but never setuid or world-write.
            os.chmod(path, 0o755 if mode & 0o111 else 0o644)
    except zipfile.BadZipFile as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise _bad(
            f"Could not unzip uploaded file: {exc}. Please check your file, then try to "
            "upload again."
        ) from exc
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return total
