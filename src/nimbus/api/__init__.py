"""The control plane: Lambda's REST API, route by route."""

from starlette.routing import BaseRoute

from nimbus.api import (
    aliases,
    concurrency,
    functions,
    invoke,
    tags,
)

routes: list[BaseRoute] = [
    *functions.routes,
    *aliases.routes,
    *concurrency.routes,
    *tags.routes,
    *invoke.routes,
]
