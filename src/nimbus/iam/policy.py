"""IAM-style policy documents: parsing them and evaluating one request against them.

A document is what IAM takes::

    {"Version": "2012-10-17",
     "Statement": [{"Effect": "Allow" | "Deny",
                    "Action" | "NotAction": "lambda:InvokeFunction" | [...],
                    "Resource" | "NotResource": "arn:aws:lambda:*:*:function:app-*" | [...],
                    "Principal": ...,            # resource-based policies only
                    "Condition": {"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}}}]}

Actions match case-insensitively, resources case-sensitively; both take ``*`` and ``?``
wildcards, as in IAM. ``evaluate`` says whether the statements that apply deny, allow, or
say nothing; the caller combines identity and resource policies (``decision.py``).

Conditions: the string, ARN and Bool operators (``StringEquals``, ``StringNotEquals``,
``StringLike``, ``StringNotLike``, ``ArnEquals``, ``ArnLike``, ``ArnNotEquals``,
``ArnNotLike``, ``Bool``) over the keys the request carries. An identity policy using
another operator is refused when it is loaded; a resource policy's statement with one
never applies (it cannot grant what nimbus cannot check).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Effect = Literal["Allow", "Deny"]

CONDITION_OPERATORS = frozenset(
    {
        "StringEquals",
        "StringNotEquals",
        "StringLike",
        "StringNotLike",
        "ArnEquals",
        "ArnLike",
        "ArnNotEquals",
        "ArnNotLike",
        "Bool",
    }
)
_STATEMENT_KEYS = frozenset(
    {
        "Sid",
        "Effect",
        "Action",
        "NotAction",
        "Resource",
        "NotResource",
        "Principal",
        "NotPrincipal",
        "Condition",
    }
)


class PolicyError(ValueError):
    """A policy document that cannot be used; the message says which part and why."""


@dataclass(frozen=True)
class Statement:
    effect: Effect
    actions: tuple[str, ...]
    not_actions: bool
    resources: tuple[str, ...]
    not_resources: bool
    principals: tuple[str, ...] | None  # resource policies: "*" or ARNs / service names
    conditions: tuple[tuple[str, str, tuple[str, ...]], ...]  # (operator, key, values)

    def applies(
        self, action: str, resource: str, context: Mapping[str, str], principal: str | None
    ) -> bool:
        """Whether this statement covers the request (whatever its effect)."""
        if _any_match(self.actions, action, fold=True) == self.not_actions:
            return False
        if _any_match(self.resources, resource, fold=False) == self.not_resources:
            return False
        if self.principals is not None and (
            principal is None or not any(p in ("*", principal) for p in self.principals)
        ):
            return False
        return all(_condition(op, key, values, context) for op, key, values in self.conditions)


@dataclass(frozen=True)
class Policy:
    """A parsed policy document."""

    statements: tuple[Statement, ...]

    @classmethod
    def parse(
        cls, document: Any, *, resource_policy: bool = False, lenient: bool = False
    ) -> Policy:
        """Parse a document (a dict, or its JSON already decoded).

        ``resource_policy``: statements name a ``Principal``. ``lenient``: a statement
        nimbus cannot evaluate is dropped instead of refused (stored resource policies,
        whose statements came from AddPermission and may carry other conditions)."""
        if not isinstance(document, dict):
            raise PolicyError("a policy document must be a JSON object with a Statement")
        raw = document.get("Statement")
        if isinstance(raw, dict):
            raw = [raw]
        if not isinstance(raw, list) or not raw:
            raise PolicyError("a policy document needs a Statement: an object or a list of them")
        statements = []
        for index, item in enumerate(raw):
            try:
                statements.append(_statement(item, resource_policy))
            except PolicyError as exc:
                if not lenient:
                    raise PolicyError(f"Statement[{index}]: {exc}") from None
        return cls(tuple(statements))

    def evaluate(
        self,
        action: str,
        resource: str,
        context: Mapping[str, str] | None = None,
        principal: str | None = None,
    ) -> Effect | None:
        """ "Deny" if a Deny statement applies, else "Allow" if an Allow does, else None."""
        found: Effect | None = None
        for statement in self.statements:
            if statement.applies(action, resource, context or {}, principal):
                if statement.effect == "Deny":
                    return "Deny"
                found = "Allow"
        return found


def resource_policy_of(statements: list[dict[str, Any]]) -> Policy | None:
    """A function's stored resource-based policy (AddPermission's statements), as far as
    nimbus can evaluate it; None: none of its statements can grant anything."""
    try:
        return Policy.parse({"Statement": statements}, resource_policy=True, lenient=True)
    except PolicyError:
        return None


def _statement(item: Any, resource_policy: bool) -> Statement:
    if not isinstance(item, dict):
        raise PolicyError("a statement must be a JSON object")
    unknown = set(item) - _STATEMENT_KEYS
    if unknown:
        raise PolicyError(f"unknown element(s) {', '.join(sorted(unknown))}")
    effect = item.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise PolicyError(f'Effect must be "Allow" or "Deny", not {effect!r}')
    actions, not_actions = _pair(item, "Action", "NotAction")
    for action in actions:
        if action != "*" and ":" not in action:
            raise PolicyError(
                f"action {action!r} must be service:Action (lambda:InvokeFunction) or *"
            )
    resources, not_resources = _pair(item, "Resource", "NotResource")
    principals: tuple[str, ...] | None = None
    if "NotPrincipal" in item:
        raise PolicyError("NotPrincipal is not supported")
    if resource_policy:
        principals = _principals(item.get("Principal"))
    elif "Principal" in item:
        raise PolicyError("an identity policy's statements have no Principal")
    return Statement(
        effect,
        actions,
        not_actions,
        resources,
        not_resources,
        principals,
        _conditions(item.get("Condition")),
    )


def _pair(item: dict[str, Any], name: str, negated: str) -> tuple[tuple[str, ...], bool]:
    if (name in item) == (negated in item):
        raise PolicyError(f"give exactly one of {name} and {negated}")
    key = name if name in item else negated
    return _strings(item[key], key), key == negated


def _strings(value: Any, where: str) -> tuple[str, ...]:
    values = [value] if isinstance(value, str) else value
    if (
        not isinstance(values, list)
        or not values
        or not all(isinstance(v, str) and v for v in values)
    ):
        raise PolicyError(f"{where} must be a non-empty string or list of strings")
    return tuple(values)


def _principals(value: Any) -> tuple[str, ...]:
    if value == "*":
        return ("*",)
    if not isinstance(value, dict) or not value:
        raise PolicyError('Principal must be "*" or {"AWS": ..., "Service": ...}')
    found: list[str] = []
    for kind, names in value.items():
        if kind not in ("AWS", "Service"):
            raise PolicyError(f"unsupported principal type {kind!r}")
        found.extend(_strings(names, f"Principal.{kind}"))
    return tuple(found)


def _conditions(value: Any) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise PolicyError("Condition must be an object of operators")
    found = []
    for operator, block in value.items():
        if operator not in CONDITION_OPERATORS:
            raise PolicyError(
                f"unsupported condition operator {operator!r}; nimbus evaluates "
                f"{', '.join(sorted(CONDITION_OPERATORS))}"
            )
        if not isinstance(block, dict) or not block:
            raise PolicyError(f"Condition.{operator} must be an object of key: value(s)")
        for key, values in block.items():
            if isinstance(values, bool):
                values = "true" if values else "false"
            found.append((operator, key.lower(), _strings(values, f"Condition.{operator}")))
    return tuple(found)


def _condition(
    operator: str, key: str, values: tuple[str, ...], context: Mapping[str, str]
) -> bool:
    # Condition keys are case-insensitive (aws:SourceArn, AWS:SourceArn): the context's
    # keys are given lower-case.
    actual = context.get(key)
    negated = "Not" in operator
    if actual is None:
        return negated  # a missing key matches only the negated operators, as in IAM
    if operator == "Bool":
        matched = actual.lower() in (v.lower() for v in values)
    elif operator.endswith("Like") or operator.startswith("Arn"):
        matched = _any_match(values, actual, fold=False)
    else:
        matched = actual in values
    return matched != negated


def _any_match(patterns: tuple[str, ...], value: str, *, fold: bool) -> bool:
    return any(_pattern(p, fold).fullmatch(value) for p in patterns)


@functools.lru_cache(maxsize=4096)
def _pattern(pattern: str, fold: bool) -> re.Pattern[str]:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(regex, re.IGNORECASE | re.DOTALL if fold else re.DOTALL)
