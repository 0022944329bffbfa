"""HTTP API route keys: ``$default`` or ``METHOD /path``, parsed and validated.

METHOD is one of ``METHODS`` (``ANY`` matches every method); each path segment is a
literal, a ``{name}`` variable or, last only, a greedy ``{name+}`` variable that takes
one or more remaining segments. The API checks keys with this, the store keeps each
route's shape (two routes of one shape would match the same requests), the gateway's
route table matches requests by it, and the CLI checks a key before creating anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nimbus.errors import BadRequest

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY")
DEFAULT_ROUTE = "$default"
DEFAULT_STAGE = "$default"

LITERAL, VARIABLE, GREEDY = 0, 1, 2
_VARIABLE_NAME = re.compile(r"[A-Za-z0-9._-]+")
# RFC 3986 path characters, without '%' (literals are compared with decoded segments).
_LITERAL = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@-]+")
_EXAMPLE = "e.g. 'GET /pets/{petId}' or 'ANY /files/{proxy+}'"


@dataclass(frozen=True)
class Segment:
    kind: int  # LITERAL, VARIABLE or GREEDY
    text: str  # the literal, or the variable's name


@dataclass(frozen=True)
class RouteKey:
    """A parsed route key; ``method`` is None for ``$default``."""

    method: str | None
    segments: tuple[Segment, ...]

    @property
    def is_default(self) -> bool:
        return self.method is None

    @property
    def greedy(self) -> bool:
        return bool(self.segments) and self.segments[-1].kind == GREEDY

    @property
    def shape(self) -> str:
        """The key without variable names: two routes of one shape match the same
        requests, so an API may hold only one of them."""
        if self.method is None:
            return DEFAULT_ROUTE
        parts = ["{+}" if s.kind == GREEDY else "{}" if s.kind else s.text for s in self.segments]
        return f"{self.method} /" + "/".join(parts)


def _invalid(key: str, problem: str) -> BadRequest:
    return BadRequest(f"Invalid route key '{key}': {problem}")


def parse_route_key(key: str) -> RouteKey:
    """Parse and validate a route key; BadRequest saying what is wrong otherwise."""
    if key == DEFAULT_ROUTE:
        return RouteKey(None, ())
    method, sep, path = key.partition(" ")
    if not sep or not method:
        raise _invalid(
            key,
            f"a route key is '$default' or an HTTP method and a path separated by one "
            f"space, {_EXAMPLE}.",
        )
    if method not in METHODS:
        raise _invalid(key, f"the method must be one of {', '.join(METHODS)} (upper case).")
    if not path.startswith("/"):
        raise _invalid(key, f"the path must start with '/', {_EXAMPLE}.")
    if path == "/":
        return RouteKey(method, ())
    if path.endswith("/"):
        raise _invalid(key, "the path must not end with '/' (a trailing slash matches anyway).")
    segments: list[Segment] = []
    names: set[str] = set()
    parts = path[1:].split("/")
    for index, part in enumerate(parts):
        if not part:
            raise _invalid(key, "the path has an empty segment ('//').")
        if part.startswith("{") and part.endswith("}"):
            name = part[1:-1]
            kind = VARIABLE
            if name.endswith("+"):
                name, kind = name[:-1], GREEDY
                if index != len(parts) - 1:
                    raise _invalid(
                        key, f"the greedy path variable {part} must be the last segment."
                    )
            if not _VARIABLE_NAME.fullmatch(name):
                raise _invalid(
                    key, f"path variable {part} needs a name of letters, digits, '.', '_' or '-'."
                )
            if name in names:
                raise _invalid(key, f"path variable {{{name}}} appears twice.")
            names.add(name)
            segments.append(Segment(kind, name))
        elif "{" in part or "}" in part:
            raise _invalid(
                key, f"segment '{part}': a path variable must be a whole segment, like {{name}}."
            )
        elif not _LITERAL.fullmatch(part):
            raise _invalid(
                key,
                f"segment '{part}' has a character not allowed in a path (spaces, '%', "
                "'?', '#' and the like).",
            )
        else:
            segments.append(Segment(LITERAL, part))
    return RouteKey(method, tuple(segments))
