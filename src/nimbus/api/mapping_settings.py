"""What Create/UpdateEventSourceMapping take, checked as Lambda checks it: the model's
constraints, which options apply to which kind of source (queue-like or stream, and
each broker's StartingPositions), filter criteria, and the defaults of each kind."""

from __future__ import annotations

from typing import Any

from nimbus.api.names import NAMESPACED
from nimbus.api.wire import Params
from nimbus.errors import (
    InvalidParameterValue,
)
from nimbus.events.sources.filters import MAX_FILTERS, FilterSet
from nimbus.events.sources.kinds import (
    Kind,
    starting_positions,
)
from nimbus.store.event_source_mappings import (
    MappingSettings,
)

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


def check_constraints(params: Params, create: bool) -> None:
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


def refuse_unsupported(body: dict[str, Any]) -> None:
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


def filter_patterns(body: dict[str, Any]) -> tuple[list[str], bool]:
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


def apply_options(
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
        settings.filters, settings.filters_given = filter_patterns(body)
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


def defaults_for(kind: Kind) -> MappingSettings:
    if kind.queue_like:
        return MappingSettings(batch_size=10, maximum_batching_window=0)
    return MappingSettings(
        batch_size=100,
        maximum_batching_window=0,
        maximum_retry_attempts=-1,
        maximum_record_age=-1,
        bisect_batch_on_function_error=False,
    )
