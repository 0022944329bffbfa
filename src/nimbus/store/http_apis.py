"""HTTP APIs (API Gateway v2) in the metadata database: APIs and their integrations,
routes and stages (blocking; call off the loop).

Deleting an API deletes everything under it. Every committed write is announced to the
``on_change`` listeners with the API's id, so route tables cached by the data plane are
dropped as soon as a route, integration, stage or the API itself changes.
"""

from __future__ import annotations

import dataclasses
import secrets
import string
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Table, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from nimbus.errors import BadRequest, Conflict, InvalidParameterValue, NotFound
from nimbus.models import (
    ApiIntegration,
    ApiRoute,
    ApiStage,
    HttpApi,
    HttpApiDefinition,
    Page,
    RouteSettings,
)
from nimbus.route_keys import parse_route_key
from nimbus.store.change_feed import HTTP_APIS, notify
from nimbus.store.database import Database
from nimbus.store.functions import decode_marker, encode_marker
from nimbus.store.schema import api_integrations, api_routes, api_stages, apis

_ID_CHARS = string.ascii_lowercase + string.digits


def new_id(length: int) -> str:
    """An id like AWS's: lowercase letters and digits (10 for APIs, 7 for the rest)."""
    return "".join(secrets.choice(_ID_CHARS) for _ in range(length))


def _decode_token(token: str, arity: int) -> list[str]:
    try:
        return decode_marker(token, arity)
    except InvalidParameterValue:
        raise BadRequest(
            "Invalid nextToken: pass the nextToken of the previous response unchanged."
        ) from None


# -- rows <-> records ----------------------------------------------------------------


def _api_row(api: HttpApi) -> dict[str, Any]:
    return dataclasses.asdict(api)


def _api(row: Any) -> HttpApi:
    m = dict(row._mapping)
    m["tags"] = dict(m["tags"] or {})
    return HttpApi(**m)


def _integration_row(integration: ApiIntegration) -> dict[str, Any]:
    return dataclasses.asdict(integration)


def _integration(row: Any) -> ApiIntegration:
    return ApiIntegration(**row._mapping)


def _route_row(route: ApiRoute) -> dict[str, Any]:
    values = dataclasses.asdict(route)
    values.pop("target")
    values["integration_id"] = route.integration_id
    values["route_shape"] = parse_route_key(route.route_key).shape
    return values


def _route(row: Any) -> ApiRoute:
    m = dict(row._mapping)
    m.pop("route_shape")
    integration_id = m.pop("integration_id")
    return ApiRoute(**m, target=f"integrations/{integration_id}" if integration_id else None)


def _stage_row(stage: ApiStage) -> dict[str, Any]:
    return dataclasses.asdict(stage)  # RouteSettings become plain dicts (JSON)


def _stage(row: Any) -> ApiStage:
    m = dict(row._mapping)
    m["default_route_settings"] = RouteSettings(**(m["default_route_settings"] or {}))
    m["route_settings"] = {k: RouteSettings(**v) for k, v in (m["route_settings"] or {}).items()}
    m["stage_variables"] = dict(m["stage_variables"] or {})
    m["tags"] = dict(m["tags"] or {})
    return ApiStage(**m)


class HttpApiStore:
    """Create, read, update and delete HTTP APIs and their integrations, routes and
    stages; builds the route table the data plane matches requests with."""

    def __init__(self, db: Database, account_id: str) -> None:
        self.db = db
        self.account_id = account_id
        self.generation = 0  # bumped after every committed change
        self._listeners: list[Callable[[str], None]] = []

    def on_change(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(api_id)`` after each committed change to an API or anything
        under it: cached route tables invalidate through it."""
        self._listeners.append(listener)

    @contextmanager
    def _writing(self, api_id: str) -> Iterator[Connection]:
        with self.db.write() as conn:
            yield conn
            if not self.db.is_sqlite:  # the other servers' caches (change_feed.py)
                notify(conn, HTTP_APIS, api_id)
        self.changed(api_id)

    def changed(self, api_id: str) -> None:
        """Tell the listeners that API ``api_id`` changed: on each commit here, and when
        another server's commit is heard."""
        self.generation += 1
        for listener in self._listeners:
            listener(api_id)

    # -- lookups inside a transaction -----------------------------------------------

    def _api_in(self, conn: Connection, api_id: str, lock: bool = False) -> HttpApi:
        query = select(apis).where(apis.c.api_id == api_id)
        if lock:
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            raise NotFound(
                f"Invalid API identifier specified {self.account_id}:{api_id}",
                resourceType="Api",
            )
        return _api(row)

    @staticmethod
    def _child(conn: Connection, table: Table, api_id: str, column: str, key: str) -> Any:
        return conn.execute(
            select(table).where(table.c.api_id == api_id, table.c[column] == key)
        ).first()

    def _child_in(
        self, conn: Connection, table: Table, api_id: str, key: tuple[str, str], kind: str
    ) -> Any:
        """The row of an integration, route or stage (``key``: column, value) of an API
        that must exist: 404 naming the API if it is missing, else the child."""
        column, value = key
        row = self._child(conn, table, api_id, column, value)
        if row is None:
            self._api_in(conn, api_id)
            noun = "stage" if kind == "Stage" else kind  # AWS's own capitalisation
            raise NotFound(
                f"Invalid {noun} identifier specified {value} (API {api_id})",
                resourceType=kind,
            )
        return row

    def _integration_in(self, conn: Connection, api_id: str, integration_id: str) -> ApiIntegration:
        key = ("integration_id", integration_id)
        return _integration(self._child_in(conn, api_integrations, api_id, key, "Integration"))

    def _route_in(self, conn: Connection, api_id: str, route_id: str) -> ApiRoute:
        return _route(self._child_in(conn, api_routes, api_id, ("route_id", route_id), "Route"))

    def _stage_in(self, conn: Connection, api_id: str, stage_name: str) -> ApiStage:
        key = ("stage_name", stage_name)
        return _stage(self._child_in(conn, api_stages, api_id, key, "Stage"))

    def _check_route(self, conn: Connection, route: ApiRoute, exclude: str | None) -> None:
        """The route's target must exist and no other route may have its shape."""
        if route.target is not None:
            integration_id = route.integration_id or ""
            if not route.target.startswith("integrations/") or not integration_id:
                raise BadRequest(
                    f"Invalid target '{route.target}': a route's target must be "
                    "'integrations/{integrationId}'."
                )
            if (
                self._child(conn, api_integrations, route.api_id, "integration_id", integration_id)
                is None
            ):
                raise NotFound(
                    f"Invalid Integration identifier specified {integration_id} in target "
                    f"'{route.target}': API {route.api_id} has no such integration.",
                    resourceType="Integration",
                )
        shape = parse_route_key(route.route_key).shape
        query = select(api_routes.c.route_id, api_routes.c.route_key).where(
            api_routes.c.api_id == route.api_id, api_routes.c.route_shape == shape
        )
        for other_id, other_key in conn.execute(query).all():
            if other_id != exclude:
                raise self._route_conflict(route.route_key, other_key, other_id)

    @staticmethod
    def _route_conflict(key: str, other_key: str, other_id: str) -> Conflict:
        if key == other_key:
            return Conflict(f"Route with key {key} already exists for this API (route {other_id}).")
        return Conflict(
            f"Route key {key} conflicts with route {other_id} ({other_key}): only the path "
            "variable names differ, so both would match the same requests."
        )

    # -- APIs ----------------------------------------------------------------------

    def create_api(
        self,
        api: HttpApi,
        integration: ApiIntegration | None = None,
        route: ApiRoute | None = None,
        stage: ApiStage | None = None,
    ) -> HttpApi:
        """Insert an API; with quick create, its integration, route and stage too (all or
        nothing)."""
        with self._writing(api.api_id) as conn:
            conn.execute(insert(apis).values(_api_row(api)))
            if integration is not None:
                conn.execute(insert(api_integrations).values(_integration_row(integration)))
            if route is not None:
                conn.execute(insert(api_routes).values(_route_row(route)))
            if stage is not None:
                conn.execute(insert(api_stages).values(_stage_row(stage)))
        return api

    def get_api(self, api_id: str) -> HttpApi:
        with self.db.read() as conn:
            return self._api_in(conn, api_id)

    def list_apis(self, token: str | None, max_items: int) -> Page:
        query = select(apis).order_by(apis.c.created_date, apis.c.api_id)
        if token:
            created, api_id = _decode_token(token, 2)
            query = query.where(
                (apis.c.created_date > created)
                | ((apis.c.created_date == created) & (apis.c.api_id > api_id))
            )
        with self.db.read() as conn:
            rows = conn.execute(query.limit(max_items + 1)).all()
        items = [_api(r) for r in rows[:max_items]]
        nxt = None
        if len(rows) > max_items:
            nxt = encode_marker(items[-1].created_date, items[-1].api_id)
        return Page(items, nxt)

    def update_api(self, api_id: str, changes: dict[str, Any]) -> HttpApi:
        with self._writing(api_id) as conn:
            api = dataclasses.replace(self._api_in(conn, api_id, lock=True), **changes)
            conn.execute(update(apis).where(apis.c.api_id == api_id).values(_api_row(api)))
        return api

    def delete_api(self, api_id: str) -> None:
        with self._writing(api_id) as conn:
            self._api_in(conn, api_id, lock=True)
            # Children first (routes before the integrations they point at); the foreign
            # keys cascade too, but the order here does not depend on the database's.
            for table in (api_routes, api_integrations, api_stages, apis):
                conn.execute(delete(table).where(table.c.api_id == api_id))

    # -- integrations ----------------------------------------------------------------

    def create_integration(self, integration: ApiIntegration) -> ApiIntegration:
        with self._writing(integration.api_id) as conn:
            self._api_in(conn, integration.api_id, lock=True)
            conn.execute(insert(api_integrations).values(_integration_row(integration)))
        return integration

    def get_integration(self, api_id: str, integration_id: str) -> ApiIntegration:
        with self.db.read() as conn:
            return self._integration_in(conn, api_id, integration_id)

    def list_integrations(self, api_id: str, token: str | None, max_items: int) -> Page:
        return self._list(
            api_id, api_integrations, "integration_id", _integration, token, max_items
        )

    def update_integration(
        self, api_id: str, integration_id: str, changes: dict[str, Any]
    ) -> ApiIntegration:
        with self._writing(api_id) as conn:
            self._api_in(conn, api_id, lock=True)
            current = self._integration_in(conn, api_id, integration_id)
            new = dataclasses.replace(current, **changes)
            conn.execute(
                update(api_integrations)
                .where(
                    api_integrations.c.api_id == api_id,
                    api_integrations.c.integration_id == integration_id,
                )
                .values(_integration_row(new))
            )
        return new

    def delete_integration(self, api_id: str, integration_id: str) -> None:
        with self._writing(api_id) as conn:
            self._api_in(conn, api_id, lock=True)
            self._integration_in(conn, api_id, integration_id)
            users = (
                conn.execute(
                    select(api_routes.c.route_id)
                    .where(
                        api_routes.c.api_id == api_id, api_routes.c.integration_id == integration_id
                    )
                    .order_by(api_routes.c.route_id)
                )
                .scalars()
                .all()
            )
            if users:
                raise Conflict(
                    "Cannot delete Integration because it is referenced by the following "
                    f"Routes with Ids: [{', '.join(users)}]. Delete those routes or point "
                    "them at another integration first."
                )
            conn.execute(
                delete(api_integrations).where(
                    api_integrations.c.api_id == api_id,
                    api_integrations.c.integration_id == integration_id,
                )
            )

    # -- routes ----------------------------------------------------------------------

    def create_route(self, route: ApiRoute) -> ApiRoute:
        try:
            with self._writing(route.api_id) as conn:
                self._api_in(conn, route.api_id, lock=True)
                self._check_route(conn, route, exclude=None)
                conn.execute(insert(api_routes).values(_route_row(route)))
        except IntegrityError as exc:  # a concurrent writer took the shape (PostgreSQL)
            raise Conflict(
                f"A concurrent change conflicts with route key {route.route_key}; retry."
            ) from exc
        return route

    def get_route(self, api_id: str, route_id: str) -> ApiRoute:
        with self.db.read() as conn:
            return self._route_in(conn, api_id, route_id)

    def list_routes(self, api_id: str, token: str | None, max_items: int) -> Page:
        return self._list(api_id, api_routes, "route_key", _route, token, max_items)

    def update_route(self, api_id: str, route_id: str, changes: dict[str, Any]) -> ApiRoute:
        try:
            with self._writing(api_id) as conn:
                self._api_in(conn, api_id, lock=True)
                current = self._route_in(conn, api_id, route_id)
                new = dataclasses.replace(current, **changes)
                if current.api_gateway_managed and new.route_key != current.route_key:
                    raise BadRequest(
                        f"Route {route_id} was made by quick create: its route key "
                        f"({current.route_key}) cannot be changed."
                    )
                self._check_route(conn, new, exclude=route_id)
                conn.execute(
                    update(api_routes)
                    .where(api_routes.c.api_id == api_id, api_routes.c.route_id == route_id)
                    .values(_route_row(new))
                )
        except IntegrityError as exc:
            raise Conflict(
                "Another route with this key was written at the same time; get the routes "
                "and retry."
            ) from exc
        return new

    def delete_route(self, api_id: str, route_id: str) -> None:
        with self._writing(api_id) as conn:
            self._api_in(conn, api_id, lock=True)
            self._route_in(conn, api_id, route_id)
            conn.execute(
                delete(api_routes).where(
                    api_routes.c.api_id == api_id, api_routes.c.route_id == route_id
                )
            )

    # -- stages ----------------------------------------------------------------------

    def create_stage(self, stage: ApiStage) -> ApiStage:
        try:
            with self._writing(stage.api_id) as conn:
                self._api_in(conn, stage.api_id, lock=True)
                if self._child(conn, api_stages, stage.api_id, "stage_name", stage.stage_name):
                    raise Conflict(
                        f"Stage {stage.stage_name} already exists for API {stage.api_id}."
                    )
                conn.execute(insert(api_stages).values(_stage_row(stage)))
        except IntegrityError as exc:
            raise Conflict(f"Stage {stage.stage_name} already exists.") from exc
        return stage

    def get_stage(self, api_id: str, stage_name: str) -> ApiStage:
        with self.db.read() as conn:
            return self._stage_in(conn, api_id, stage_name)

    def list_stages(self, api_id: str, token: str | None, max_items: int) -> Page:
        return self._list(api_id, api_stages, "stage_name", _stage, token, max_items)

    def update_stage(self, api_id: str, stage_name: str, changes: dict[str, Any]) -> ApiStage:
        with self._writing(api_id) as conn:
            self._api_in(conn, api_id, lock=True)
            new = dataclasses.replace(self._stage_in(conn, api_id, stage_name), **changes)
            conn.execute(
                update(api_stages)
                .where(api_stages.c.api_id == api_id, api_stages.c.stage_name == stage_name)
                .values(_stage_row(new))
            )
        return new

    def delete_stage(self, api_id: str, stage_name: str) -> None:
        with self._writing(api_id) as conn:
            self._api_in(conn, api_id, lock=True)
            self._stage_in(conn, api_id, stage_name)
            conn.execute(
                delete(api_stages).where(
                    api_stages.c.api_id == api_id, api_stages.c.stage_name == stage_name
                )
            )

    # -- listing and the data plane's view ---------------------------------------------

    def _list(
        self,
        api_id: str,
        table: Table,
        column: str,
        convert: Callable[[Any], Any],
        token: str | None,
        max_items: int,
    ) -> Page:
        query = select(table).where(table.c.api_id == api_id).order_by(table.c[column])
        if token:
            (after,) = _decode_token(token, 1)
            query = query.where(table.c[column] > after)
        with self.db.read() as conn:
            self._api_in(conn, api_id)
            rows = conn.execute(query.limit(max_items + 1)).all()
        items = [convert(r) for r in rows[:max_items]]
        nxt = None
        if len(rows) > max_items:
            nxt = encode_marker(rows[max_items - 1]._mapping[column])
        return Page(items, nxt)

    def definition(self, api_id: str) -> HttpApiDefinition | None:
        """Everything the data plane needs to serve the API, read in one transaction;
        None when there is no such API."""
        with self.db.read() as conn:
            row = conn.execute(select(apis).where(apis.c.api_id == api_id)).first()
            if row is None:
                return None

            def rows(table: Table) -> Sequence[Any]:
                return conn.execute(select(table).where(table.c.api_id == api_id)).all()

            return HttpApiDefinition(
                _api(row),
                [_route(r) for r in rows(api_routes)],
                [_integration(r) for r in rows(api_integrations)],
                [_stage(r) for r in rows(api_stages)],
            )
