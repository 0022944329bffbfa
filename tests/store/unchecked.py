"""A package "validation" that checks nothing, to show that writing alone keeps a
package inside its directory: tests put it in place of ``nimbus.store.archive.inspect``."""

from __future__ import annotations

import zipfile

from nimbus.store.archive import Entry, Package, PackageLimits, _kind


def naive_inspect(zf: zipfile.ZipFile, limits: PackageLimits) -> Package:
    """Every entry as the zip names it, symlink targets as they are."""
    package = Package()
    for index, info in enumerate(zf.infolist()):
        kind = _kind(info) if info.filename else "file"  # zipfile's is_dir fails on ""
        target = zf.read(info).decode(errors="replace") if kind == "link" else None
        package.entries.append(Entry(index, kind, info.filename.rstrip("/"), 0, target))
    return package
