"""Header lists as the gateway keeps them: ``(name, value)`` pairs in order, any case."""

from __future__ import annotations

from collections.abc import Iterable


def first_header(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    """The first value of header ``name`` (matched in any case), or None."""
    wanted = name.lower()
    for key, value in headers:
        if key.lower() == wanted:
            return value
    return None
