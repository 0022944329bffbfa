"""Event source mappings: Create/Get/Update/Delete/ListEventSourceMappings, and their
pollers' figures at ``GET /_nimbus/event-source-mappings`` (a nimbus extension).

The EventSourceArn decides the kind of mapping: an SQS queue ARN of this nimbus, or a
broker URI (``redis://``, ``amqp://``, ``nats://``, ``mqtt://``). Queue-like sources
(SQS, RabbitMQ, JetStream) take Lambda's SQS options; streams (Redis Streams, MQTT) take
its stream options (StartingPosition, retries, bisect, record age, OnFailure). An option
that does not apply is refused as Lambda refuses it. The answer is written at once with
the transitional state (Creating, Enabling, Disabling, Updating, Deleting); the
process running the poller settles it (see ``events/sources/supervisor.py``).
"""

from __future__ import annotations

import time
import uuid as uuidlib
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nimbus.api.mapping_settings import (
    NO_FUNCTION,
    NO_QUEUE,
    UNSUPPORTED,
    apply_options,
    check_constraints,
    defaults_for,
    refuse_unsupported,
)
from nimbus.api.names import parse_function_ref
from nimbus.api.services import Services, services
from nimbus.api.wire import Params, json_response, page_response, query_int, read_json
from nimbus.clock import now_ms
from nimbus.config import FUNCTION_ARN
from nimbus.errors import (
    InvalidParameterValue,
    QueueDoesNotExist,
    ResourceInUse,
    ResourceNotFound,
)
from nimbus.events.destinations import validate_destination
from nimbus.events.sources.kinds import (
    SQS,
    SQS_ARN,
    Kind,
    check_source,
    kind_of,
    shown,
    validate_broker_uri,
)
from nimbus.events.sources.supervisor import supervisor_for
from nimbus.models import LATEST
from nimbus.store.event_source_mappings import (
    EventSourceMapping,
    MappingSettings,
    MappingStore,
)
from nimbus.store.leases import LeaseStore
from nimbus.threads import blocking


def mapping_arn(svc: Services, uuid: str) -> str:
    return f"arn:aws:lambda:{svc.config.region}:{svc.config.account_id}:event-source-mapping:{uuid}"


def render(svc: Services, m: EventSourceMapping) -> dict[str, Any]:
    """EventSourceMappingConfiguration, with the members Lambda shows for the kind."""
    s = m.settings
    kind = kind_of(m.event_source_arn)
    body: dict[str, Any] = {
        "UUID": m.uuid,
        "BatchSize": s.batch_size,
        "MaximumBatchingWindowInSeconds": s.maximum_batching_window,
        "EventSourceArn": shown(m.event_source_arn),
        "FunctionArn": svc.config.function_arn(m.function_name, m.qualifier),
        "LastModified": m.last_modified,
        "State": m.state,
        "StateTransitionReason": m.state_reason,
        "FunctionResponseTypes": list(s.function_response_types),
        "EventSourceMappingArn": mapping_arn(svc, m.uuid),
    }
    if s.filters_given:
        body["FilterCriteria"] = {"Filters": [{"Pattern": p} for p in s.filters]}
    if s.maximum_concurrency is not None:
        body["ScalingConfig"] = {"MaximumConcurrency": s.maximum_concurrency}
    if kind is not None and not kind.queue_like:
        body.update(
            StartingPosition=s.starting_position,
            ParallelizationFactor=1,
            MaximumRecordAgeInSeconds=s.maximum_record_age,
            BisectBatchOnFunctionError=bool(s.bisect_batch_on_function_error),
            MaximumRetryAttempts=s.maximum_retry_attempts,
            TumblingWindowInSeconds=0,
            DestinationConfig={
                "OnFailure": {"Destination": s.on_failure} if s.on_failure else {}
            },
            LastProcessingResult=m.last_processing_result or "No records processed",
        )
        if s.starting_position_timestamp is not None:
            body["StartingPositionTimestamp"] = s.starting_position_timestamp
    return body


def _check_uuid(uuid: str) -> None:
    params = Params({"UUID": uuid})
    params.string("UUID", min_len=36, max_len=36)
    params.check()


async def _function(svc: Services, raw: str) -> tuple[str, str | None]:
    """(name, qualifier) of an existing function version or alias, or Lambda's error."""
    ref = parse_function_ref(raw, svc.config)
    try:
        if ref.qualifier is None or ref.qualifier == LATEST or ref.qualifier.isdigit():
            await blocking(svc.engine.functions.get_version, ref.name, ref.qualifier or LATEST)
        else:
            await blocking(svc.engine.aliases.get, ref.name, ref.qualifier)
    except ResourceNotFound as exc:
        raise InvalidParameterValue(NO_FUNCTION) from exc
    return ref.name, None if ref.qualifier == LATEST else ref.qualifier


async def _queue_info(svc: Services, arn: str) -> Any:
    queues = getattr(svc.engine, "sqs", None)
    if queues is None:
        raise InvalidParameterValue(
            "This nimbus has no SQS queues yet, so it cannot map one; use a broker URI "
            "(redis://, amqp://, nats://, mqtt://) instead."
        )
    try:
        return await queues.get_by_arn(arn)
    except QueueDoesNotExist as exc:
        raise InvalidParameterValue(NO_QUEUE) from exc


async def _check_on_failure(svc: Services, target: str | None, function: str) -> None:
    if not target:
        return
    if SQS_ARN.fullmatch(target):
        queues = getattr(svc.engine, "sqs", None)
        try:
            if queues is None:
                raise QueueDoesNotExist()
            await queues.get_by_arn(target)
        except QueueDoesNotExist as exc:
            raise InvalidParameterValue(
                f"DestinationConfig.OnFailure.Destination: the queue {target} does not exist "
                "in this nimbus."
            ) from exc
        return
    validate_destination(target, svc.config, "DestinationConfig.OnFailure.Destination")
    match = FUNCTION_ARN.fullmatch(target)
    if match is not None:
        if match["name"] == function:
            raise InvalidParameterValue(
                "You can't specify the function as a destination for itself."
            )
        try:
            await blocking(svc.engine.functions.get_record, match["name"])
        except ResourceNotFound as exc:
            raise InvalidParameterValue(f"The destination ARN {target} is invalid.") from exc


def _conflict(kind: Kind, arn: str, function: str) -> Any:
    def message(existing: str) -> str:
        if kind is SQS:
            return (
                f'An event source mapping with SQS arn (" {arn} ") and function (" {function} '
                f'") already exists. Please update or delete the existing mapping with UUID '
                f"{existing}"
            )
        return (
            f'The event source arn (" {arn} ") and function (" {function} ") provided mapping '
            f"already exists. Please update or delete the existing mapping with UUID {existing}"
        )

    return message


async def _source_checks(svc: Services, kind: Kind, arn: str) -> bool:
    """The source exists (SQS) or its URI is well formed (brokers); True for FIFO."""
    if kind is SQS:
        info = await _queue_info(svc, arn)
        return bool(info.fifo)
    validate_broker_uri(kind, arn)
    await check_source(kind, arn)
    return False


async def create_mapping(request: Request) -> Response:
    svc = services(request)
    body = await read_json(request, "CreateEventSourceMapping")
    check_constraints(Params(body), create=True)
    refuse_unsupported(body)
    arn: str = body.get("EventSourceArn") or ""
    kind = kind_of(arn) if arn else None
    if kind is None:
        if arn and arn.startswith("arn:"):
            raise InvalidParameterValue(
                f"Unrecognized event source: nimbus maps SQS queues of this nimbus "
                f"(arn:aws:sqs:{svc.config.region}:{svc.config.account_id}:NAME) and broker URIs "
                "(redis://, amqp://, nats://, mqtt://, postgresql://), not "
                + arn.split(":")[2]
                + " ARNs."
            )
        raise InvalidParameterValue("Unrecognized event source.")
    settings = defaults_for(kind)
    dest = body.get("DestinationConfig") or {}
    if kind.queue_like and body.get("DestinationConfig") is not None:
        raise InvalidParameterValue(UNSUPPORTED.format("DestinationConfig"))
    if not kind.queue_like and dest.get("OnSuccess") not in (None, {}):
        raise InvalidParameterValue(UNSUPPORTED.format("DestinationConfig"))
    function, qualifier = await _function(svc, body["FunctionName"])
    fifo = await _source_checks(svc, kind, arn)
    apply_options(body, kind, settings, create=True, fifo=fifo)
    await _check_on_failure(svc, settings.on_failure, function)
    enabled = body.get("Enabled", True) is not False
    mapping = EventSourceMapping(
        uuid=str(uuidlib.uuid4()),
        function_name=function,
        qualifier=qualifier,
        event_source_arn=arn,
        kind=kind.name,
        enabled=enabled,
        state="Creating" if enabled else "Disabled",
        state_reason="USER_INITIATED" if kind.queue_like else "User action",
        settings=settings,
        created_ms=now_ms(),
        last_modified=time.time(),
    )
    await blocking(MappingStore(svc.engine.db).create, mapping, _conflict(kind, arn, function))
    return json_response(render(svc, mapping), 202)


async def get_mapping(request: Request) -> Response:
    svc = services(request)
    uuid = request.path_params["uuid"]
    _check_uuid(uuid)
    mapping = await blocking(MappingStore(svc.engine.db).get, uuid)
    return json_response(render(svc, mapping))


async def update_mapping(request: Request) -> Response:
    svc = services(request)
    uuid = request.path_params["uuid"]
    _check_uuid(uuid)
    body = await read_json(request, "UpdateEventSourceMapping")
    check_constraints(Params(body), create=False)
    refuse_unsupported(body)
    if body.get("StartingPosition") is not None:
        raise InvalidParameterValue(
            "StartingPosition cannot be changed; delete the mapping and create a new one."
        )
    store = MappingStore(svc.engine.db)
    current = await blocking(store.get, uuid)
    kind = kind_of(current.event_source_arn)
    assert kind is not None
    if current.state == "Deleting":
        raise ResourceInUse(
            f"The event source mapping {uuid} is being deleted; it cannot be updated."
        )
    function, qualifier = current.function_name, current.qualifier
    if body.get("FunctionName") is not None:
        function, qualifier = await _function(svc, body["FunctionName"])
    if kind.queue_like and body.get("DestinationConfig") is not None:
        raise InvalidParameterValue(UNSUPPORTED.format("DestinationConfig"))
    fifo = False
    if kind is SQS:
        queues = getattr(svc.engine, "sqs", None)
        if queues is not None:
            try:
                fifo = bool((await queues.get_by_arn(current.event_source_arn)).fifo)
            except QueueDoesNotExist:
                fifo = current.event_source_arn.endswith(".fifo")
    settings = MappingSettings(**vars(current.settings))
    apply_options(body, kind, settings, create=False, fifo=fifo)
    await _check_on_failure(svc, settings.on_failure, function)
    enabled = body.get("Enabled")

    def change(m: EventSourceMapping) -> EventSourceMapping:
        if m.state == "Deleting":
            raise ResourceInUse(
                f"The event source mapping {uuid} is being deleted; it cannot be updated."
            )
        was_running = m.enabled
        m.function_name, m.qualifier, m.settings = function, qualifier, settings
        if enabled is not None:
            m.enabled = enabled
        if m.enabled and not was_running:
            m.state = "Enabling"
        elif was_running and not m.enabled:
            m.state = "Disabling"
        elif m.enabled:
            m.state = "Updating"
        m.last_modified = time.time()
        return m

    updated = await blocking(store.replace, uuid, change, _conflict(kind, current.event_source_arn,
                                                                   function))
    return json_response(render(svc, updated), 202)


async def delete_mapping(request: Request) -> Response:
    svc = services(request)
    uuid = request.path_params["uuid"]
    _check_uuid(uuid)

    def change(m: EventSourceMapping) -> EventSourceMapping:
        m.state = "Deleting"
        return m

    deleted = await blocking(MappingStore(svc.engine.db).replace, uuid, change)
    return json_response(render(svc, deleted), 202)


async def list_mappings(request: Request) -> Response:
    svc = services(request)
    max_items = query_int(request, "MaxItems", 100, 1, 10000)
    raw_function = request.query_params.get("FunctionName")
    arn = request.query_params.get("EventSourceArn")
    function = qualifier = None
    if raw_function is not None:
        ref = parse_function_ref(raw_function, svc.config)
        function, qualifier = ref.name, ref.qualifier
        if qualifier == LATEST:
            qualifier = None
    page = await blocking(
        MappingStore(svc.engine.db).list,
        function,
        qualifier,
        arn,
        request.query_params.get("Marker"),
        max_items,
    )
    items = [render(svc, m) for m in page.items]
    return page_response("EventSourceMappings", items, page.next_marker)


async def mapping_stats(request: Request) -> Response:
    """Every mapping with its poller's owner and, where this process runs the poller,
    its counters (records received, batches delivered, succeeded, failed items, dropped
    by filter, sent to OnFailure, record ages)."""
    svc = services(request)
    mappings = await blocking(MappingStore(svc.engine.db).all)
    leases = LeaseStore(svc.engine.db)
    supervisor = supervisor_for(svc.engine.db)
    out = []
    for m in mappings:
        owner = await blocking(leases.owner, f"mapping:{m.uuid}")
        entry: dict[str, Any] = {
            "UUID": m.uuid,
            "FunctionArn": svc.config.function_arn(m.function_name, m.qualifier),
            "EventSourceArn": shown(m.event_source_arn),
            "State": m.state,
            "Owner": owner,
            "Stats": supervisor.stats_of(m.uuid) if supervisor is not None else None,
        }
        out.append(entry)
    return json_response({"EventSourceMappings": out})


_M = "/2015-03-31/event-source-mappings"
routes = [
    Route(_M, create_mapping, methods=["POST"]),
    Route(_M + "/", create_mapping, methods=["POST"]),
    Route(_M, list_mappings, methods=["GET"]),
    Route(_M + "/", list_mappings, methods=["GET"]),
    Route(_M + "/{uuid}", get_mapping, methods=["GET"]),
    Route(_M + "/{uuid}", update_mapping, methods=["PUT"]),
    Route(_M + "/{uuid}", delete_mapping, methods=["DELETE"]),
    Route("/_nimbus/event-source-mappings", mapping_stats, methods=["GET"]),
]
