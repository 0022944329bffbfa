"""The control plane: Lambda's REST API, route by route."""

from starlette.routing import BaseRoute

from nimbus.api import (
    aliases,
    api_keys,
    aws_services,
    cluster,
    concurrency,
    dead_letters,
    event_invoke,
    event_source_mappings,
    function_urls,
    functions,
    http_apis,
    invoke,
    layer_policies,
    layers,
    logs,
    metrics,
    openapi,
    policies,
    provisioned,
    queue,
    snapstart,
    sns,
    tags,
    traces,
    usage_plans,
)

routes: list[BaseRoute] = [
    *invoke.routes,  # first: the hot path should not be matched against every route
    *functions.routes,
    *aliases.routes,
    *concurrency.routes,
    *tags.routes,
    *event_invoke.routes,
    *event_source_mappings.routes,
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
    *cluster.routes,
    *snapstart.routes,
    *logs.routes,
    *metrics.routes,
    *traces.routes,
    *openapi.routes,  # GET /_nimbus/openapi.json: this surface, described from these routes
    *sns.routes,  # the certificate SNS messages are signed with
    # Last: SQS, Scheduler... take only what their models claim; nothing of Lambda's changes.
    *aws_services.routes,
]
