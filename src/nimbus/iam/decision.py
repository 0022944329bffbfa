"""Whether a principal may do an action on a resource: AWS's same-account evaluation.

An explicit Deny in any policy that applies wins; else an Allow in the principal's
identity policies, or in the resource's resource-based policy (AddPermission's
statements) naming the principal, allows; else the default is deny. The admin (root)
may do anything. Refusals carry IAM's wording, e.g. ``User: arn:aws:iam::000000000000:
user/ci is not authorized to perform: lambda:InvokeFunction on resource: arn:aws:lambda:
us-east-1:000000000000:function:f because no identity-based policy allows the
lambda:InvokeFunction action``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from nimbus.errors import AccessDenied
from nimbus.iam.policy import Policy
from nimbus.iam.principals import Principal


@dataclass(frozen=True)
class Access:
    """What a request does: its IAM action, the resource it acts on, its condition keys
    (lower-case names), and for a function resource which policy to consult."""

    action: str
    resource: str
    context: Mapping[str, str] = field(default_factory=dict)
    function: tuple[str, str] | None = None  # (name, qualifier or $LATEST)


ResourcePolicy = Callable[[str, str], Awaitable[Policy | None]]
"""Looks up the resource-based policy of (function, qualifier), None if it has none."""


async def authorize(
    principal: Principal, access: Access, resource_policy: ResourcePolicy | None
) -> None:
    """Return if ``principal`` may do ``access``; raise AccessDenied otherwise."""
    identity = principal.identity_decision(access.action, access.resource, access.context)
    if identity == "Deny":
        raise denied(principal, access, "with an explicit deny in an identity-based policy")
    if identity == "Allow":
        return
    if access.function is not None and resource_policy is not None:
        policy = await resource_policy(*access.function)
        if policy is not None:
            effect = policy.evaluate(access.action, access.resource, access.context, principal.arn)
            if effect == "Deny":
                raise denied(principal, access, "with an explicit deny in a resource-based policy")
            if effect == "Allow":
                return
    raise denied(
        principal, access, f"because no identity-based policy allows the {access.action} action"
    )


def denied(principal: Principal, access: Access, reason: str) -> AccessDenied:
    return AccessDenied(
        f"User: {principal.arn} is not authorized to perform: {access.action} on resource: "
        f"{access.resource} {reason}"
    )
