"""Content-addressed storage of deployment packages on local disk.

A package is kept twice under ``<data_dir>/code``: the zip as uploaded
(``blobs/ab/<sha256>.zip``, served by GetFunction's Code.Location) and its validated,
extracted tree (``trees/<sha256>/``, bind-mounted read-only at ``/var/task``). Both are
written into ``tmp/`` first and renamed into place, so a reader never sees half a
package and a crash leaves only ``tmp/`` litter, which start-up removes.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from nimbus.store.archive import PackageLimits, extract, inspect, open_package


@dataclass(frozen=True)
class StoredCode:
    sha256_hex: str
    size: int
    unzipped_size: int

    @property
    def sha256_b64(self) -> str:
        return base64.b64encode(bytes.fromhex(self.sha256_hex)).decode()


class CodeStore:
    """Validated, content-addressed zips and their extracted trees."""

    def __init__(self, root: Path, limits: PackageLimits) -> None:
        self.root = root
        self.limits = limits
        self.tmp = root / "tmp"
        for sub in ("blobs", "trees", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(root / "trees", 0o755)  # sandboxed users read code through bind mounts

    def blob_path(self, sha_hex: str) -> Path:
        return self.root / "blobs" / sha_hex[:2] / f"{sha_hex}.zip"

    def tree_path(self, sha_hex: str) -> Path:
        return self.root / "trees" / sha_hex

    def has(self, sha_hex: str) -> bool:
        return self.blob_path(sha_hex).exists() and self.tree_path(sha_hex).is_dir()

    def validate(self, data: bytes) -> StoredCode:
        """Check a zip by what it declares, without storing it (DryRun)."""
        entries = inspect(open_package(data), self.limits)
        unzipped = sum(e.info.file_size for e in entries)
        return StoredCode(hashlib.sha256(data).hexdigest(), len(data), unzipped)

    def put(self, data: bytes) -> StoredCode:
        """Validate and store a zip (blocking; run it off the event loop)."""
        sha = hashlib.sha256(data).hexdigest()
        zf = open_package(data)
        entries = inspect(zf, self.limits)
        if self.has(sha):
            os.utime(self.tree_path(sha))  # fresh again: keeps GC's grace period honest
            return StoredCode(sha, len(data), sum(e.info.file_size for e in entries))
        staging = self.tmp / uuid.uuid4().hex
        try:
            unzipped = extract(zf, entries, staging / "tree", self.limits)
            blob_tmp = staging / "blob.zip"
            with open(blob_tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            blob = self.blob_path(sha)
            blob.parent.mkdir(exist_ok=True)
            os.replace(blob_tmp, blob)
            tree = self.tree_path(sha)
            os.chmod(staging / "tree", 0o755)
            try:
                os.rename(staging / "tree", tree)
            except OSError:
                if not tree.is_dir():  # lost a race with an identical upload: fine
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return StoredCode(sha, len(data), unzipped)

    def tree_size(self, sha_hex: str) -> int:
        """The bytes of a stored package's files, as extracted (blocking)."""
        total = 0
        for folder, _dirs, files in os.walk(self.tree_path(sha_hex)):
            for name in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(folder, name)).st_size
        return total

    def read(self, sha_hex: str) -> bytes:
        return self.blob_path(sha_hex).read_bytes()

    def collect_garbage(self, referenced: set[str], grace_seconds: float = 3600) -> int:
        """Remove packages no version references (older than the grace period, so an
        upload whose metadata is still being written is never taken). Returns count."""
        removed = 0
        now = time.time()
        for tree in (self.root / "trees").iterdir():
            sha = tree.name
            if sha in referenced or now - tree.stat().st_mtime < grace_seconds:
                continue
            self.blob_path(sha).unlink(missing_ok=True)
            shutil.rmtree(tree, ignore_errors=True)
            removed += 1
        for leftover in self.tmp.iterdir():
            if now - leftover.stat().st_mtime >= grace_seconds:
                shutil.rmtree(leftover, ignore_errors=True)
        return removed
