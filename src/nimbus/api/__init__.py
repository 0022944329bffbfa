"""The control plane: Lambda's REST API, route by route."""

from starlette.routing import BaseRoute

from nimbus.api import (
    aliases,
    api_keys,
    concurrency,
    dead_letters,
    event_invoke,
    function_urls,
    functions,
    http_apis,
    invoke,
    layer_policies,
    layers,
    logs,
    policies,
    provisioned,
    queue,
    tags,
    usage_plans,
)

routes: list[BaseRoute] = [
    *invoke.routes,  # first: the hot path should not be matched against every route
    *functions.routes,
    *aliases.routes,
    *concurrency.routes,
    *tags.routes,
    *event_invoke.routes,
    *function_urls.routes,
    *layers.routes,
    *layer_policies.routes,
    *policies.routes,
    *http_apis.routes,
    *api_keys.routes,
    *usage_plans.routes,
    *provisioned.routes,
    *dead_letters.routes,
    *queue.routes,
    *logs.routes,
]
