"""EventBridge Scheduler (botocore's ``scheduler``, rest-json): schedules that invoke
this nimbus' Lambda functions, and schedule groups.

Create/Get/Update/Delete/ListSchedules, Create/Get/Delete/ListScheduleGroups and the
groups' tags. UpdateSchedule replaces the whole schedule, as on AWS. What nimbus does
not do is refused with a clear ValidationException rather than stored and ignored:
targets other than Lambda functions of this nimbus (and the other services' target
parameters), and KmsKeyArn (nimbus has no KMS). ``Target.RoleArn`` is required, as on
AWS, and stored, but not assumed: nimbus has one account and no IAM. ``ClientToken``
(which boto3 fills in) is accepted; a retried create answers ConflictException.

The handlers reach the store through the server's services (``RequestContext.state``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nimbus.api.services import services_of_context
from nimbus.clock import Clock, now_ms
from nimbus.config import FUNCTION_ARN
from nimbus.errors import SchedulerValidation
from nimbus.events.sources.schedule_expressions import InvalidExpression, parse, zone
from nimbus.events.sources.scheduler import DEFAULT_EVENT_AGE_S, DEFAULT_RETRY_ATTEMPTS
from nimbus.protocol.service import AwsService, RequestContext
from nimbus.store.schedules import DEFAULT_GROUP, Schedule, ScheduleGroup, ScheduleStore
from nimbus.threads import blocking

NAME = re.compile(r"[0-9a-zA-Z\-_.]+")
ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+")
QUEUE_ARN = re.compile(
    r"arn:aws[a-z-]*:sqs:(?P<region>[a-z0-9\-]+):(?P<account>\d{12}):[a-zA-Z0-9\-_]+"
)
GROUP_ARN = re.compile(
    r"arn:aws[a-z-]*:scheduler:[a-z0-9\-]+:\d{12}:schedule-group/(?P<name>.+)"
)
OTHER_TARGETS = (
    "EcsParameters", "EventBridgeParameters", "EventBridgePutEventsV2Parameters",
    "EventBridgePutRawEventsParameters", "KinesisParameters", "SageMakerPipelineParameters",
    "SqsParameters",
)  # fmt: skip
STARTDATE_SLACK_MS = 5 * 60_000  # AWS: StartDate "cannot be earlier than 5 minutes ago"


@dataclass
class SchedulerApi:
    """What the handlers work with."""

    store: ScheduleStore
    clock: Clock = now_ms


def _api(ctx: RequestContext) -> SchedulerApi:
    return SchedulerApi(services_of_context(ctx).schedules)


# -- validation ----------------------------------------------------------------------


class _Violations:
    """Constraint violations in AWS's words ("1 validation error detected: ...")."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def add(self, value: Any, where: str, constraint: str) -> None:
        shown = "null" if value is None else f"'{value}'"
        self.found.append(f"Value {shown} at '{where}' failed to satisfy constraint: {constraint}")

    def length(self, value: str | None, where: str, low: int, high: int) -> None:
        if value is not None and not low <= len(value) <= high:
            self.add(value, where, f"Member must have length between {low} and {high}, inclusive")

    def pattern(self, value: str | None, where: str, pattern: re.Pattern[str]) -> None:
        if value is not None and pattern.fullmatch(value) is None:
            constraint = f"Member must satisfy regular expression pattern: {pattern.pattern}"
            self.add(value, where, constraint)

    def range(self, value: int | None, where: str, low: int, high: int) -> None:
        if value is not None and value < low:
            self.add(value, where, f"Member must have value greater than or equal to {low}")
        elif value is not None and value > high:
            self.add(value, where, f"Member must have value less than or equal to {high}")

    def enum(self, value: str | None, where: str, allowed: tuple[str, ...]) -> None:
        if value is not None and value not in allowed:
            self.add(value, where, f"Member must satisfy enum value set: [{', '.join(allowed)}]")

    def raise_any(self) -> None:
        if self.found:
            count = len(self.found)
            noun = "error" if count == 1 else "errors"
            raise SchedulerValidation(
                f"{count} validation {noun} detected: " + "; ".join(self.found)
            )


def _name(v: _Violations, value: str | None, where: str) -> None:
    v.length(value, where, 1, 64)
    v.pattern(value, where, NAME)


def _ms(moment: datetime | None) -> int | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _dt(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


def _schedule(ctx: RequestContext, params: dict[str, Any], now: int) -> Schedule:
    """The schedule CreateSchedule / UpdateSchedule describe, validated."""
    v = _Violations()
    _name(v, params.get("Name"), "name")
    _name(v, params.get("GroupName"), "groupName")
    expression = params.get("ScheduleExpression")
    v.length(expression, "scheduleExpression", 1, 256)
    v.length(params.get("Description"), "description", 0, 512)
    v.length(params.get("ScheduleExpressionTimezone"), "scheduleExpressionTimezone", 1, 50)
    v.enum(params.get("State"), "state", ("ENABLED", "DISABLED"))
    v.enum(params.get("ActionAfterCompletion"), "actionAfterCompletion", ("NONE", "DELETE"))
    window = params.get("FlexibleTimeWindow") or {}
    v.enum(window.get("Mode"), "flexibleTimeWindow.mode", ("OFF", "FLEXIBLE"))
    v.range(window.get("MaximumWindowInMinutes"), "flexibleTimeWindow.maximumWindowInMinutes",
            1, 1440)  # fmt: skip
    target = dict(params.get("Target") or {})
    v.length(target.get("Arn"), "target.arn", 1, 1600)
    v.pattern(target.get("RoleArn"), "target.roleArn", ROLE_ARN)
    if "Input" in target:
        v.length(target["Input"], "target.input", 1, 8192)
    retry = dict(target.get("RetryPolicy") or {})
    v.range(retry.get("MaximumEventAgeInSeconds"), "target.retryPolicy.maximumEventAgeInSeconds",
            60, 86400)  # fmt: skip
    v.range(retry.get("MaximumRetryAttempts"), "target.retryPolicy.maximumRetryAttempts", 0, 185)
    dlq = (target.get("DeadLetterConfig") or {}).get("Arn")
    v.pattern(dlq, "target.deadLetterConfig.arn", QUEUE_ARN)
    v.raise_any()

    expression = expression or ""
    try:
        parse(expression)
    except InvalidExpression:
        raise SchedulerValidation(f"Invalid Schedule Expression {expression}.") from None
    timezone = params.get("ScheduleExpressionTimezone") or "UTC"
    try:
        zone(timezone)
    except ValueError:
        raise SchedulerValidation(
            f"Invalid Schedule Expression Timezone {timezone}: use an IANA time zone name "
            "such as UTC, Europe/Paris or America/New_York."
        ) from None
    if params.get("KmsKeyArn"):
        raise SchedulerValidation(
            "KmsKeyArn is not supported by nimbus (it has no KMS): leave it out; schedules "
            "are kept in nimbus' own store."
        )
    if window.get("Mode") == "FLEXIBLE" and window.get("MaximumWindowInMinutes") is None:
        raise SchedulerValidation(
            "MaximumWindowInMinutes is required when FlexibleTimeWindow Mode is FLEXIBLE."
        )
    if window.get("Mode") == "OFF" and window.get("MaximumWindowInMinutes") is not None:
        raise SchedulerValidation(
            "MaximumWindowInMinutes must not be given when FlexibleTimeWindow Mode is OFF."
        )
    _check_target(ctx, target)
    start_ms, end_ms = _ms(params.get("StartDate")), _ms(params.get("EndDate"))
    recurring = not expression.startswith("at(")
    if recurring and start_ms is not None and start_ms < now - STARTDATE_SLACK_MS:
        raise SchedulerValidation("The StartDate you specify cannot be earlier than 5 minutes ago.")
    if recurring and end_ms is not None:
        if end_ms <= now:
            raise SchedulerValidation("The EndDate you specify cannot be earlier than now.")
        if start_ms is not None and end_ms <= start_ms:
            raise SchedulerValidation("The EndDate you specify must be after the StartDate.")
    retry.setdefault("MaximumEventAgeInSeconds", DEFAULT_EVENT_AGE_S)
    retry.setdefault("MaximumRetryAttempts", DEFAULT_RETRY_ATTEMPTS)
    target["RetryPolicy"] = retry
    return Schedule(
        group=params.get("GroupName") or DEFAULT_GROUP,
        name=params["Name"],
        expression=expression,
        timezone=timezone,
        target=target,
        state=params.get("State") or "ENABLED",
        start_ms=start_ms,
        end_ms=end_ms,
        description=params.get("Description"),
        flexible_window_minutes=window.get("MaximumWindowInMinutes"),
        action_after_completion=params.get("ActionAfterCompletion") or "NONE",
        created_ms=now,
        modified_ms=now,
        # Rate schedules count from StartDate, else from now (AWS: "starts invoking
        # immediately"); ticks before now are never due.
        anchor_ms=start_ms if start_ms is not None else now,
        last_tick_ms=now - 1,
    )


def _check_target(ctx: RequestContext, target: dict[str, Any]) -> None:
    arn = target.get("Arn", "")
    function = FUNCTION_ARN.fullmatch(arn)
    if function is None:
        raise SchedulerValidation(
            f"Target Arn {arn} is not supported: nimbus schedules invoke Lambda functions "
            f"only; give a function ARN (arn:aws:lambda:{ctx.region}:{ctx.account_id}:"
            "function:NAME[:QUALIFIER])."
        )
    if (function["region"], function["account"]) != (ctx.region, ctx.account_id):
        raise SchedulerValidation(
            f"Target Arn {arn} is in another region or account: this nimbus is "
            f"{ctx.region} / {ctx.account_id}."
        )
    for member in OTHER_TARGETS:
        if target.get(member):
            raise SchedulerValidation(
                f"Target {member} is not supported: nimbus schedules invoke Lambda "
                "functions (Lambda Invoke takes no target parameters)."
            )
    if "Input" in target:
        try:
            json.loads(_without_placeholders(target["Input"]))
        except (ValueError, RecursionError):  # RecursionError: "[[[[..." past json's depth
            raise SchedulerValidation(
                "Target Input must be well-formed JSON for a Lambda function target."
            ) from None
    dlq = QUEUE_ARN.fullmatch((target.get("DeadLetterConfig") or {}).get("Arn") or "")
    if dlq and (dlq["region"], dlq["account"]) != (ctx.region, ctx.account_id):
        raise SchedulerValidation(
            f"DeadLetterConfig Arn {dlq[0]} is in another region or account: use a queue "
            f"of this nimbus ({ctx.region} / {ctx.account_id})."
        )


def _without_placeholders(text: str) -> str:
    """Input with Scheduler's context attributes replaced by a number, so that a JSON
    check accepts them where the event will hold a value."""
    return re.sub(r"<aws\.scheduler\.[a-z-]+>", "0", text)


# -- answers -------------------------------------------------------------------------


def _arn(ctx: RequestContext, group: str, name: str) -> str:
    return f"arn:aws:scheduler:{ctx.region}:{ctx.account_id}:schedule/{group}/{name}"


def _group_arn(ctx: RequestContext, name: str) -> str:
    return f"arn:aws:scheduler:{ctx.region}:{ctx.account_id}:schedule-group/{name}"


def _described(ctx: RequestContext, s: Schedule) -> dict[str, Any]:
    window: dict[str, Any] = {"Mode": "OFF"}
    if s.flexible_window_minutes is not None:
        window = {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": s.flexible_window_minutes}
    out: dict[str, Any] = {
        "Arn": _arn(ctx, s.group, s.name),
        "GroupName": s.group,
        "Name": s.name,
        "ScheduleExpression": s.expression,
        "ScheduleExpressionTimezone": s.timezone,
        "State": s.state,
        "CreationDate": _dt(s.created_ms),
        "LastModificationDate": _dt(s.modified_ms),
        "Target": s.target,
        "FlexibleTimeWindow": window,
        "ActionAfterCompletion": s.action_after_completion,
        "StartDate": _dt(s.start_ms),
        "EndDate": _dt(s.end_ms),
        "Description": s.description,
    }
    return {k: v for k, v in out.items() if v is not None}


def _group(ctx: RequestContext, g: ScheduleGroup) -> dict[str, Any]:
    out = {
        "Arn": _group_arn(ctx, g.name),
        "Name": g.name,
        "State": "ACTIVE",
        "CreationDate": _dt(g.created_ms),
        "LastModificationDate": _dt(g.modified_ms),
    }
    return {k: v for k, v in out.items() if v is not None}


def _group_name(v: _Violations, params: dict[str, Any]) -> str:
    group = params.get("GroupName")
    _name(v, group, "groupName")
    v.raise_any()
    return group or DEFAULT_GROUP


# -- handlers ------------------------------------------------------------------------


async def create_schedule(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    api = _api(ctx)
    schedule = _schedule(ctx, params, api.clock())
    await blocking(api.store.create, schedule)
    return {"ScheduleArn": _arn(ctx, schedule.group, schedule.name)}


async def update_schedule(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    api = _api(ctx)
    schedule = _schedule(ctx, params, api.clock())
    await blocking(api.store.replace, schedule)
    return {"ScheduleArn": _arn(ctx, schedule.group, schedule.name)}


async def get_schedule(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    v = _Violations()
    _name(v, params.get("Name"), "name")
    group = _group_name(v, params)
    return _described(ctx, await blocking(_api(ctx).store.get, group, params["Name"]))


async def delete_schedule(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    v = _Violations()
    _name(v, params.get("Name"), "name")
    group = _group_name(v, params)
    await blocking(_api(ctx).store.delete, group, params["Name"])
    return {}


async def list_schedules(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    v = _Violations()
    _name(v, params.get("GroupName"), "groupName")
    _name(v, params.get("NamePrefix"), "namePrefix")
    v.enum(params.get("State"), "state", ("ENABLED", "DISABLED"))
    v.range(params.get("MaxResults"), "maxResults", 1, 100)
    v.raise_any()
    page = await blocking(
        _api(ctx).store.page,
        params.get("GroupName"),
        params.get("NamePrefix"),
        params.get("State"),
        params.get("NextToken"),
        params.get("MaxResults") or 100,
    )
    summaries = [
        {
            "Arn": _arn(ctx, s.group, s.name),
            "Name": s.name,
            "GroupName": s.group,
            "State": s.state,
            "CreationDate": _dt(s.created_ms),
            "LastModificationDate": _dt(s.modified_ms),
            "Target": {"Arn": s.target["Arn"]},
        }
        for s in page.items
    ]
    out: dict[str, Any] = {"Schedules": summaries}
    if page.next_token:
        out["NextToken"] = page.next_token
    return out


async def create_schedule_group(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    v = _Violations()
    _name(v, params.get("Name"), "name")
    v.raise_any()
    api = _api(ctx)
    tags = {t["Key"]: t["Value"] for t in params.get("Tags") or []}
    group = await blocking(api.store.create_group, params["Name"], tags, api.clock())
    return {"ScheduleGroupArn": _group_arn(ctx, group.name)}


async def get_schedule_group(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    v = _Violations()
    _name(v, params.get("Name"), "name")
    v.raise_any()
    return _group(ctx, await blocking(_api(ctx).store.get_group, params["Name"]))


async def delete_schedule_group(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    v = _Violations()
    _name(v, params.get("Name"), "name")
    v.raise_any()
    await blocking(_api(ctx).store.delete_group, params["Name"])
    return {}


async def list_schedule_groups(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    v = _Violations()
    _name(v, params.get("NamePrefix"), "namePrefix")
    v.range(params.get("MaxResults"), "maxResults", 1, 100)
    v.raise_any()
    groups = await blocking(_api(ctx).store.list_groups, params.get("NamePrefix"))
    token, limit = params.get("NextToken"), params.get("MaxResults") or 100
    if token:
        groups = [g for g in groups if g.name > token]
    out: dict[str, Any] = {"ScheduleGroups": [_group(ctx, g) for g in groups[:limit]]}
    if len(groups) > limit:
        out["NextToken"] = groups[limit - 1].name
    return out


def _tagged_group(arn: str) -> str:
    match = GROUP_ARN.fullmatch(arn)
    if match is None:
        raise SchedulerValidation(
            f"Invalid ResourceArn {arn}: only schedule groups have tags "
            "(arn:aws:scheduler:REGION:ACCOUNT:schedule-group/NAME)."
        )
    return match["name"]


async def list_tags(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    group = await blocking(_api(ctx).store.get_group, _tagged_group(params["ResourceArn"]))
    return {"Tags": [{"Key": k, "Value": v} for k, v in sorted(group.tags.items())]}


async def tag_resource(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    tags = {t["Key"]: t["Value"] for t in params.get("Tags") or []}
    await blocking(_api(ctx).store.set_tags, _tagged_group(params["ResourceArn"]), tags, [])
    return {}


async def untag_resource(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    keys = list(params.get("TagKeys") or [])
    await blocking(_api(ctx).store.set_tags, _tagged_group(params["ResourceArn"]), {}, keys)
    return {}


SCHEDULER = AwsService(
    "scheduler",
    {
        "CreateSchedule": create_schedule,
        "GetSchedule": get_schedule,
        "UpdateSchedule": update_schedule,
        "DeleteSchedule": delete_schedule,
        "ListSchedules": list_schedules,
        "CreateScheduleGroup": create_schedule_group,
        "GetScheduleGroup": get_schedule_group,
        "DeleteScheduleGroup": delete_schedule_group,
        "ListScheduleGroups": list_schedule_groups,
        "ListTagsForResource": list_tags,
        "TagResource": tag_resource,
        "UntagResource": untag_resource,
    },
)
