"""The control plane: Lambda's REST API, route by route."""

from starlette.routing import BaseRoute

from nimbus.api import (
    aliases,
    concurrency,
    dead_letters,
    event_invoke,
    functions,
    invoke,
    provisioned,
    queue,
    tags,
)

routes: list[BaseRoute] = [
    *functions.routes,
    *aliases.routes,
    *concurrency.routes,
    *tags.routes,
    *invoke.routes,
    *event_invoke.routes,
    *provisioned.routes,
    *dead_letters.routes,
    *queue.routes,
]
