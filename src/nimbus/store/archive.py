"""Validation of deployment packages (zip files): what a package may contain.

Everything a hostile or broken zip can do is refused before anything is stored: not a
zip, too many entries, zip bombs (by the sizes the archive declares here, and by the
bytes it really inflates to while ``unpack`` writes it), paths that leave the package
(``..``, absolute, drive letters), names the kernel cannot hold, duplicate entries, a
name that is both a file and a directory, any entry whose path goes through a symlink,
and symlinks that are not valid UTF-8, absolute, or that resolve outside the package —
resolved the way the kernel would, following the package's own symlinks, not by the
target's text.

The result is a ``Package``: the entries to write, in order, each with its kind. Writing
them is ``nimbus.store.unpack``'s job, which is safe by construction on its own; this
module is what makes a bad package a clear 400 (and what DryRun runs).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from typing import BinaryIO, Literal

from nimbus.errors import InvalidParameterValue

# A deflate stream inflates at most ~1032:1; beyond a generous ratio on a large member
# the archive is built to exhaust memory or disk rather than to deploy code.
_MAX_RATIO = 1100
_RATIO_FLOOR = 1 << 20  # small members may compress absurdly well (e.g. zero files)
_NAME_MAX = 255  # bytes in one path component (Linux)
_LINK_MAX = 4095  # bytes in a symlink's target (PATH_MAX less the NUL)
_MAX_HOPS = 40  # symlinks followed while resolving one path (the kernel's MAXSYMLINKS)
_RESOLVE_BUDGET = 1_000_000  # path components walked resolving all of a package's links

Kind = Literal["dir", "file", "link"]


@dataclass(frozen=True)
class PackageLimits:
    max_unzipped: int
    max_entries: int


@dataclass(frozen=True)
class Entry:
    index: int  # position in the zip's central directory
    kind: Kind
    name: str  # normalised relative path, components joined by "/"
    declared_size: int
    target: str | None = None  # a symlink's target


@dataclass
class Package:
    """A validated package: its entries in zip order and what they declare to inflate to."""

    entries: list[Entry] = field(default_factory=list)

    @property
    def declared_size(self) -> int:
        return sum(e.declared_size for e in self.entries)

    def plan(self, limits: PackageLimits) -> dict[str, object]:
        """What ``unpack`` reads on stdin."""
        return {
            "max_unzipped": limits.max_unzipped,
            "entries": [[e.index, e.kind, e.name, e.target] for e in self.entries],
        }


def _bad(message: str) -> InvalidParameterValue:
    return InvalidParameterValue(message)


def open_package(data: bytes | BinaryIO) -> zipfile.ZipFile:
    """The zip in ``data`` (its bytes, or a seekable file), or Lambda's unzip error."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data)
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
    for part in parts:
        if len(part.encode("utf-8", "surrogateescape")) > _NAME_MAX:
            raise _bad(
                f"The zip entry '{raw}' has a path component longer than {_NAME_MAX} bytes, "
                "which no Linux file system can hold. Shorten the name."
            )
    return "/".join(parts)


def _kind(info: zipfile.ZipInfo) -> Kind:
    if info.is_dir():
        return "dir"
    if info.create_system == 3 and (info.external_attr >> 16) & 0o170000 == 0o120000:
        return "link"
    return "file"


def _check_sizes(info: zipfile.ZipInfo, declared: int, limits: PackageLimits) -> None:
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


def _link_target(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> str:
    if info.file_size > _LINK_MAX:
        raise _bad(
            f"The zip entry '{name}' is a symlink whose target is {info.file_size} bytes "
            f"long; at most {_LINK_MAX} are allowed."
        )
    try:
        raw = zf.read(info)
    except Exception as exc:  # any way a hostile member fails to inflate
        raise _bad(
            f"Could not unzip uploaded file: {exc}. Please check your file, then try to "
            "upload again."
        ) from exc
    try:
        target = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad(
            f"The zip entry '{name}' is a symlink whose target is not valid UTF-8 "
            f"({raw[:64]!r}). Symlink targets must be UTF-8 paths inside the package."
        ) from exc
    if not target or "\x00" in target:
        raise _bad(f"The zip entry '{name}' is a symlink with an empty or invalid target.")
    if target.startswith("/"):
        raise _bad(
            f"The zip entry '{name}' is a symlink to '{target}', outside the package. "
            "Symlinks may only point at files inside the package, by a relative path."
        )
    return target


class _Tree:
    """The package as the kernel will see it: every path and what it is."""

    def __init__(self) -> None:
        self.kinds: dict[str, Kind] = {}
        self.explicit: set[str] = set()
        self.links: dict[str, str] = {}
        # Path components ``resolve`` may still walk, over all links: a package of
        # thousands of long, chained links cannot make validation itself the attack.
        self.budget = _RESOLVE_BUDGET

    def add(self, raw: str, name: str, kind: Kind) -> None:
        parts = name.split("/")
        for depth in range(1, len(parts)):
            prefix = "/".join(parts[:depth])
            seen = self.kinds.setdefault(prefix, "dir")
            if seen == "link":
                raise _bad(
                    f"The zip entry '{raw}' lies inside '{prefix}', which the package makes "
                    "a symlink. Entries may not be written through symlinks; put the files "
                    "at their real path."
                )
            if seen == "file":
                raise _bad(
                    f"The zip entry '{raw}' needs '{prefix}' as a directory, but the package "
                    "also has a file by that name. Rename one of them."
                )
        seen_kind = self.kinds.get(name)
        if seen_kind is not None and seen_kind != kind:
            raise _bad(
                f"The zip entry '{raw}' is a {_NOUN[kind]}, but the package also has a "
                f"{_NOUN[seen_kind]} by that name. Rename one of them."
            )
        if name in self.explicit:
            raise _bad(
                f"The zip entry '{raw}' appears more than once in the package. Rebuild the "
                "zip so each path is in it once."
            )
        self.kinds[name] = kind
        self.explicit.add(name)

    def resolve(self, link: str) -> None:
        """Follow ``link`` as the kernel would; refuse it if it ends outside the package."""
        path = link.split("/")[:-1]  # the link's directory: real, never through a link
        todo = self.links[link].split("/")
        todo.reverse()  # a stack: the next component last
        hops = 0
        while todo:
            self.budget -= 1
            if self.budget < 0:
                raise _bad(
                    "The package's symlinks take too long to resolve (too many, or chained "
                    "too deep). Replace symlinks with the files they point at."
                )
            part = todo.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if not path:
                    raise _bad(
                        f"The zip entry '{link}' is a symlink to '{self.links[link]}', which "
                        "resolves outside the package. Symlinks may only point at files "
                        "inside the package."
                    )
                path.pop()
                continue
            path.append(part)
            here = "/".join(path)
            if self.kinds.get(here) == "link":
                hops += 1
                if hops > _MAX_HOPS:
                    raise _bad(
                        f"The zip entry '{link}' is a symlink that never resolves (a loop "
                        "of symlinks). Symlinks may only point at files inside the package."
                    )
                path.pop()  # the link's own target is relative to its directory
                todo.extend(reversed(self.links[here].split("/")))


_NOUN: dict[Kind, str] = {"dir": "directory", "file": "file", "link": "symlink"}


def inspect(zf: zipfile.ZipFile, limits: PackageLimits) -> Package:
    """Check every entry and the tree they make together; return what to write."""
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise _bad(
            f"The deployment package has {len(infos)} entries; at most "
            f"{limits.max_entries} are allowed. Move dependencies into a layer or "
            "remove files you do not need."
        )
    package = Package()
    tree = _Tree()
    declared = 0
    for index, info in enumerate(infos):
        name = _normalise(info.filename)
        declared += info.file_size
        _check_sizes(info, declared, limits)
        if not name:
            continue  # the package root itself ("./")
        kind = _kind(info)
        tree.add(info.filename, name, kind)
        target = _link_target(zf, info, info.filename) if kind == "link" else None
        if target is not None:
            tree.links[name] = target
        size = info.file_size if kind == "file" else 0
        package.entries.append(Entry(index, kind, name, size, target))
    for link in tree.links:
        tree.resolve(link)
    return package
