"""The child process that writes a deployment package's files (stdlib only).

``CodeStore.put`` runs this file with ``python -I -S`` for every package it stores. The
zip arrives as an inherited descriptor and the directory to fill as another; the plan
(which entries to write, of what kind, under which names) comes on stdin from
``nimbus.store.archive.inspect``, which has already refused anything a package may not
contain. This process does not rely on that: the host cannot be written outside the
directory *by construction*:

- it drops to an unprivileged uid and gid (with no supplementary groups) before it
  reads any input, so the kernel refuses what the directory's descriptor does not grant;
- every path is walked one component at a time from the directory's descriptor with
  ``O_DIRECTORY | O_NOFOLLOW`` (``..``, ``.``, empty and slash-bearing components are
  refused), so no symlink, wherever it came from, is ever followed;
- files are created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` and moded through their own
  descriptor (``fchmod``), never by path;
- symlinks are created after every directory and file, so none can stand in a path
  that is written through.

It answers one JSON line on stdout: ``{"unzipped": N}`` or ``{"error": "...",
"user": true|false}`` (``user`` says whether the package is at fault).
"""

from __future__ import annotations

# Everything this process imports, it imports before it drops privileges: the stdlib may
# be unreadable to the unprivileged user it becomes (e.g. a Python under /root).
import contextlib
import encodings.cp437  # noqa: F401  zip member names
import json
import os
import resource
import signal
import sys
import zipfile
import zlib

try:  # the other compression methods zipfile may reach for
    import bz2  # noqa: F401
    import lzma  # noqa: F401
except ImportError:
    pass

CHUNK = 1 << 16
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# Reading a member of a hostile zip can fail in any of these ways; each is the
# package's fault, not ours.
UNZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError,
                ValueError, OverflowError)


class PackageError(Exception):
    """The package cannot be written as it is; the message says why."""


def drop_privileges(uid: int, gid: int) -> None:
    """Become ``uid``/``gid`` for good (no-op when already unprivileged)."""
    if os.geteuid() == 0:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        if os.geteuid() == 0 or os.getegid() == 0 or 0 in os.getgroups():
            raise SystemExit("unpack: could not drop root privileges")


def components(name: str) -> list[str]:
    parts = name.split("/")
    for part in parts:
        if part in ("", ".", "..") or "\x00" in part:
            raise PackageError(f"The zip entry '{name}' has a path component {part!r}.")
    return parts


class Tree:
    """Directories below one root descriptor, each opened without following links."""

    def __init__(self, root_fd: int) -> None:
        self.root_fd = root_fd
        self._open: dict[tuple[str, ...], int] = {(): root_fd}

    def directory(self, parts: list[str], create: bool) -> int:
        """A descriptor of the directory at ``parts``, made if missing and ``create``."""
        key = tuple(parts)
        fd = self._open.get(key)
        if fd is not None:
            return fd
        parent = self.directory(parts[:-1], create)
        if create:
            # Exists already: an implicit parent made earlier, or not a directory (the
            # open below says which).
            with contextlib.suppress(FileExistsError):
                os.mkdir(parts[-1], 0o755, dir_fd=parent)
        try:
            fd = os.open(parts[-1], DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            raise PackageError(
                f"'{'/'.join(parts)}' is needed as a directory but the package makes it "
                f"something else ({exc.strerror})."
            ) from exc
        os.fchmod(fd, 0o755)
        if len(self._open) > 256:  # deep or wide trees: keep descriptors bounded
            self.close()
        self._open[key] = fd
        return fd

    def close(self) -> None:
        for key, fd in list(self._open.items()):
            if key:
                os.close(fd)
                del self._open[key]


def write_file(tree: Tree, zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str,
               room: int, limit: int) -> int:
    """Write one file of at most ``room`` bytes (what the package's ``limit`` leaves);
    returns the bytes it inflated to."""
    parts = components(name)
    parent = tree.directory(parts[:-1], create=True)
    try:
        fd = os.open(parts[-1], FILE_FLAGS, 0o600, dir_fd=parent)
    except OSError as exc:
        raise PackageError(
            f"The zip entry '{name}' cannot be written: a path by that name already exists "
            f"in the package ({exc.strerror})."
        ) from exc
    try:
        written = 0
        with zf.open(info) as src:
            while chunk := src.read(CHUNK):
                written += len(chunk)
                if written > info.file_size or written > room:
                    raise PackageError(
                        f"The zip entry '{info.filename}' inflates past its declared size or "
                        f"past the unzipped limit of {limit} bytes (a zip bomb). Upload the "
                        "real files."
                    )
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
        mode = (info.external_attr >> 16) & 0o777
        # Keep execute bits (bootstrap binaries) but never setuid, setgid or world-write.
        os.fchmod(fd, 0o755 if mode & 0o111 else 0o644)
    finally:
        os.close(fd)
    return written


def write_link(tree: Tree, name: str, target: str) -> None:
    parts = components(name)
    parent = tree.directory(parts[:-1], create=True)
    try:
        os.symlink(target, parts[-1], dir_fd=parent)
    except OSError as exc:
        raise PackageError(
            f"The zip entry '{name}' (a symlink) cannot be written: {exc.strerror}."
        ) from exc


def unpack(zip_fd: int, root_fd: int, plan: dict) -> int:
    """Write the plan's entries below ``root_fd``; returns the bytes inflated."""
    max_unzipped = int(plan["max_unzipped"])
    total = 0
    tree = Tree(root_fd)
    with os.fdopen(zip_fd, "rb") as raw, zipfile.ZipFile(raw) as zf:
        infos = zf.infolist()
        links = []
        for index, kind, name, target in plan["entries"]:
            if kind == "dir":
                tree.directory(components(name), create=True)
            elif kind == "file":
                try:
                    room = max_unzipped - total
                    total += write_file(tree, zf, infos[index], name, room, max_unzipped)
                except UNZIP_ERRORS as exc:
                    raise PackageError(
                        f"Could not unzip uploaded file: {exc}. Please check your file, then "
                        "try to upload again."
                    ) from exc
            elif kind == "link":
                links.append((name, target))
            else:
                raise SystemExit(f"unpack: unknown entry kind {kind!r}")
        for name, target in links:  # last: no link ever stands in a path written through
            write_link(tree, name, target)
    tree.close()
    return total


def main() -> None:
    zip_fd, root_fd, uid, gid = (int(arg) for arg in sys.argv[1:5])
    drop_privileges(uid, gid)
    os.umask(0o022)
    plan = json.load(sys.stdin)
    # Belt and braces beside the byte counting: no single file past the whole limit.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    limit = int(plan["max_unzipped"]) + 1
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        answer: dict = {"unzipped": unpack(zip_fd, root_fd, plan)}
    except PackageError as exc:
        answer = {"error": str(exc), "user": True}
    except OSError as exc:  # disk full, quota: ours, not the package's
        answer = {"error": f"writing the package failed: {exc}", "user": False}
    sys.stdout.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
