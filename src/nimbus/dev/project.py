"""What ``nimbus dev`` serves from a folder: its functions and their packages.

For now a folder is one function named after it, handler ``app.handler`` (or the one
``HANDLER`` names), on the host's newest python3 runtime. Packages are zipped from the
folder as it is on disk, leaving out hidden entries and bytecode caches."""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

_NOT_NAME = re.compile(r"[^a-zA-Z0-9_-]+")
# Never packaged nor watched: caches, virtualenvs, VCS and tool folders.
SKIPPED_DIRS = frozenset({"__pycache__", "node_modules", ".venv", "venv", ".git"})


class ProjectError(Exception):
    """The folder cannot be served as it is; the message says what to change."""


@dataclass(frozen=True)
class DevFunction:
    """One function of the project: where its code is and how it runs."""

    name: str
    folder: Path
    handler: str
    runtime: str

    def owns(self, path: Path) -> bool:
        return path == self.folder or self.folder in path.parents


def function_name(folder: Path) -> str:
    """The folder's name as a Lambda function name (letters, digits, - and _; 64 at most)."""
    name = _NOT_NAME.sub("-", folder.resolve().name).strip("-")[:64]
    if not name:
        raise ProjectError(f"cannot name a function after {folder}: rename the folder")
    return name


def default_handler(folder: Path) -> str:
    """``app.handler``, or ``app.lambda_handler`` when app.py defines only that (SAM's
    hello world), as ``nimbus deploy`` decides for a plain folder."""
    try:
        source = (folder / "app.py").read_text(errors="replace")
    except OSError:
        return "app.handler"
    if not re.search(r"^def handler\(", source, re.M) and re.search(
        r"^def lambda_handler\(", source, re.M
    ):
        return "app.lambda_handler"
    return "app.handler"


def discover(folder: Path, runtime: str, handler: str = "app.handler") -> list[DevFunction]:
    """The functions in ``folder`` (for now: the folder itself, one function)."""
    if not folder.is_dir():
        raise ProjectError(f"{folder} is not a folder: give the folder of your function")
    module = handler.rpartition(".")[0].replace(".", "/")
    if not module or not ((folder / f"{module}.py").is_file() or (folder / module).is_dir()):
        raise ProjectError(
            f"{folder} has no {module or handler}.py for handler {handler!r}: put the "
            "function there (`nimbus init hello-http DIR` makes one), or pass --handler"
        )
    return [DevFunction(function_name(folder), folder.resolve(), handler, runtime)]


def skipped(path: Path, root: Path) -> bool:
    """Whether a path under ``root`` is left out (hidden, a cache, a virtualenv...)."""
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return True
    return any(p.startswith(".") or p in SKIPPED_DIRS for p in parts) or path.suffix == ".pyc"


def package(folder: Path) -> bytes:
    """The folder's zip, as it is on disk now (files keep their modes)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not skipped(path, folder):
                try:
                    zf.write(path, path.relative_to(folder).as_posix())
                except FileNotFoundError:  # an editor's temporary file, gone already
                    continue
    return buf.getvalue()


def debugpy_layer() -> bytes:
    """A layer zip of the debugpy this nimbus runs with, under ``python/`` (so a function
    imports it from /opt/python, as from any Python layer)."""
    try:
        import debugpy
    except ImportError as exc:
        raise ProjectError("--debug needs debugpy: pip install 'debugpy>=1.8'") from exc
    root = Path(debugpy.__file__).parent
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                zf.write(path, f"python/debugpy/{path.relative_to(root).as_posix()}")
    return buf.getvalue()
