"""A function's LoggingConfig as Lambda applies it: the format of its logs (``Text`` or
``JSON``), the levels that filter them (JSON only) and its log group.

The control plane stores what requests set member by member in the version's ``extra``,
under ``LoggingConfig.<Member>`` keys (``KEYS``): an UpdateFunctionConfiguration then
changes only the members it names, as Lambda does, while a request that sets LogFormat
sets the levels with it (JSON's defaults, or none for Text). Versions stored before
LoggingConfig took effect hold the structure as it was given under ``LoggingConfig``;
the member keys win over it.

Filtering follows Lambda's log-level filtering: a record is kept when its level is at
least the configured one. A line of the function's output is a record of the level its
JSON object names under ``"level"``; any other line (``print``, text, JSON without a
level) is an INFO record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FORMATS = ("JSON", "Text")
APPLICATION_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
SYSTEM_LEVELS = ("DEBUG", "INFO", "WARN")
DEFAULT_LEVEL = "INFO"  # both levels, when the format is JSON and a level is not given
MEMBERS = ("LogFormat", "ApplicationLogLevel", "SystemLogLevel", "LogGroup")
LEVEL_MEMBERS = ("ApplicationLogLevel", "SystemLogLevel")
LEGACY_KEY = "LoggingConfig"
KEYS = {member: f"{LEGACY_KEY}.{member}" for member in MEMBERS}
_FORMAT_KEY = KEYS["LogFormat"]

# Severity of a level name, as Lambda's levels and as runtimes write them (Python's
# logging says WARNING and CRITICAL). Unknown names count as INFO.
SEVERITY = {
    "TRACE": 0,
    "DEBUG": 1,
    "INFO": 2,
    "WARN": 3,
    "WARNING": 3,
    "ERROR": 4,
    "FATAL": 5,
    "CRITICAL": 5,
}
INFO = SEVERITY["INFO"]


@dataclass(frozen=True)
class LogConfig:
    log_format: str  # "Text" or "JSON"
    log_group: str
    application_level: str | None = None  # JSON only
    system_level: str | None = None  # JSON only

    @property
    def json(self) -> bool:
        return self.log_format == "JSON"

    def structure(self) -> dict[str, str]:
        """As FunctionConfiguration shows it: the levels only with JSON."""
        body = {"LogFormat": self.log_format}
        if self.application_level is not None:
            body["ApplicationLogLevel"] = self.application_level
        if self.system_level is not None:
            body["SystemLogLevel"] = self.system_level
        body["LogGroup"] = self.log_group
        return body


def default_group(function_name: str) -> str:
    return f"/aws/lambda/{function_name}"


def is_json(extra: Mapping[str, Any]) -> bool:
    """Whether a version logs in JSON: on the invoke path, so a dict lookup or two."""
    log_format = extra.get(_FORMAT_KEY)
    if log_format is None:
        legacy = extra.get(LEGACY_KEY)
        if isinstance(legacy, dict):
            log_format = legacy.get("LogFormat")
    return log_format == "JSON"


def config_of(extra: Mapping[str, Any], function_name: str) -> LogConfig:
    """The effective LoggingConfig of a version, from its stored ``extra``."""
    legacy = extra.get(LEGACY_KEY)
    members: dict[str, Any] = dict(legacy) if isinstance(legacy, dict) else {}
    for member, key in KEYS.items():
        if key in extra:
            members[member] = extra[key]
    group = members.get("LogGroup") or default_group(function_name)
    if members.get("LogFormat") != "JSON":
        return LogConfig("Text", group)
    return LogConfig(
        "JSON",
        group,
        members.get("ApplicationLogLevel") or DEFAULT_LEVEL,
        members.get("SystemLogLevel") or DEFAULT_LEVEL,
    )
