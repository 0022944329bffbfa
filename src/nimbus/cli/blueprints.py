"""``nimbus init``: start a project from a blueprint, a starter app in ``blueprints/``.

Each blueprint is a folder with a README (its first heading names it, the paragraph
after says what it does), a SAM ``template.yaml``, the function's code and its tests.
``nimbus init NAME DIR`` copies one into a new or empty folder; ``nimbus init`` lists
them. The blueprints are found in ``NIMBUS_BLUEPRINTS`` (a folder), else in the
``blueprints/`` folder of the nimbus checkout this package runs from."""

from __future__ import annotations

import os
import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from nimbus.cli.client import MEANINGFUL, fail, say

USAGE = MEANINGFUL.refused
# Never copied: what running a blueprint's tests or a deploy leaves behind.
_LEFTOVERS = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".aws-sam",
                                    ".nimbus", ".nimbus-*")


@dataclass(frozen=True)
class Blueprint:
    """One starter app: its folder and what its README says it is."""

    name: str
    path: Path
    summary: str


def blueprints_home() -> Path | None:
    """Where the blueprints are: NIMBUS_BLUEPRINTS, else the checkout's ``blueprints/``."""
    configured = os.environ.get("NIMBUS_BLUEPRINTS")
    if configured:
        return Path(configured)
    checkout = Path(__file__).resolve().parents[3] / "blueprints"  # src/nimbus/cli/ -> root
    return checkout if checkout.is_dir() else None


def available(home: Path) -> list[Blueprint]:
    """The blueprints in ``home``: folders with a README.md, by name."""
    found = []
    for folder in sorted(home.iterdir()) if home.is_dir() else []:
        readme = folder / "README.md"
        if folder.is_dir() and readme.is_file():
            found.append(Blueprint(folder.name, folder, _summary(readme.read_text())))
    return found


def _summary(readme: str) -> str:
    """The README's first paragraph after its title, on one line."""
    paragraph: list[str] = []
    for line in readme.splitlines():
        if line.startswith("#"):
            if paragraph:
                break
            continue
        if not line.strip():
            if paragraph:
                break
            continue
        paragraph.append(line.strip())
    return " ".join(paragraph)


def init(
    blueprint: Annotated[
        str | None, typer.Argument(help="The blueprint (none: list them)")
    ] = None,
    directory: Annotated[
        Path | None, typer.Argument(help="New or empty folder [./BLUEPRINT]")
    ] = None,
) -> None:
    """Start a project from a blueprint: copy it into DIRECTORY (new or empty). Without a
    blueprint, list them."""
    home = blueprints_home()
    if home is None:
        fail("no blueprints found: set NIMBUS_BLUEPRINTS to a folder of blueprints (the "
             "nimbus repository's blueprints/)", USAGE)
    found = {b.name: b for b in available(home)}
    if blueprint is None:
        for b in found.values():  # wrapped to 80 columns, the name alone on its left
            typer.echo(textwrap.fill(b.summary, 80, initial_indent=f"{b.name:<16} ",
                                     subsequent_indent=" " * 17))
        say("`nimbus init BLUEPRINT [DIR]` starts a project from one")
        return
    if blueprint not in found:
        fail(f"no blueprint {blueprint!r}: choose one of {', '.join(found) or '(none)'} "
             "(`nimbus init` lists them with what they do)", USAGE)
    target = directory or Path(blueprint)
    if target.exists() and not target.is_dir():
        fail(f"{target} is a file: give a new or empty folder", USAGE)
    if target.is_dir() and any(target.iterdir()):
        fail(f"{target} is not empty: give a new or empty folder (nothing was copied)", USAGE)
    target.mkdir(parents=True, exist_ok=True)
    shutil.copytree(found[blueprint].path, target, ignore=_LEFTOVERS, dirs_exist_ok=True)
    say(f"created {target} from blueprint {blueprint}: {found[blueprint].summary}")
    say(f"next: `nimbus dev {target}` (hot reload), or `nimbus deploy {target}`; "
        f"see {target / 'README.md'}")
    typer.echo(str(target))
