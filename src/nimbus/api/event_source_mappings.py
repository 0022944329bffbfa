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

from nimbus.api.names import NAMESPACED, parse_function_ref
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
from nimbus.events.sources.filters import MAX_FILTERS, FilterSet
from nimbus.events.sources.kinds import (
    SQS,
    SQS_ARN,
    Kind,
    kind_of,
    shown,
    starting_positions,
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

ARN_PATTERN = (
    r"arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-])+:((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-"
    r"[a-z]+-\d{1})?:(\d{12})?:(.*)"
)
DESTINATION_PATTERN = r"$|kafka://([^.]([a-zA-Z0-9\-_.]{0,248}))|" + ARN_PATTERN
POSITIONS = ("LATEST", "AT_TIMESTAMP", "TRIM_HORIZON")  # in Lambda's message order
RESPONSE_TYPES = ("ReportBatchItemFailures",)
UNSUPPORTED = "Unsupported {} parameter for given event source mapping type."
NO_FUNCTION = "Function does not exist"
NO_QUEUE = (
    "Error occurred while ReceiveMessage. SQS Error Code: AWS.SimpleQueueService."
    "NonExistentQueue. SQS Error Message: The specified queue does not exist."
)
# Members of the service model for sources nimbus does not have (Kafka, DocumentDB,
# Amazon MQ's broker settings...) and settings nimbus does not implement.
NOT_HERE = {
    "Topics": "Kafka topics",
    "Queues": "Amazon MQ queue names (give the queue in the amqp:// URI instead)",
    "SourceAccessConfigurations": "source access configurations (put credentials in the URI)",
    "SelfManagedEventSource": "self-managed Kafka",
    "AmazonManagedKafkaEventSourceConfig": "Amazon MSK",
    "SelfManagedKafkaEventSourceConfig": "self-managed Kafka",
    "DocumentDBEventSourceConfig": "DocumentDB",
    "ProvisionedPollerConfig": "provisioned pollers",
    "KMSKeyArn": "KMS encryption of filter criteria",
    "MetricsConfig": "event source mapping metrics (see GET /_nimbus/event-source-mappings)",
    "LoggingConfig": "event source mapping system logs",
    "Tags": "tags on event source mappings",
}
STREAM_ONLY = (
    "StartingPosition",
    "StartingPositionTimestamp",
    "MaximumRetryAttempts",
    "BisectBatchOnFunctionError",
    "MaximumRecordAgeInSeconds",
    "DestinationConfig",
    "ParallelizationFactor",
    "TumblingWindowInSeconds",
)


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


def _validate(params: Params, create: bool) -> None:
    """The service model's constraints, reported together as Lambda reports them."""
    if create:
        params.string("FunctionName", required=True, min_len=1, max_len=256,
                      pattern=NAMESPACED.pattern)
        arn = params.data.get("EventSourceArn")
        if isinstance(arn, str) and arn.startswith("arn:"):
            params.string("EventSourceArn", max_len=10000, pattern=ARN_PATTERN)
        else:
            params.string("EventSourceArn", max_len=10000)
    else:
        params.string("FunctionName", min_len=1, max_len=256, pattern=NAMESPACED.pattern)
    params.boolean("Enabled")
    params.integer("BatchSize", minimum=1, maximum=10000)
    params.integer("MaximumBatchingWindowInSeconds", minimum=0, maximum=300)
    params.integer("ParallelizationFactor", minimum=1, maximum=10)
    params.integer("MaximumRecordAgeInSeconds", minimum=-1, maximum=604800)
    params.integer("MaximumRetryAttempts", minimum=-1, maximum=10000)
    params.integer("TumblingWindowInSeconds", minimum=0, maximum=900)
    params.boolean("BisectBatchOnFunctionError")
    if create:
        params.enum("StartingPosition", POSITIONS)
    types = params.sequence("FunctionResponseTypes", max_items=1) or []
    for value in types:
        if value not in RESPONSE_TYPES:
            params.violation(value, "FunctionResponseTypes",
                             f"Member must satisfy enum value set: [{', '.join(RESPONSE_TYPES)}]")
    scaling = params.nested("ScalingConfig")
    scaling.integer("MaximumConcurrency", minimum=2, maximum=1000)
    destinations = params.nested("DestinationConfig")
    for kind in ("OnSuccess", "OnFailure"):
        sub = destinations.nested(kind)
        value = sub.data.get("Destination")
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            sub.string("Destination", max_len=350)
        else:
            sub.string("Destination", max_len=350, pattern=DESTINATION_PATTERN)
    criteria = params.nested("FilterCriteria")
    criteria.sequence("Filters")
    params.check()


def _refuse_unsupported(body: dict[str, Any]) -> None:
    for member, what in NOT_HERE.items():
        value = body.get(member)
        if value not in (None, "", [], {}):
            raise InvalidParameterValue(
                f"{member}: nimbus does not support {what}; leave {member} out."
            )
    if body.get("ParallelizationFactor") not in (None, 1):
        raise InvalidParameterValue(
            "ParallelizationFactor: nimbus reads each stream with one batch loop, in order; "
            "only 1 is supported."
        )
    if body.get("TumblingWindowInSeconds") not in (None, 0):
        raise InvalidParameterValue(
            "TumblingWindowInSeconds: nimbus has no tumbling windows; leave it out or use 0."
        )


def _filters(body: dict[str, Any]) -> tuple[list[str], bool]:
    criteria = body.get("FilterCriteria")
    if criteria is None:
        return [], False
    filters = criteria.get("Filters") or []
    if len(filters) > MAX_FILTERS:
        raise InvalidParameterValue(
            f"The number of filters ({len(filters)}) exceeds the limit of {MAX_FILTERS} "
            "filters per event source mapping."
        )
    patterns = []
    for entry in filters:
        pattern = entry.get("Pattern") if isinstance(entry, dict) else None
        patterns.append(pattern)
    FilterSet.parse(patterns)  # InvalidParameterValue: "Invalid filter pattern definition."
    return [p for p in patterns if isinstance(p, str)], True


def _apply(
    body: dict[str, Any], kind: Kind, settings: MappingSettings, create: bool, fifo: bool
) -> None:
    """Check ``body``'s options against the kind of source and set them on
    ``settings`` (defaults already filled in)."""
    positions = starting_positions(kind)
    position = body.get("StartingPosition")
    if positions is not None and position is not None and position not in positions[0]:
        accepted = ", ".join(sorted(positions[0])) or "none"
        raise InvalidParameterValue(
            f"StartingPosition {position} is not valid for a {kind.label} event source "
            f"(it takes: {accepted})."
        )
    if kind.queue_like:
        # A queue-like broker may still have a position to start from (JetStream).
        takes_position = positions is not None and bool(positions[0])
        for member in STREAM_ONLY:
            if member in ("StartingPosition", "StartingPositionTimestamp") and takes_position:
                continue
            if body.get(member) is not None and member not in ("ParallelizationFactor",
                                                               "TumblingWindowInSeconds"):
                raise InvalidParameterValue(UNSUPPORTED.format(member))
        if create and takes_position and position is not None:
            settings.starting_position = position
            stamp = body.get("StartingPositionTimestamp")
            if position == "AT_TIMESTAMP" and isinstance(stamp, (int, float)):
                settings.starting_position_timestamp = float(stamp)
    else:
        if body.get("ScalingConfig") not in (None, {}):
            raise InvalidParameterValue(UNSUPPORTED.format("ScalingConfig"))
        destination = body.get("DestinationConfig") or {}
        if destination.get("OnSuccess") not in (None, {}):
            raise InvalidParameterValue(UNSUPPORTED.format("DestinationConfig"))
    if "BatchSize" in body and body["BatchSize"] is not None:
        settings.batch_size = body["BatchSize"]
    if body.get("MaximumBatchingWindowInSeconds") is not None:
        settings.maximum_batching_window = body["MaximumBatchingWindowInSeconds"]
    if "FunctionResponseTypes" in body and body["FunctionResponseTypes"] is not None:
        settings.function_response_types = list(body["FunctionResponseTypes"])
    if "FilterCriteria" in body:
        settings.filters, settings.filters_given = _filters(body)
    if kind.queue_like:
        if "ScalingConfig" in body and body["ScalingConfig"] is not None:
            settings.maximum_concurrency = body["ScalingConfig"].get("MaximumConcurrency")
        if fifo and settings.batch_size > 10:
            raise InvalidParameterValue(
                "BatchSize must be between 1 and 10 for a FIFO queue (its message groups "
                "are delivered in order, 10 at most at a time)."
            )
        if settings.batch_size > 10 and settings.maximum_batching_window == 0:
            raise InvalidParameterValue(
                "Maximum batch window in seconds must be greater than 0 if maximum batch "
                "size is greater than 10"
            )
        return
    if create:
        if position is None and (positions is None or positions[1]):
            raise InvalidParameterValue(
                "1 validation error detected: Value null at 'startingPosition' failed to "
                "satisfy constraint: Member must not be null."
            )
        settings.starting_position = position
        stamp = body.get("StartingPositionTimestamp")
        if position == "AT_TIMESTAMP":
            if not isinstance(stamp, (int, float)) or isinstance(stamp, bool):
                raise InvalidParameterValue(
                    "StartingPositionTimestamp is required when StartingPosition is "
                    "AT_TIMESTAMP (seconds since the epoch)."
                )
            settings.starting_position_timestamp = float(stamp)
        elif stamp is not None:
            raise InvalidParameterValue(
                "StartingPositionTimestamp is only valid with StartingPosition AT_TIMESTAMP."
            )
    for member, attr in (
        ("MaximumRetryAttempts", "maximum_retry_attempts"),
        ("MaximumRecordAgeInSeconds", "maximum_record_age"),
        ("BisectBatchOnFunctionError", "bisect_batch_on_function_error"),
    ):
        if body.get(member) is not None:
            setattr(settings, attr, body[member])
    age = settings.maximum_record_age
    if age is not None and age != -1 and age < 60:
        raise InvalidParameterValue(
            f"MaximumRecordAgeInSeconds must be -1 (no limit) or between 60 and 604800; "
            f"got {age}."
        )
    if "DestinationConfig" in body and body["DestinationConfig"] is not None:
        on_failure = (body["DestinationConfig"].get("OnFailure") or {}).get("Destination")
        settings.on_failure = on_failure or None
        settings.destination_given = True


def _defaults(kind: Kind) -> MappingSettings:
    if kind.queue_like:
        return MappingSettings(batch_size=10, maximum_batching_window=0)
    return MappingSettings(
        batch_size=100,
        maximum_batching_window=0,
        maximum_retry_attempts=-1,
        maximum_record_age=-1,
        bisect_batch_on_function_error=False,
    )


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
    return False


async def create_mapping(request: Request) -> Response:
    svc = services(request)
    body = await read_json(request, "CreateEventSourceMapping")
    _validate(Params(body), create=True)
    _refuse_unsupported(body)
    arn: str = body.get("EventSourceArn") or ""
    kind = kind_of(arn) if arn else None
    if kind is None:
        if arn and arn.startswith("arn:"):
            raise InvalidParameterValue(
                f"Unrecognized event source: nimbus maps SQS queues of this nimbus "
                f"(arn:aws:sqs:{svc.config.region}:{svc.config.account_id}:NAME) and broker URIs "
                "(redis://, amqp://, nats://, mqtt://), not " + arn.split(":")[2] + " ARNs."
            )
        raise InvalidParameterValue("Unrecognized event source.")
    settings = _defaults(kind)
    dest = body.get("DestinationConfig") or {}
    if kind.queue_like and body.get("DestinationConfig") is not None:
        raise InvalidParameterValue(UNSUPPORTED.format("DestinationConfig"))
    if not kind.queue_like and dest.get("OnSuccess") not in (None, {}):
        raise InvalidParameterValue(UNSUPPORTED.format("DestinationConfig"))
    function, qualifier = await _function(svc, body["FunctionName"])
    fifo = await _source_checks(svc, kind, arn)
    _apply(body, kind, settings, create=True, fifo=fifo)
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
    _validate(Params(body), create=False)
    _refuse_unsupported(body)
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
    _apply(body, kind, settings, create=False, fifo=fifo)
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
