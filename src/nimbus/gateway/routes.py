"""HTTP API route keys, and the route table that matches requests against them.

A route key is ``$default`` or ``METHOD /path``: METHOD is one of ``METHODS`` (``ANY``
matches every method), each path segment is a literal, a ``{name}`` variable or, last
only, a greedy ``{name+}`` variable that takes one or more remaining segments.

Matching follows API Gateway's documented order ("Routing API requests" in the HTTP API
developer guide):

1. the stage: a first path segment naming a stage selects it (and is not part of the
   route path); otherwise the ``$default`` stage, if there is one; else no match;
2. the route: a full match of path and method; routes without a greedy variable beat
   greedy ones; comparing segment by segment, a literal beats a variable; with the same
   path, a specific method beats ``ANY``; the ``$default`` route takes what is left.

Like API Gateway, a trailing slash does not change which route matches (``/pets/``
matches ``GET /pets``), and path variables are URL-decoded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from nimbus.errors import BadRequest
from nimbus.models import ApiIntegration, ApiRoute, ApiStage, HttpApi

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


@dataclass(frozen=True)
class RouteMatch:
    """What a request matched: the route, its integration and the stage."""

    route: ApiRoute
    # None when the route has no target: API Gateway answers such requests 404 Not Found.
    integration: ApiIntegration | None
    stage: ApiStage
    path_parameters: dict[str, str] | None  # decoded; None when the route has no variables


@dataclass(frozen=True)
class _Entry:
    key: RouteKey
    route: ApiRoute
    integration: ApiIntegration | None
    rank: tuple[object, ...]


class RouteTable:
    """One HTTP API's routes, integrations and stages, ready to match requests.

    Immutable: build a new one after any change (``HttpApiStore.on_change``).
    """

    def __init__(
        self,
        api: HttpApi,
        routes: list[ApiRoute],
        integrations: list[ApiIntegration],
        stages: list[ApiStage],
    ) -> None:
        self.api = api
        self.stages = {s.stage_name: s for s in stages}
        by_id = {i.integration_id: i for i in integrations}
        self._exact: dict[tuple[str, tuple[str, ...]], _Entry] = {}
        variable: list[_Entry] = []
        self._default: _Entry | None = None
        for route in routes:
            key = parse_route_key(route.route_key)
            integration = by_id.get(route.integration_id) if route.integration_id else None
            kinds = tuple(s.kind for s in key.segments)
            entry = _Entry(key, route, integration, (key.greedy, kinds, key.method == "ANY"))
            if key.is_default:
                self._default = entry
            elif all(k == LITERAL for k in kinds):
                assert key.method is not None
                self._exact[(key.method, tuple(s.text for s in key.segments))] = entry
            else:
                variable.append(entry)
        # Sorted best first, so the first route that matches is the one to take.
        self._variable = sorted(variable, key=lambda e: e.rank)

    def stage_for(self, path_after_api_id: str) -> tuple[ApiStage, str] | None:
        """The stage a request addresses and the path left for route matching."""
        path = path_after_api_id or "/"
        first, _, rest = path[1:].partition("/")
        stage = self.stages.get(first)
        if stage is not None and first != DEFAULT_STAGE:
            return stage, "/" + rest
        default = self.stages.get(DEFAULT_STAGE)
        if default is None:
            return None
        return default, path

    def match(self, method: str, path_after_api_id: str) -> RouteMatch | None:
        """Match a request. ``path_after_api_id`` is the raw (still percent-encoded) path
        after ``/execute-api/{apiId}``, starting with ``/{stage}`` for a named stage.
        None: nothing matches (API Gateway answers 404 Not Found)."""
        found = self.stage_for(path_after_api_id)
        if found is None:
            return None
        stage, path = found
        raw_parts = path[1:].split("/") if path not in ("", "/") else []
        parts = raw_parts[:-1] if raw_parts and raw_parts[-1] == "" else raw_parts
        decoded = tuple(unquote(p) for p in parts)
        for candidate in (method, "ANY"):
            entry = self._exact.get((candidate, decoded))
            if entry is not None:
                return self._result(entry, stage, None)
        for entry in self._variable:
            if entry.key.method not in (method, "ANY"):
                continue
            params = _match_path(entry.key.segments, raw_parts, parts, decoded)
            if params is not None:
                return self._result(entry, stage, params)
        if self._default is not None:
            return self._result(self._default, stage, None)
        return None

    @staticmethod
    def _result(entry: _Entry, stage: ApiStage, params: dict[str, str] | None) -> RouteMatch:
        return RouteMatch(entry.route, entry.integration, stage, params)


def _match_path(
    segments: tuple[Segment, ...],
    raw_parts: list[str],
    parts: list[str],
    decoded: tuple[str, ...],
) -> dict[str, str] | None:
    """Path variables if ``segments`` match the request's path segments, else None.

    ``raw_parts`` keeps a trailing empty segment (a trailing slash), which a greedy
    variable takes as part of its value; ``parts`` drops it.
    """
    params: dict[str, str] = {}
    for index, segment in enumerate(segments):
        if segment.kind == GREEDY:
            rest = "/".join(raw_parts[index:])
            if index >= len(parts) or not rest:
                return None
            params[segment.text] = unquote(rest)
            return params
        if index >= len(parts):
            return None
        if segment.kind == LITERAL:
            if decoded[index] != segment.text:
                return None
        else:
            if not parts[index]:
                return None
            params[segment.text] = decoded[index]
    if len(segments) != len(parts):
        return None
    return params
