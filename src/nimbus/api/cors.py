"""Checking the CORS configuration of a control-plane request (function URLs, HTTP
APIs), against Lambda's ``Cors`` shape or API Gateway v2's ``CorsConfiguration``; the
gateway applies what was stored (``nimbus.gateway.cors``)."""

from __future__ import annotations

from typing import Any, NoReturn

from nimbus.api.wire import Params
from nimbus.errors import BadRequest, InvalidParameterValue
from nimbus.gateway.cors import pascal

_MEMBERS = (
    "AllowCredentials",
    "AllowHeaders",
    "AllowMethods",
    "AllowOrigins",
    "ExposeHeaders",
    "MaxAge",
)
# Methods a Lambda Cors configuration may name (the model caps them at 6 characters).
_LAMBDA_METHODS = frozenset({"GET", "PUT", "HEAD", "POST", "PATCH", "DELETE", "*"})
_VALID_METHODS = _LAMBDA_METHODS | {"OPTIONS"}


def validate_cors(config: Any, *, api: str = "lambda") -> dict[str, Any] | None:
    """Check a CORS configuration from a control-plane request; return it cleaned.

    ``api="lambda"``: Lambda's ``Cors`` (CreateFunctionUrlConfig), model constraints
    raised as ``ValidationException``, meaning as ``InvalidParameterValueException``.
    ``api="apigatewayv2"``: the ``CorsConfiguration`` of an HTTP API (camelCase on the
    wire), raised as ``BadRequestException``. The result keeps the caller's spelling and
    drops null members; None stays None.
    """
    if config is None:
        return None
    if api not in ("lambda", "apigatewayv2"):
        raise ValueError(f"unknown api {api!r}")
    lam = api == "lambda"
    if not isinstance(config, dict):
        _bad(lam, "Cors must be an object with AllowOrigins, AllowMethods, ... members.")
    cleaned = {k: v for k, v in config.items() if v is not None}
    unknown = sorted(k for k in cleaned if k[:1].upper() + k[1:] not in _MEMBERS)
    if unknown:
        _bad(lam, f"Unknown Cors member(s) {', '.join(unknown)}; valid: {', '.join(_MEMBERS)}.")
    c = pascal(cleaned)
    if lam:
        _check_lambda_model(c)
    else:
        _check_v2_model(c)
    methods = [m.upper() for m in c.get("AllowMethods") or []]
    valid = _LAMBDA_METHODS if lam else _VALID_METHODS
    wrong = [m for m in methods if m not in valid]
    if wrong:
        _bad(
            lam,
            f"Cors AllowMethods has {', '.join(wrong)}; allowed methods are "
            f"{', '.join(sorted(valid))}.",
        )
    if not lam and c.get("AllowCredentials") and "*" in (c.get("AllowOrigins") or []):
        _bad(lam, "allowCredentials cannot be true when allowOrigins includes '*'.")
    return cleaned


def _bad(lam: bool, message: str) -> NoReturn:
    raise (InvalidParameterValue if lam else BadRequest)(message)


def _check_lambda_model(c: dict[str, Any]) -> None:
    # The Cors shape of Lambda's service model (botocore lambda 2015-03-31).
    params = Params(c, prefix="cors.")
    params.boolean("AllowCredentials")
    params.integer("MaxAge", minimum=0, maximum=86400)
    limits = {
        "AllowHeaders": (100, 0, 1024),
        "AllowMethods": (6, 0, 6),
        "AllowOrigins": (100, 1, 253),
        "ExposeHeaders": (100, 0, 1024),
    }
    for member, (max_items, min_len, max_len) in limits.items():
        items = params.sequence(member, max_items=max_items)
        for item in items or []:
            params.string(member, min_len=min_len, max_len=max_len, value=item)
    params.check()


def _check_v2_model(c: dict[str, Any]) -> None:
    problems: list[str] = []
    if "AllowCredentials" in c and not isinstance(c["AllowCredentials"], bool):
        problems.append("allowCredentials must be a boolean")
    max_age = c.get("MaxAge")
    if max_age is not None and (
        isinstance(max_age, bool) or not isinstance(max_age, int) or not -1 <= max_age <= 86400
    ):
        problems.append("maxAge must be an integer from -1 to 86400")
    for member in ("AllowHeaders", "AllowMethods", "AllowOrigins", "ExposeHeaders"):
        items = c.get(member)
        name = member[:1].lower() + member[1:]
        if items is None:
            continue
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            problems.append(f"{name} must be a list of strings")
        elif member == "AllowMethods" and not all(1 <= len(i) <= 64 for i in items):
            problems.append("allowMethods items must be 1 to 64 characters long")
    if problems:
        raise BadRequest("Invalid CORS configuration: " + "; ".join(problems) + ".")
