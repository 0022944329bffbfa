"""Building a code folder into the zip Lambda takes, as ``sam build`` does.

A folder with a ``requirements.txt`` gets its packages installed next to its code with
``pip install -r requirements.txt -t <build dir>`` (cached by the requirements' hash and the
runtime, so a redeploy does not run pip again). The zip is reproducible (sorted entries,
fixed timestamps), so its SHA-256 changes only when the code does: that is how a redeploy
knows the code is unchanged."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

from nimbus.deploy.problems import DeployError

_SKIP_DIRS = frozenset({"__pycache__", ".git", ".nimbus", ".aws-sam", ".venv", "node_modules"})
_EPOCH = (1980, 1, 1, 0, 0, 0)
# Above this many bytes of input, zipping shows a progress bar on stderr.
PROGRESS_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Package:
    """A built code package."""

    source: Path
    zip_bytes: bytes
    sha256: str  # base64, as Lambda's CodeSha256

    @property
    def size(self) -> int:
        return len(self.zip_bytes)


def _files(folder: Path) -> list[tuple[Path, str]]:
    found: list[tuple[Path, str]] = []
    for current, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in sorted(names):
            path = Path(current, name)
            if path.is_file():
                found.append((path, path.relative_to(folder).as_posix()))
    return found


def _pip(requirements: Path, runtime: str | None, cache: Path) -> Path:
    """The folder pip installed ``requirements`` into (reused while they are unchanged)."""
    key = hashlib.sha256(requirements.read_bytes() + (runtime or "").encode()).hexdigest()[:16]
    target = cache / key
    if (target / ".complete").exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               "-r", str(requirements), "-t", str(target)]  # fmt: skip
    ours = f"python{sys.version_info.major}.{sys.version_info.minor}"
    if runtime and runtime.startswith("python3.") and runtime != ours:
        # Packages for the function's Python, not the CLI's: wheels for that version only.
        command += ["--python-version", runtime.removeprefix("python"), "--only-binary=:all:"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        raise DeployError(
            f"pip install -r {requirements} failed (fix the requirements, or vendor the "
            f"packages into the folder and remove requirements.txt):\n{done.stderr.strip()}"
        )
    (target / ".complete").touch()
    return target


def build(folder: Path, runtime: str | None, cache: Path, console: Console) -> Package:
    """Zip ``folder`` (with its requirements installed) for a function or layer."""
    if not folder.is_dir():
        raise DeployError(f"code folder {folder} does not exist")
    entries = _files(folder)
    requirements = folder / "requirements.txt"
    if requirements.is_file():
        deps = _pip(requirements, runtime, cache)
        ours = {name for _, name in entries}
        entries += [(p, n) for p, n in _files(deps) if n != ".complete" and n not in ours]
    total = sum(p.stat().st_size for p, _ in entries)
    buf = io.BytesIO()
    with (
        zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf,
        Progress(
            TextColumn(f"zipping {folder.name}"), BarColumn(), DownloadColumn(),
            console=console, transient=True, disable=total < PROGRESS_BYTES,
        ) as progress,
    ):  # fmt: skip
        task = progress.add_task("zip", total=total)
        for path, name in entries:
            info = zipfile.ZipInfo(name, _EPOCH)
            info.external_attr = ((path.stat().st_mode & 0o777) | 0o100000) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
            progress.advance(task, path.stat().st_size)
    data = buf.getvalue()
    digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
    return Package(folder, data, digest)


def under(package: Package, prefix: str) -> Package:
    """``package`` with every entry moved under ``prefix`` (``python/``: a layer built as
    SAM's ``BuildMethod: python3.x`` builds it, importable from ``/opt/python``)."""
    buf = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(package.zip_bytes)) as source,
        zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf,
    ):
        for info in source.infolist():
            moved = zipfile.ZipInfo(prefix + info.filename, info.date_time)
            moved.external_attr = info.external_attr
            moved.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(moved, source.read(info))
    data = buf.getvalue()
    digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
    return Package(package.source, data, digest)
