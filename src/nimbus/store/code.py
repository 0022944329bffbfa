"""Content-addressed storage of deployment packages on local disk.

A package is kept twice under ``<data_dir>/code``: the zip as uploaded
(``blobs/ab/<sha256>.zip``, served by GetFunction's Code.Location) and its validated,
extracted tree (``trees/<sha256>/``, bind-mounted read-only at ``/var/task``). Both are
written into ``tmp/`` first and renamed into place, so a reader never sees half a
package and a crash leaves only ``tmp/`` litter, which start-up removes.

The tree is written by a child process (``nimbus.store.unpack``) that runs as an
unprivileged user, holds only descriptors of the zip and of a fresh, empty directory,
and never follows a symlink; once it has exited, the tree is handed back to this
process's user through descriptors (``fwalk``/``lchown``), again without following links.
Paths here are built only from SHA-256 digests this module computed.

In a cluster (a shared PostgreSQL) each stored zip is also copied into the database
(``code_share.py``), and ``ensure`` brings a package another node received onto this
node's disk, through the same checks and the same unpacking as an upload.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from nimbus.errors import InvalidParameterValue, ServiceError
from nimbus.private_files import private_dir, private_file
from nimbus.store import unpack
from nimbus.store.archive import Package, PackageLimits, inspect, open_package
from nimbus.store.code_share import CodeShare

T = TypeVar("T")

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20  # bytes copied at a time by put_file
UNPACK_TIMEOUT = 600  # seconds; a 250 MB package takes a few on this kind of machine


@dataclass(frozen=True)
class StoredCode:
    sha256_hex: str
    size: int
    unzipped_size: int


class CodeStore:
    """Validated, content-addressed zips and their extracted trees."""

    def __init__(self, root: Path, limits: PackageLimits, share: CodeShare | None = None) -> None:
        self.root = root
        self.limits = limits
        self.share = share  # the cluster's copy of every zip; None: this node has them all
        self.tmp = root / "tmp"
        # Only nimbus's user enters the store: the zips 0600 in 0700 directories. The
        # trees stay readable (0755) for the sandboxed users, who reach them only through
        # bind mounts made as root, never along this path.
        private_dir(root)
        for sub in ("blobs", "trees", "tmp"):
            private_dir(root / sub)
        os.chmod(root / "trees", 0o755)  # sandboxed users read code through bind mounts
        self._narrow_blobs()

    def _narrow_blobs(self) -> None:
        """Zips an older nimbus stored readable by everyone: 0600 now (0700 folders)."""
        with os.scandir(self.root / "blobs") as folders:
            for folder in folders:
                if not folder.is_dir(follow_symlinks=False):
                    continue
                private_dir(Path(folder.path))
                with os.scandir(folder.path) as blobs:
                    for blob in blobs:
                        if blob.is_file(follow_symlinks=False):
                            private_file(Path(blob.path), create=False)

    def blob_path(self, sha_hex: str) -> Path:
        return self.root / "blobs" / _digest(sha_hex)[:2] / f"{sha_hex}.zip"

    def tree_path(self, sha_hex: str) -> Path:
        return self.root / "trees" / _digest(sha_hex)

    def has(self, sha_hex: str) -> bool:
        return self.blob_path(sha_hex).exists() and self.tree_path(sha_hex).is_dir()

    def validate(self, data: bytes) -> StoredCode:
        """Check a zip by what it declares, without storing it (DryRun)."""
        package = inspect(open_package(data), self.limits)
        return StoredCode(hashlib.sha256(data).hexdigest(), len(data), package.declared_size)

    def put(self, data: bytes) -> StoredCode:
        """Validate and store a zip (blocking; run it off the event loop)."""
        sha = hashlib.sha256(data).hexdigest()
        package = inspect(open_package(data), self.limits)
        if self.has(sha):
            os.utime(self.tree_path(sha))  # fresh again: keeps GC's grace period honest
            self._share(sha)
            return StoredCode(sha, len(data), package.declared_size)
        with self._staged(lambda fh: fh.write(data)) as (staging, blob_tmp, _):
            unzipped = self._commit(package, sha, staging, blob_tmp)
        return StoredCode(sha, len(data), unzipped)

    def put_file(self, source: BinaryIO) -> StoredCode:
        """Validate and store a zip read from ``source`` in chunks (an S3 object): the
        package is never held in memory whole (blocking; run it off the event loop)."""
        def copy(fh: BinaryIO) -> str:
            digest = hashlib.sha256()
            while chunk := source.read(_CHUNK):
                digest.update(chunk)
                fh.write(chunk)
            return digest.hexdigest()

        with self._staged(copy) as (staging, blob_tmp, sha):
            size = blob_tmp.stat().st_size
            with open(blob_tmp, "rb") as zipped:
                package = inspect(open_package(zipped), self.limits)
            if self.has(sha):
                os.utime(self.tree_path(sha))  # fresh again: keeps GC's grace period honest
                self._share(sha)
                return StoredCode(sha, size, package.declared_size)
            unzipped = self._commit(package, sha, staging, blob_tmp)
        return StoredCode(sha, size, unzipped)

    @contextlib.contextmanager
    def _staged(self, write: Callable[[BinaryIO], T]) -> Iterator[tuple[Path, Path, T]]:
        """A private staging folder holding ``blob.zip``, written by ``write`` and made
        durable; removed on leaving. Yields the folder, the zip and what ``write``
        returned."""
        staging = self.tmp / uuid.uuid4().hex
        staging.mkdir(mode=0o700)
        try:
            blob_tmp = staging / "blob.zip"
            fd = os.open(blob_tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with open(fd, "wb") as fh:
                result = write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            yield staging, blob_tmp, result
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _commit(self, package: Package, sha: str, staging: Path, blob_tmp: Path) -> int:
        """Unpack the staged zip ``blob_tmp`` and move zip and tree to their places under
        ``sha``; the unzipped size."""
        (staging / "tree").mkdir(mode=0o700)
        unzipped = self._unpack(package, blob_tmp, staging / "tree")
        blob = self.blob_path(sha)
        blob.parent.mkdir(mode=0o700, exist_ok=True)
        os.replace(blob_tmp, blob)
        tree = self.tree_path(sha)
        try:
            os.rename(staging / "tree", tree)
        except OSError:
            if not tree.is_dir():  # lost a race with an identical upload: fine
                raise
        self._share(sha)
        return unzipped

    def _share(self, sha: str) -> None:
        """Copy the stored zip ``sha`` into the cluster's database (once per digest)."""
        if self.share is not None:
            self.share.put(sha, self.blob_path(sha))

    def ensure(self, sha_hex: str) -> None:
        """Have package ``sha_hex`` on this node: fetched from the cluster's database if
        another node received it (blocking; run it off the event loop). A package that
        is nowhere is a ``ServiceError``; one whose bytes do not match, too."""
        if self.has(sha_hex) or self.share is None:
            return
        sha = _digest(sha_hex)
        share = self.share

        def fetch(fh: BinaryIO) -> bool:
            try:
                return share.fetch(sha, fh)
            except ValueError as exc:
                raise ServiceError(str(exc)) from exc

        with self._staged(fetch) as (staging, blob_tmp, found):
            if not found:
                raise ServiceError(
                    f"The deployment package {sha} is on no node of this installation."
                )
            with open(blob_tmp, "rb") as zipped:
                package = inspect(open_package(zipped), self.limits)
            if not self.has(sha):  # another cold start may have fetched it meanwhile
                self._commit(package, sha, staging, blob_tmp)

    def _unpack(self, package: Package, blob: Path, tree: Path) -> int:
        """Write ``package``'s files into the empty ``tree`` through the unpack child."""
        zip_fd = os.open(blob, os.O_RDONLY | os.O_CLOEXEC)
        root_fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            owner = os.geteuid(), os.getegid()
            uid, gid = _unprivileged() if owner[0] == 0 else owner
            os.fchown(root_fd, uid, gid)
            try:
                done = subprocess.run(
                    [sys.executable, "-I", "-S", unpack.__file__,
                     str(zip_fd), str(root_fd), str(uid), str(gid)],
                    input=json.dumps(package.plan(self.limits)).encode(),
                    capture_output=True, pass_fds=(zip_fd, root_fd),
                    timeout=UNPACK_TIMEOUT, start_new_session=True, env={}, cwd="/",
                )
            except subprocess.TimeoutExpired as exc:
                raise ServiceError(
                    f"Writing the package took longer than {UNPACK_TIMEOUT} s; try again."
                ) from exc
            answer = _answer(done)
            if "error" in answer:
                error = InvalidParameterValue if answer.get("user") else ServiceError
                raise error(str(answer["error"]))
            if owner[0] == 0:
                _hand_back(root_fd, *owner)
            os.fchmod(root_fd, 0o755)  # sandboxed users read code through bind mounts
            return int(answer["unzipped"])
        finally:
            os.close(zip_fd)
            os.close(root_fd)

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
            if not _SHA256_HEX.fullmatch(sha):
                continue  # not ours: never touched
            if sha in referenced or now - tree.stat().st_mtime < grace_seconds:
                continue
            self.blob_path(sha).unlink(missing_ok=True)
            shutil.rmtree(tree, ignore_errors=True)
            removed += 1
        for leftover in self.tmp.iterdir():
            if now - leftover.stat().st_mtime >= grace_seconds:
                shutil.rmtree(leftover, ignore_errors=True)
        if self.share is not None:
            self.share.collect_garbage(referenced, grace_seconds)
        return removed


def _digest(value: str) -> str:
    """``value`` if it is a SHA-256 hex digest: the only names this store makes paths of."""
    if not _SHA256_HEX.fullmatch(value):
        raise ValueError(f"not a SHA-256 hex digest: {value!r}")
    return value


def _unprivileged() -> tuple[int, int]:
    """The user the unpack child runs as when nimbus runs as root."""
    try:
        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return 65534, 65534


def _answer(done: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    try:
        answer = json.loads(done.stdout.decode().splitlines()[-1])
        if isinstance(answer, dict) and done.returncode == 0:
            return answer
    except (ValueError, IndexError, UnicodeDecodeError):
        pass
    stderr = done.stderr.decode(errors="replace").strip().splitlines()
    raise ServiceError(
        f"Writing the package failed (unpack exited {done.returncode}: "
        f"{stderr[-1] if stderr else 'no output'})."
    )


def _hand_back(root_fd: int, uid: int, gid: int) -> None:
    """Own every inode of the tree as ``uid``/``gid``, through descriptors only: nothing
    the unpack child left (it has exited) can redirect a change outside the tree."""
    os.fchown(root_fd, uid, gid)
    for _folder, dirs, files, dir_fd in os.fwalk(".", dir_fd=root_fd, follow_symlinks=False):
        for name in dirs + files:
            os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
