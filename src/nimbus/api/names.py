"""Function names as Lambda accepts them: a name, a partial ARN or a full ARN, each
optionally ending in ``:qualifier`` (a version or an alias).

Lambda's operations check the name against one of two shapes of its service model, and
report a violation with the shape's pattern and length: ``NAMESPACED`` (GetFunction,
DeleteFunction, Invoke, policies, event invoke configs...) and ``FUNCTION_NAME``
(CreateFunction, the updates, PublishVersion, aliases, concurrency...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nimbus.api.wire import Params
from nimbus.config import Config
from nimbus.errors import AccessDenied, InvalidParameterValue, ResourceNotFound

ALIAS_PATTERN = r"(?!^[0-9]+$)([a-zA-Z0-9-_]+)"
# The service model's NumericLatestPublishedOrAliasQualifier.
QUALIFIER_PATTERN = r"\$(LATEST(\.PUBLISHED)?)|[a-zA-Z0-9-_$]+"
_REGION = r"((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?"
_FUNCTION_REF = re.compile(
    r"(?:arn:(?P<partition>aws[a-zA-Z-]*)?:lambda:)?"
    r"(?:(?P<region>(?:eusc-)?[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d):)?"
    r"(?:(?P<account>\d{12}):)?"
    r"(?:function:)?"
    r"(?P<name>[a-zA-Z0-9-_.]+)"
    r"(?::(?P<qualifier>\$LATEST(?:\.PUBLISHED)?|[a-zA-Z0-9-_]+))?"
)


@dataclass(frozen=True)
class NameShape:
    """A FunctionName member of the service model: its pattern and maximum length."""

    pattern: str
    max_len: int


NAMESPACED = NameShape(
    r"(arn:(aws[a-zA-Z-]*)?:lambda:)?" + _REGION + r"(\d{12}:)?(function:)?"
    r"([a-zA-Z0-9-_\.]+)(:(\$LATEST(\.PUBLISHED)?|[a-zA-Z0-9-_]+))?",
    256,
)
FUNCTION_NAME = NameShape(
    r"(arn:(aws[a-zA-Z-]*)?:lambda:)?" + _REGION + r"(\d{12}:)?(function:)?"
    r"([a-zA-Z0-9-_]+)(:(\$LATEST|[a-zA-Z0-9-_]+))?",
    140,
)


class ForeignAccount(AccessDenied):
    """A function ARN of another account: Lambda answers 403 with no message at all."""

    def body(self) -> dict[str, object]:
        return {"Message": None}


@dataclass(frozen=True)
class FunctionRef:
    name: str
    qualifier: str | None


def parse_function_ref(
    raw: str, config: Config, qualifier: str | None = None, shape: NameShape = NAMESPACED
) -> FunctionRef:
    """Resolve what the client named; ``qualifier`` is the Qualifier query parameter."""
    qualifier = qualifier or None  # an empty Qualifier names nothing
    params = Params({"FunctionName": raw, "Qualifier": qualifier})
    params.string("FunctionName", min_len=1, max_len=shape.max_len, pattern=shape.pattern)
    params.string("Qualifier", min_len=1, max_len=128, pattern=QUALIFIER_PATTERN)
    params.check()
    match = _FUNCTION_REF.fullmatch(raw)
    assert match is not None  # the shape's pattern accepts no more than this
    region, account = match["region"], match["account"]
    if region and region != config.region:
        raise ResourceNotFound(
            f"Functions from '{region}' are not reachable in this region ('{config.region}')"
        )
    if account and account != config.account_id:
        raise ForeignAccount("")
    derived = match["qualifier"]
    if qualifier is not None:
        if derived is not None and derived != qualifier:
            raise InvalidParameterValue(
                "The derived qualifier from the function name does not match the specified "
                "qualifier."
            )
        derived = qualifier
    return FunctionRef(match["name"], derived)


def unqualified(raw: str, config: Config, shape: NameShape = FUNCTION_NAME) -> str:
    """For operations that take a function, never a version (e.g. PublishVersion)."""
    ref = parse_function_ref(raw, config, shape=shape)
    if ref.qualifier is not None:
        raise InvalidParameterValue(
            "This operation is permitted on Lambda functions only. Aliases and versions do "
            "not support this operation. Please specify either a function name or an "
            "unqualified function ARN."
        )
    return ref.name
