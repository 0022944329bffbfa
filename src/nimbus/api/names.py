"""Function names as Lambda accepts them: a name, a partial ARN or a full ARN, each
optionally ending in ``:qualifier`` (a version or an alias)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from nimbus.config import Config
from nimbus.errors import InvalidParameterValue, ResourceNotFound, ValidationError

ALIAS_PATTERN = r"(?!^[0-9]+$)([a-zA-Z0-9-_]+)"
QUALIFIER_PATTERN = r"(|[a-zA-Z0-9$_-]+)"
_FUNCTION_REF = re.compile(
    r"(?:arn:(?P<partition>aws[a-zA-Z-]*)?:lambda:)?"
    r"(?:(?P<region>[a-z]{2}(?:-gov)?-[a-z]+-\d):)?"
    r"(?:(?P<account>\d{12}):)?"
    r"(?:function:)?"
    r"(?P<name>[a-zA-Z0-9-_]+)"
    r"(?::(?P<qualifier>\$LATEST|[a-zA-Z0-9-_]+))?"
)
_FULL_PATTERN = (
    r"(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\d{1}:)?(\d{12}:)?(function:)?"
    r"([a-zA-Z0-9-_]+)(:(\$LATEST|[a-zA-Z0-9-_]+))?"
)


@dataclass(frozen=True)
class FunctionRef:
    name: str
    qualifier: str | None


def parse_function_ref(raw: str, config: Config, qualifier: str | None = None) -> FunctionRef:
    """Resolve what the client named; ``qualifier`` is the Qualifier query parameter."""
    match = _FUNCTION_REF.fullmatch(raw)
    if match is None or len(raw) > 256:
        raise ValidationError(
            f"1 validation error detected: Value '{raw}' at 'functionName' failed to satisfy "
            f"constraint: Member must satisfy regular expression pattern: {_FULL_PATTERN}"
        )
    if len(match["name"]) > 64:
        raise ValidationError(
            f"1 validation error detected: Value '{raw}' at 'functionName' failed to satisfy "
            "constraint: Member must have length less than or equal to 64 (the name part)"
        )
    region, account = match["region"], match["account"]
    if (region and region != config.region) or (account and account != config.account_id):
        raise ResourceNotFound(
            f"Function not found: {raw} (this nimbus serves region {config.region}, "
            f"account {config.account_id})"
        )
    derived = match["qualifier"]
    if qualifier is not None:
        if not re.fullmatch(QUALIFIER_PATTERN, qualifier) or len(qualifier) > 128:
            raise ValidationError(
                f"1 validation error detected: Value '{qualifier}' at 'qualifier' failed to "
                f"satisfy constraint: Member must satisfy regular expression pattern: "
                f"{QUALIFIER_PATTERN}"
            )
        if derived is not None and derived != qualifier:
            raise InvalidParameterValue(
                "The derived qualifier from the function name does not match the specified "
                "qualifier."
            )
        derived = qualifier or derived
    return FunctionRef(match["name"], derived or None)


def unqualified(raw: str, config: Config) -> str:
    """For operations that take a function, never a version (e.g. PublishVersion)."""
    ref = parse_function_ref(raw, config)
    if ref.qualifier is not None:
        raise InvalidParameterValue(
            f"This operation does not accept a qualified function name ({raw}); pass the "
            "function name without ':" + ref.qualifier + "'."
        )
    return ref.name
