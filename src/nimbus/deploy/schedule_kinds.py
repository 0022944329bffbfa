"""Schedules: ``AWS::Scheduler::Schedule``, and ``AWS::Events::Rule`` with a
``ScheduleExpression`` (what SAM's ``Schedule`` event makes), both as EventBridge Scheduler
schedules through boto3's ``scheduler`` client.

A rule's target gets its ``Input`` (``{}`` without one), as a Scheduler target does, not
EventBridge's "Scheduled Event" envelope; rules with an ``EventPattern`` are refused (nimbus
has no event bus)."""

from __future__ import annotations

from typing import Any

from nimbus.deploy.kinds import Context, Kind, Made, ignore_missing, register

_TARGET_KEYS = frozenset({"Arn", "RoleArn", "Input", "RetryPolicy", "DeadLetterConfig"})
_OPTIONAL = ("ScheduleExpressionTimezone", "State", "StartDate", "EndDate", "Description",
             "ActionAfterCompletion")  # fmt: skip


def _scheduler(ctx: Context) -> Any:
    return ctx.client("scheduler")


def _arn(ctx: Context, group: str, name: str) -> str:
    return f"arn:aws:scheduler:{ctx.region}:{ctx.account}:schedule/{group}/{name}"


@register
class Schedule(Kind):
    type_name = "AWS::Scheduler::Schedule"
    starts_events = True
    properties = frozenset({
        "Name", "GroupName", "ScheduleExpression", "FlexibleTimeWindow", "Target",
        *_OPTIONAL,
    })  # fmt: skip
    required = frozenset({"ScheduleExpression", "FlexibleTimeWindow", "Target"})
    replace_on = frozenset({"Name", "GroupName"})

    def check(self, props: dict[str, Any]) -> list[tuple[str | None, str]]:
        target = props.get("Target")
        extra = sorted(set(target) - _TARGET_KEYS) if isinstance(target, dict) else []
        return [("Target", f"target property {k} is not supported (nimbus schedules invoke "
                           "functions)") for k in extra]  # fmt: skip

    def _args(self, props: dict[str, Any]) -> dict[str, Any]:
        args = {k: props[k] for k in ("ScheduleExpression", "FlexibleTimeWindow", "Target")}
        args |= {k: props[k] for k in _OPTIONAL if k in props}
        return args

    def create(self, ctx: Context, logical_id: str, props: dict[str, Any]) -> Made:
        name, group = props.get("Name") or ctx.name(logical_id), props.get("GroupName", "default")
        _scheduler(ctx).create_schedule(Name=name, GroupName=group, **self._args(props))
        return Made(f"{group}/{name}", {"Arn": _arn(ctx, group, name)})

    def update(
        self, ctx: Context, logical_id: str, made: Made, props: dict[str, Any],
        old: dict[str, Any],
    ) -> Made:  # fmt: skip
        group, _, name = made.physical_id.partition("/")
        _scheduler(ctx).update_schedule(Name=name, GroupName=group, **self._args(props))
        return made

    def delete(self, ctx: Context, made: Made) -> None:
        group, _, name = made.physical_id.partition("/")
        ignore_missing(_scheduler(ctx).delete_schedule, Name=name, GroupName=group)


@register
class Rule(Kind):
    type_name = "AWS::Events::Rule"
    starts_events = True
    properties = frozenset({
        "Name", "Description", "ScheduleExpression", "State", "Targets", "EventPattern",
        "EventBusName", "RoleArn",
    })  # fmt: skip
    required = frozenset({"ScheduleExpression", "Targets"})
    replace_on = frozenset({"Name"})

    def check(self, props: dict[str, Any]) -> list[tuple[str | None, str]]:
        found: list[tuple[str | None, str]] = []
        if "EventPattern" in props:
            found.append(("EventPattern", "rules with an EventPattern are not supported (nimbus "
                          "has no event bus): only ScheduleExpression rules"))  # fmt: skip
        if props.get("EventBusName", "default") != "default":
            found.append(("EventBusName", "only the default event bus (schedules) is supported"))
        targets = props.get("Targets")
        if isinstance(targets, list):
            if len(targets) != 1:
                found.append(("Targets", "give exactly one target (a function) per rule"))
            for target in targets:
                extra = sorted(set(target) - {"Arn", "Id", "Input", "RoleArn"})
                found += [("Targets", f"target property {k} is not supported") for k in extra]
        return found

    def _args(self, ctx: Context, props: dict[str, Any]) -> dict[str, Any]:
        target = props["Targets"][0]
        role = target.get("RoleArn") or f"arn:aws:iam::{ctx.account}:role/{ctx.stack}-events"
        args: dict[str, Any] = {
            "ScheduleExpression": props["ScheduleExpression"],
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "Target": {"Arn": target["Arn"], "RoleArn": role,
                       **({"Input": target["Input"]} if "Input" in target else {})},
            "State": "DISABLED" if props.get("State") == "DISABLED" else "ENABLED",
        }  # fmt: skip
        if props.get("Description"):
            args["Description"] = props["Description"]
        return args

    def create(self, ctx: Context, logical_id: str, props: dict[str, Any]) -> Made:
        name = props.get("Name") or ctx.name(logical_id)
        _scheduler(ctx).create_schedule(Name=name, GroupName="default", **self._args(ctx, props))
        return Made(name, {"Arn": f"arn:aws:events:{ctx.region}:{ctx.account}:rule/{name}"})

    def update(
        self, ctx: Context, logical_id: str, made: Made, props: dict[str, Any],
        old: dict[str, Any],
    ) -> Made:  # fmt: skip
        _scheduler(ctx).update_schedule(Name=made.physical_id, GroupName="default",
                                        **self._args(ctx, props))  # fmt: skip
        return made

    def delete(self, ctx: Context, made: Made) -> None:
        ignore_missing(_scheduler(ctx).delete_schedule, Name=made.physical_id, GroupName="default")

    def describe(self, made: Made) -> str:
        return f"schedule {made.physical_id}"
