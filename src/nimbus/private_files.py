"""Files only nimbus's own user may read: the data dir is 0700 and what holds secrets
or payloads in it (the metadata and queue databases with their WAL and shared-memory
files, deployment packages) is 0600, so no other local user reads environment
variables, queued events or code.

Each file is created with its mode (never created world-readable and narrowed after),
and ``secure_data_dir`` narrows what an older nimbus left readable when a server starts.
SQLite gives a database's ``-wal``, ``-shm`` and ``-journal`` files the database file's
own mode, so a database created here 0600 keeps them 0600 too.

This module sits below every other part of nimbus and imports none of it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600
SQLITE_SIDECARS = ("-wal", "-shm", "-journal")
# What marks a directory as a nimbus data dir: only such a directory (or an empty one)
# is narrowed to 0700 when it already exists, never a directory shared with others.
MARKERS = ("nimbus.db", "queue.db", "concurrency", "credentials.json")


def private_dir(path: Path) -> Path:
    """``path`` as a directory only this user may enter: made 0700 if missing (its
    parents with the usual mode), narrowed to 0700 if it exists and is owned by this
    user."""
    path = Path(path)
    if not path.is_dir():
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    _narrow(path, DIR_MODE)
    return path


def secure_data_dir(data_dir: Path) -> Path:
    """Create the data dir 0700, or narrow an existing nimbus data dir (or an empty
    directory) to 0700 and its databases to 0600; a directory that holds other things
    (data_dir pointed at a shared directory by mistake) keeps its mode, with a warning,
    while nimbus's own files in it are still made 0600."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        data_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    entries = os.listdir(data_dir)
    if not entries or any(name in entries for name in MARKERS):
        _narrow(data_dir, DIR_MODE)
    elif stat.S_IMODE(data_dir.stat().st_mode) & 0o077:
        log.warning(
            "data dir %s holds files that are not nimbus's and is readable by other users; "
            "its mode is left as it is (nimbus's own files in it are 0600). Give nimbus a "
            "directory of its own (--data-dir) so that it can be made 0700.",
            data_dir,
        )
    for name in ("nimbus.db", "queue.db"):
        secure_sqlite(data_dir / name, create=False)
    return data_dir


def private_file(path: Path, *, create: bool = True) -> None:
    """``path`` as a file only this user may read: created empty with mode 0600 if
    missing (and ``create``), else narrowed to 0600."""
    path = Path(path)
    if create:
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
            os.close(fd)
    if path.exists():
        _narrow(path, FILE_MODE)


def secure_sqlite(path: Path, *, create: bool = True) -> None:
    """A SQLite database and its sidecar files 0600; the database created 0600 first
    (``create``) so that SQLite, which copies its mode to the sidecars, never makes a
    readable one."""
    private_file(path, create=create)
    for suffix in SQLITE_SIDECARS:
        private_file(Path(f"{path}{suffix}"), create=False)


def _narrow(path: Path, mode: int) -> None:
    """chmod ``path`` to ``mode`` if it is this user's and not already so (never follows
    a symlink: a link planted in the data dir cannot redirect the chmod)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode) or info.st_uid != os.geteuid():
        return
    if stat.S_IMODE(info.st_mode) != mode:
        os.chmod(path, mode)
