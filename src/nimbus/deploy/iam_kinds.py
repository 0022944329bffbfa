"""IAM roles: accepted and skipped. nimbus has one account and no IAM, so a role's
policies are not enforced (README: "Differences from Lambda"); its ARN is made up so
that functions and schedules referring to it get a well-formed RoleArn."""

from __future__ import annotations

from typing import Any

from nimbus.deploy.kinds import Context, Kind, Made, register


@register
class Role(Kind):
    type_name = "AWS::IAM::Role"
    properties = frozenset({
        "AssumeRolePolicyDocument", "ManagedPolicyArns", "Policies", "Path", "RoleName",
        "Description", "MaxSessionDuration", "PermissionsBoundary", "Tags",
    })  # fmt: skip
    replace_on = frozenset({"RoleName"})

    def create(self, ctx: Context, logical_id: str, props: dict[str, Any]) -> Made:
        name = str(props.get("RoleName") or ctx.name(logical_id))
        ctx.note(f"{logical_id}: IAM role skipped (functions assume no role in nimbus; "
                 "its principals are configured apart)")  # fmt: skip
        return Made(name, {"Arn": f"arn:aws:iam::{ctx.account}:role/{name}", "RoleId": name})

    def update(
        self, ctx: Context, logical_id: str, made: Made, props: dict[str, Any],
        old: dict[str, Any],
    ) -> Made:  # fmt: skip
        return made

    def delete(self, ctx: Context, made: Made) -> None:
        return None
