"""The route table of one HTTP API: which stage and route a request matches.

Matching follows API Gateway's documented order ("Routing API requests" in the HTTP API
developer guide):

1. the stage: a first path segment naming a stage selects it (and is not part of the
   route path); otherwise the ``$default`` stage, if there is one; else no match;
2. the route: a full match of path and method; routes without a greedy variable beat
   greedy ones; comparing segment by segment, a literal beats a variable; with the same
   path, a specific method beats ``ANY``; the ``$default`` route takes what is left.

Like API Gateway, a trailing slash does not change which route matches (``/pets/``
matches ``GET /pets``), and path variables are URL-decoded. Route keys themselves are
``nimbus.route_keys``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from nimbus.models import ApiIntegration, ApiRoute, ApiStage, HttpApiDefinition
from nimbus.route_keys import DEFAULT_STAGE, GREEDY, LITERAL, RouteKey, Segment, parse_route_key


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

    def __init__(self, definition: HttpApiDefinition) -> None:
        self.api = definition.api
        routes = definition.routes
        self.stages = {s.stage_name: s for s in definition.stages}
        by_id = {i.integration_id: i for i in definition.integrations}
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
