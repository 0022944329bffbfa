"""A stack's deploy state, kept on the client in ``.nimbus/stacks/<stack>.json`` next to the
template (or in the deployed folder): for each logical id, its type, physical id,
attributes, the properties last applied and what it depends on. A redeploy compares
against it to change only what changed; ``nimbus rm --stack`` deletes exactly what it
lists. It is written after every resource, so a deploy that fails half-way still knows
what it made."""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nimbus.deploy.problems import DeployError

STACK_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,127}")


@dataclass
class Entry:
    """One deployed resource."""

    type: str
    physical_id: str
    attributes: dict[str, Any] = field(default_factory=dict)
    urls: list[str] = field(default_factory=list)
    applied: dict[str, Any] = field(default_factory=dict)  # the identity last applied
    digest: str = ""
    depends_on: list[str] = field(default_factory=list)
    retain: bool = False


@dataclass
class StackState:
    """Everything a stack made, and where it was deployed to."""

    stack: str
    endpoint: str
    resources: dict[str, Entry] = field(default_factory=dict)
    # Replaced resources kept because of DeletionPolicy: Retain; deleted by `nimbus rm`.
    retained: list[Entry] = field(default_factory=list)


def check_stack_name(name: str) -> str:
    if not STACK_NAME.fullmatch(name):
        raise DeployError(
            f"stack name {name!r} is invalid: start with a letter, then letters, digits or "
            "hyphens (at most 128), as CloudFormation requires"
        )
    return name


def path_for(folder: Path, stack: str) -> Path:
    return folder / ".nimbus" / "stacks" / f"{stack}.json"


def load(path: Path, stack: str, endpoint: str) -> StackState:
    """The stack's state (empty for a new stack)."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return StackState(stack, endpoint)
    except (OSError, ValueError) as exc:
        raise DeployError(f"cannot read the stack state {path}: {exc}") from exc
    return StackState(
        raw["stack"], raw["endpoint"],
        {lid: Entry(**e) for lid, e in raw.get("resources", {}).items()},
        [Entry(**e) for e in raw.get("retained", [])],
    )  # fmt: skip


def save(path: Path, state: StackState) -> None:
    """Write atomically: a crash never leaves half a state file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=1, sort_keys=True, default=str))
    os.replace(tmp, path)
