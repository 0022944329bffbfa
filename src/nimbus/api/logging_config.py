"""A function's ``LoggingConfig`` on CreateFunction and UpdateFunctionConfiguration:
validated, filled in and reported as Lambda does.

- ``LogFormat`` ``Text`` (the default) or ``JSON``; ``ApplicationLogLevel`` (TRACE ...
  FATAL) and ``SystemLogLevel`` (DEBUG, INFO, WARN) only with JSON, where both default
  to INFO; ``LogGroup`` defaults to ``/aws/lambda/<name>``.
- An update changes only the members it names; one that sets LogFormat sets the levels
  too (INFO unless given, for JSON; none for Text).
- Levels with ``LogFormat: Text`` in the same request are refused with Lambda's message.

What is stored, and how it is read back, is ``nimbus.observe.log_config``.
"""

from __future__ import annotations

from typing import Any

from nimbus.api.wire import Params
from nimbus.errors import InvalidParameterValue
from nimbus.models import FunctionVersion
from nimbus.observe.log_config import (
    APPLICATION_LEVELS,
    DEFAULT_LEVEL,
    FORMATS,
    KEYS,
    LEVEL_MEMBERS,
    SYSTEM_LEVELS,
    config_of,
)

LOG_GROUP_PATTERN = r"[\.\-_/#A-Za-z0-9]+"
TEXT_WITH_LEVEL = (
    'LogLevel is not supported when LogFormat is set to "Text". Remove LogLevel from your '
    'request or change the LogFormat to "JSON" and try again.'
)


def parse(params: Params) -> dict[str, Any]:
    """The changes to a version's ``extra`` that the request's LoggingConfig makes; the
    model's constraint violations are added to ``params`` (the caller checks them, then
    ``check`` the changes)."""
    config = params.nested("LoggingConfig")
    log_format = _enum(config, "LogFormat", FORMATS)
    levels = {
        "ApplicationLogLevel": _enum(config, "ApplicationLogLevel", APPLICATION_LEVELS),
        "SystemLogLevel": _enum(config, "SystemLogLevel", SYSTEM_LEVELS),
    }
    group = config.string("LogGroup", min_len=1, max_len=512, pattern=LOG_GROUP_PATTERN)
    changes: dict[str, Any] = {}
    if log_format is not None:
        changes[KEYS["LogFormat"]] = log_format
        default = DEFAULT_LEVEL if log_format == "JSON" else None
        for member in LEVEL_MEMBERS:
            # With Text a level given stays here for ``check`` to refuse.
            changes[KEYS[member]] = levels[member] or default
    else:
        changes.update((KEYS[m], level) for m, level in levels.items() if level is not None)
    if group is not None:
        changes[KEYS["LogGroup"]] = group
    return changes


def check(extra_changes: dict[str, Any]) -> None:
    """Refuse levels in a request that sets LogFormat Text, with Lambda's message."""
    if extra_changes.get(KEYS["LogFormat"]) == "Text" and any(
        extra_changes.get(KEYS[member]) is not None for member in LEVEL_MEMBERS
    ):
        raise InvalidParameterValue(TEXT_WITH_LEVEL)


def render(version: FunctionVersion) -> dict[str, str]:
    """``LoggingConfig`` of FunctionConfiguration."""
    return config_of(version.extra, version.function_name).structure()


def _enum(params: Params, member: str, allowed: tuple[str, ...]) -> str | None:
    value = params.string(member)
    if value is not None and value not in allowed:
        params._fail(value, member, f"satisfy enum value set: [{', '.join(allowed)}]")
        return None
    return value
