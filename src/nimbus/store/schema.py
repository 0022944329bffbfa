"""The metadata schema, in SQLAlchemy Core; Alembic migrations create and evolve it.

Any change here needs a new revision under ``store/migrations/versions``.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
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
    Column("request_id", String(36), nullable=False, index=True),
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
