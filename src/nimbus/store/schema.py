"""The metadata schema, in SQLAlchemy Core; Alembic migrations create and evolve it.

Any change here needs a new revision under ``store/migrations/versions``.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

functions = Table(
    "functions",
    metadata,
    Column("name", String(140), primary_key=True),
    Column("created_at", String(40), nullable=False),
    Column("last_published", Integer, nullable=False, default=0),
    Column("reserved_concurrency", Integer, nullable=True),
    Column("tags", JSON, nullable=False, default=dict),
)

function_versions = Table(
    "function_versions",
    metadata,
    Column("function_name", String(140), primary_key=True),
    # "$LATEST" or a decimal number; sorted numerically via version_number.
    Column("version", String(16), primary_key=True),
    Column("version_number", Integer, nullable=False),  # 0 for $LATEST
    Column("runtime", String(40), nullable=True),
    Column("handler", String(128), nullable=True),
    Column("role", Text, nullable=False),
    Column("description", String(256), nullable=False, default=""),
    Column("timeout", Integer, nullable=False),
    Column("memory_size", Integer, nullable=False),
    Column("ephemeral_storage", Integer, nullable=False),
    Column("package_type", String(8), nullable=False),
    Column("architectures", JSON, nullable=False),
    Column("environment", JSON, nullable=False),
    Column("layers", JSON, nullable=False),
    Column("code_sha256", String(64), nullable=False, index=True),
    Column("code_size", BigInteger, nullable=False),
    Column("last_modified", String(40), nullable=False),
    Column("revision_id", String(36), nullable=False),
    Column("state", String(16), nullable=False),
    Column("extra", JSON, nullable=False),
    ForeignKeyConstraint(["function_name"], ["functions.name"], ondelete="CASCADE"),
)

aliases = Table(
    "aliases",
    metadata,
    Column("function_name", String(140), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("function_version", String(16), nullable=False),
    Column("description", String(256), nullable=False, default=""),
    Column("routing", JSON, nullable=False),
    Column("revision_id", String(36), nullable=False),
    ForeignKeyConstraint(["function_name"], ["functions.name"], ondelete="CASCADE"),
)

invocation_logs = Table(
    "invocation_logs",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("request_id", String(36), nullable=False),
    Column("function_name", String(140), nullable=False),
    Column("version", String(16), nullable=False),
    Column("log_stream", String(256), nullable=False),
    Column("timestamp_ms", BigInteger, nullable=False),
    Column("text", Text, nullable=False),
    Column("duration_ms", Float, nullable=False),
    Column("billed_ms", Integer, nullable=False),
    Column("memory_size", Integer, nullable=False),
    Column("max_memory_used", Integer, nullable=False),
    Column("init_ms", Float, nullable=True),
    Column("error_type", String(128), nullable=True),
    Index("ix_invocation_logs_function_time", "function_name", "timestamp_ms"),
    # For the retention's hourly delete; time only grows, so inserts append to its end.
    Index("ix_invocation_logs_time", "timestamp_ms"),
)

event_invoke_configs = Table(
    "event_invoke_configs",
    metadata,
    Column("function_name", String(140), primary_key=True),
    Column("qualifier", String(128), primary_key=True),  # "$LATEST", a version or an alias
    Column("maximum_retry_attempts", Integer, nullable=True),
    Column("maximum_event_age", Integer, nullable=True),
    Column("on_success", Text, nullable=True),
    Column("on_failure", Text, nullable=True),
    Column("last_modified", Float, nullable=False),
    ForeignKeyConstraint(["function_name"], ["functions.name"], ondelete="CASCADE"),
)

provisioned_concurrency = Table(
    "provisioned_concurrency",
    metadata,
    Column("function_name", String(140), primary_key=True),
    Column("qualifier", String(128), primary_key=True),
    Column("requested", Integer, nullable=False),
    Column("last_modified", String(40), nullable=False),
    # The last failure to start one of its environments (cluster mode: on any node).
    Column("failure", Text, nullable=True),
    Column("failed_ms", BigInteger, nullable=True),
    ForeignKeyConstraint(["function_name"], ["functions.name"], ondelete="CASCADE"),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    # Where it landed: "nimbus" (the built-in store) or the name of a DeadLetterConfig queue.
    Column("queue", String(256), nullable=False),
    Column("function_name", String(140), nullable=False),
    Column("qualifier", String(128), nullable=True),
    Column("request_id", String(36), nullable=False),
    Column("payload", Text, nullable=False),
    Column("condition", String(64), nullable=False),
    Column("error", Text, nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("enqueued_ms", BigInteger, nullable=False),
    Column("failed_ms", BigInteger, nullable=False),
    Column("redriven_ms", BigInteger, nullable=True),
    Index("ix_dead_letters_function", "function_name", "id"),
)

function_urls = Table(
    "function_urls",
    metadata,
    Column("function_name", String(140), primary_key=True),
    Column("qualifier", String(128), primary_key=True),  # "$LATEST" or an alias name
    Column("url_id", String(32), nullable=False),
    Column("auth_type", String(8), nullable=False),
    # SQL NULL (not JSON null) when the URL has no Cors settings.
    Column("cors", JSON(none_as_null=True), nullable=True),
    Column("invoke_mode", String(16), nullable=False),
    Column("creation_time", String(40), nullable=False),
    Column("last_modified", String(40), nullable=False),
    ForeignKeyConstraint(["function_name"], ["functions.name"], ondelete="CASCADE"),
    # Every request to a function URL looks its config up by url_id.
    Index("ux_function_urls_url_id", "url_id", unique=True),
)

# API keys and usage plans (API Gateway v1's model) metering HTTP API stages.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("value", String(128), nullable=False),
    Column("name", String(1024), nullable=True),
    Column("description", Text, nullable=True),
    Column("customer_id", String(256), nullable=True),
    Column("enabled", Boolean, nullable=False),
    Column("created_date", Float, nullable=False),
    Column("last_updated_date", Float, nullable=False),
    Column("tags", JSON, nullable=False, default=dict),
    # Every request to a route that requires a key looks the key up by its value.
    Index("ux_api_keys_value", "value", unique=True),
)

usage_plans = Table(
    "usage_plans",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("name", String(1024), nullable=False),
    Column("description", Text, nullable=True),
    Column("rate_limit", Float, nullable=True),
    Column("burst_limit", Integer, nullable=True),
    Column("quota_limit", Integer, nullable=True),
    Column("quota_period", String(8), nullable=True),
    Column("quota_offset", Integer, nullable=False, default=0),
    Column("tags", JSON, nullable=False, default=dict),
)

usage_plan_stages = Table(
    "usage_plan_stages",
    metadata,
    Column("plan_id", String(16), primary_key=True),
    Column("api_id", String(16), primary_key=True),
    Column("stage", String(128), primary_key=True),
    ForeignKeyConstraint(["plan_id"], ["usage_plans.id"], ondelete="CASCADE"),
)

usage_plan_keys = Table(
    "usage_plan_keys",
    metadata,
    Column("plan_id", String(16), primary_key=True),
    Column("key_id", String(16), primary_key=True),
    ForeignKeyConstraint(["plan_id"], ["usage_plans.id"], ondelete="CASCADE"),
    ForeignKeyConstraint(["key_id"], ["api_keys.id"], ondelete="CASCADE"),
    Index("ix_usage_plan_keys_key", "key_id"),
)

# Requests admitted per key, plan and UTC day (ISO date); written behind by the usage
# gate. No foreign keys: the store deletes a key's or plan's rows itself, and a late
# write for a pair that no longer exists is dropped rather than failing the batch.
api_key_usage = Table(
    "api_key_usage",
    metadata,
    Column("key_id", String(16), primary_key=True),
    Column("plan_id", String(16), primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("used", BigInteger, nullable=False),
    Index("ix_api_key_usage_plan", "plan_id", "day"),
)

# -- HTTP APIs (API Gateway v2, protocol HTTP) ----------------------------------------

apis = Table(
    "apis",
    metadata,
    Column("api_id", String(10), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("protocol_type", String(16), nullable=False),
    Column("description", String(1024), nullable=True),
    Column("route_selection_expression", String(256), nullable=False),
    Column("api_key_selection_expression", String(256), nullable=False),
    Column("cors", JSON(none_as_null=True), nullable=True),  # CorsConfiguration, wire form
    Column("disable_execute_api_endpoint", Boolean, nullable=False),
    Column("ip_address_type", String(16), nullable=False),
    Column("version", String(64), nullable=True),
    Column("tags", JSON, nullable=False),
    Column("created_date", String(40), nullable=False),
)

api_integrations = Table(
    "api_integrations",
    metadata,
    Column("api_id", String(10), primary_key=True),
    Column("integration_id", String(16), primary_key=True),
    Column("integration_type", String(16), nullable=False),
    Column("integration_uri", String(2048), nullable=False),
    Column("function_name", String(140), nullable=False),
    Column("qualifier", String(128), nullable=True),
    Column("payload_format_version", String(8), nullable=False),
    Column("timeout_ms", Integer, nullable=False),
    Column("description", String(1024), nullable=True),
    Column("integration_method", String(16), nullable=False),
    Column("connection_type", String(16), nullable=False),
    Column("api_gateway_managed", Boolean, nullable=False),
    ForeignKeyConstraint(["api_id"], ["apis.api_id"], ondelete="CASCADE"),
)

api_routes = Table(
    "api_routes",
    metadata,
    Column("api_id", String(10), primary_key=True),
    Column("route_id", String(16), primary_key=True),
    Column("route_key", String(1024), nullable=False),
    # The key without variable names: routes of one shape would match the same requests.
    Column("route_shape", String(1024), nullable=False),
    Column("integration_id", String(16), nullable=True),  # from target "integrations/{id}"
    Column("api_key_required", Boolean, nullable=False),
    Column("authorization_type", String(16), nullable=False),
    Column("operation_name", String(64), nullable=True),
    Column("api_gateway_managed", Boolean, nullable=False),
    ForeignKeyConstraint(["api_id"], ["apis.api_id"], ondelete="CASCADE"),
    # No route may point at an integration that is gone (deleting one in use is refused).
    ForeignKeyConstraint(
        ["api_id", "integration_id"],
        ["api_integrations.api_id", "api_integrations.integration_id"],
    ),
    Index("ux_api_routes_shape", "api_id", "route_shape", unique=True),
)

api_stages = Table(
    "api_stages",
    metadata,
    Column("api_id", String(10), primary_key=True),
    Column("stage_name", String(128), primary_key=True),
    Column("description", String(1024), nullable=True),
    Column("auto_deploy", Boolean, nullable=False),
    Column("stage_variables", JSON, nullable=False),
    Column("default_route_settings", JSON, nullable=False),
    Column("route_settings", JSON, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("api_gateway_managed", Boolean, nullable=False),
    Column("created_date", String(40), nullable=False),
    Column("last_updated_date", String(40), nullable=False),
    ForeignKeyConstraint(["api_id"], ["apis.api_id"], ondelete="CASCADE"),
)

# Resource-based policies (AddPermission/GetPolicy/RemovePermission): one document per
# function and qualifier ("$LATEST" for the unqualified function, a version or an alias),
# its statements in the order they were added. A function's go with it by FK cascade, an
# alias's when AliasStore deletes the alias.
function_policies = Table(
    "function_policies",
    metadata,
    Column("function_name", String(140), primary_key=True),
    Column("qualifier", String(128), primary_key=True),
    Column("statements", JSON, nullable=False),  # list of statement objects, wire form
    Column("revision_id", String(36), nullable=False),
    ForeignKeyConstraint(["function_name"], ["functions.name"], ondelete="CASCADE"),
)


# Layers: a layer is a name and the number its last version got (never reused, even
# after every version was deleted); each version is an immutable zip in the code store.
layers = Table(
    "layers",
    metadata,
    Column("name", String(140), primary_key=True),
    Column("last_version", Integer, nullable=False),
)

layer_versions = Table(
    "layer_versions",
    metadata,
    Column("layer_name", String(140), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("code_sha256", String(64), nullable=False, index=True),
    Column("code_size", BigInteger, nullable=False),
    Column("unzipped_size", BigInteger, nullable=False),
    Column("created_date", String(40), nullable=False),
    Column("description", String(256), nullable=False),
    Column("compatible_runtimes", JSON, nullable=False),
    Column("compatible_architectures", JSON, nullable=False),
    Column("license_info", String(512), nullable=True),
    # AddLayerVersionPermission's statements (stored and reported, as function policies)
    Column("statements", JSON, nullable=False),
    Column("policy_revision", String(36), nullable=True),  # None until a statement
    ForeignKeyConstraint(["layer_name"], ["layers.name"], ondelete="CASCADE"),
)

# Settings that belong to one qualifier (an alias or a version) of a function, keyed by
# (function_name, qualifier): they go when the alias or version goes (and with the
# function, by cascade).
QUALIFIER_SETTINGS = (
    event_invoke_configs,
    provisioned_concurrency,
    function_urls,
    function_policies,
)

# Ownership leases (0012): one owner per key ("schedule:<group>/<name>",
# "mapping:<uuid>"), so a schedule or a poller runs in one process of the installation;
# an owner renews before ``expires_ms`` or another process takes the key over.
leases = Table(
    "leases",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("owner", String(100), nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
)

# SQS-compatible queues (0011, nimbus.sqs). A queue's settable attributes are kept as
# SQS states them (strings); ``sequence`` is the last FIFO SequenceNumber handed out.
sqs_queues = Table(
    "sqs_queues",
    metadata,
    Column("name", String(80), primary_key=True),
    Column("fifo", Boolean, nullable=False),
    Column("attributes", JSON, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("modified_ms", BigInteger, nullable=False),
    Column("sequence", BigInteger, nullable=False),
    Column("purged_ms", BigInteger, nullable=True),
)

# One row per message until it is deleted, expires or moves to a dead-letter queue.
# ``visible_ms`` is when it may next be received (send time + delay, or the end of its
# visibility timeout); ``receipt`` is the token of its latest receive (None: never
# received). Receives walk (queue, visible_ms); ``id`` orders FIFO groups.
sqs_messages = Table(
    "sqs_messages",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("queue", String(80), nullable=False),
    Column("message_id", String(36), nullable=False),
    Column("body", Text, nullable=False),
    Column("md5_body", String(32), nullable=False),
    Column("message_attributes", JSON, nullable=True),  # BinaryValue as base64
    Column("md5_attributes", String(32), nullable=True),
    Column("system_attributes", JSON, nullable=True),  # AWSTraceHeader, DLQ source ARN
    Column("sent_ms", BigInteger, nullable=False),
    Column("visible_ms", BigInteger, nullable=False),
    Column("receive_count", Integer, nullable=False),
    Column("first_receive_ms", BigInteger, nullable=True),
    Column("receipt", String(32), nullable=True),
    Column("group_id", String(128), nullable=True),
    Column("dedup_id", String(128), nullable=True),
    Column("sequence_number", String(20), nullable=True),
    ForeignKeyConstraint(["queue"], ["sqs_queues.name"], ondelete="CASCADE"),
    Index("ix_sqs_messages_visible", "queue", "visible_ms"),
)

# FIFO deduplication: a MessageDeduplicationId seen in the last 5 minutes (per queue, or
# per message group with DeduplicationScope=messageGroup: ``scope`` is "" or the group).
sqs_dedup = Table(
    "sqs_dedup",
    metadata,
    Column("queue", String(80), primary_key=True),
    Column("scope", String(128), primary_key=True),
    Column("dedup_id", String(128), primary_key=True),
    Column("message_id", String(36), nullable=False),
    Column("sequence_number", String(20), nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    ForeignKeyConstraint(["queue"], ["sqs_queues.name"], ondelete="CASCADE"),
)

# EventBridge Scheduler (0012). A schedule is keyed by (group, name); "default" is a
# group every account has, so it has no row in schedule_groups. ``last_tick_ms`` is the
# last tick the runner claimed (a restart fires what came after it, at most once);
# ``pending_tick_ms`` a claimed tick whose event is not yet queued (queued again after a
# crash). ``target`` is the Target member as the API stored it.
schedule_groups = Table(
    "schedule_groups",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("modified_ms", BigInteger, nullable=False),
    Column("tags", JSON, nullable=False, default=dict),
)

schedules = Table(
    "schedules",
    metadata,
    Column("group_name", String(64), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("expression", String(256), nullable=False),
    Column("timezone", String(50), nullable=False),
    Column("start_ms", BigInteger, nullable=True),
    Column("end_ms", BigInteger, nullable=True),
    Column("description", Text, nullable=True),
    Column("state", String(10), nullable=False),
    Column("flexible_window_minutes", Integer, nullable=True),  # None: Mode OFF
    Column("action_after_completion", String(10), nullable=False),
    Column("kms_key_arn", Text, nullable=True),
    Column("target", JSON, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("modified_ms", BigInteger, nullable=False),
    Column("anchor_ms", BigInteger, nullable=False),
    Column("last_tick_ms", BigInteger, nullable=False),
    Column("pending_tick_ms", BigInteger, nullable=True),
    Index("schedules_by_state", "state"),
)

# Lambda event source mappings (0013): what a poller reads (an SQS queue of this nimbus or
# a broker URI) and which function it invokes. ``settings`` holds the mapping's options
# (BatchSize, FilterCriteria, retries...); ``revision`` grows with every change of them,
# so the process running the poller knows to restart it. No foreign key to functions: a
# mapping outlives its function, as on Lambda.
event_source_mappings = Table(
    "event_source_mappings",
    metadata,
    Column("uuid", String(36), primary_key=True),
    Column("function_name", String(140), nullable=False),
    Column("qualifier", String(128), nullable=True),
    Column("event_source_arn", String(1024), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("state", String(16), nullable=False),
    Column("state_reason", String(64), nullable=False),
    Column("last_processing_result", String(256), nullable=True),
    Column("settings", JSON, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("last_modified", Float, nullable=False),
    Index("event_source_mappings_by_function", "function_name"),
    Index("event_source_mappings_by_source", "event_source_arn"),
)

# SNS-compatible topics (0015, nimbus.sns). A topic's and a subscription's settable
# attributes are kept as SNS states them (strings). ``pending``: an http(s) subscription
# not yet confirmed, ``token`` the token its SubscribeURL carries.
sns_topics = Table(
    "sns_topics",
    metadata,
    Column("name", String(256), primary_key=True),
    Column("attributes", JSON, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
)

sns_subscriptions = Table(
    "sns_subscriptions",
    metadata,
    Column("arn", String(400), primary_key=True),
    Column("topic", String(256), nullable=False),
    Column("protocol", String(16), nullable=False),
    Column("endpoint", Text, nullable=False),
    Column("attributes", JSON, nullable=False),
    Column("pending", Boolean, nullable=False),
    Column("token", String(256), nullable=True),
    Column("created_ms", BigInteger, nullable=False),
    ForeignKeyConstraint(["topic"], ["sns_topics.name"], ondelete="CASCADE"),
    Index("ix_sns_subscriptions_topic", "topic", "arn"),
)

# The outbox of fan-out: one row per (published message, matching subscription), written
# in Publish's transaction and deleted once delivered, so an accepted message survives
# any crash. ``body`` is what the endpoint gets; ``extra`` its message attributes or
# headers and the subscription's redrive and delivery policies. ``due_ms`` is when it is
# next tried (NULL: retries exhausted with nowhere to redrive it; ``error`` says why);
# ``lease`` the token of the attempt in flight.
sns_deliveries = Table(
    "sns_deliveries",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("message_id", String(36), nullable=False),
    Column("topic_arn", String(400), nullable=False),
    Column("subscription_arn", String(400), nullable=False),
    Column("protocol", String(16), nullable=False),
    Column("endpoint", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("extra", JSON, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("due_ms", BigInteger, nullable=True),
    Column("lease", String(32), nullable=True),
    Column("created_ms", BigInteger, nullable=False),
    Column("error", Text, nullable=True),
    Index("ix_sns_deliveries_due", "due_ms"),
)
