"""The control plane: Lambda's REST API, route by route."""

from starlette.routing import BaseRoute

from nimbus.api import (
    aliases,
    concurrency,
    dead_letters,
    event_invoke,
    functions,
    invoke,
    logs,
    provisioned,
    queue,
    tags,
)

routes: list[BaseRoute] = [
    *invoke.routes,  # first: the hot path should not be matched against every route
    *functions.routes,
    *aliases.routes,
    *concurrency.routes,
    *tags.routes,
    *event_invoke.routes,
    *provisioned.routes,
    *dead_letters.routes,
    *queue.routes,
    *logs.routes,
]
