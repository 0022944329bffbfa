"""What is wrong with a template: one ``Problem`` per item (resource, property, intrinsic),
naming its logical id and template line, and ``TemplateInvalid`` carrying them all, so a
user sees every problem at once and nothing is deployed."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One unsupported or invalid item of a template."""

    where: str  # the logical id, or a top-level section ("Parameters", "Outputs", ...)
    line: int | None  # 1-based line in the template file, when known
    message: str

    def __str__(self) -> str:
        at = f"line {self.line}: " if self.line is not None else ""
        return f"{at}{self.where}: {self.message}"


class DeployError(Exception):
    """A deploy that cannot go on; its message says what to fix."""


class TemplateInvalid(DeployError):
    """The template has problems; nothing was deployed."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.line or 0, p.where, p.message))
        super().__init__("\n".join(str(p) for p in self.problems))
