"""``nimbus schedules``: EventBridge Scheduler schedules that invoke a function, without
writing boto3 code. The commands speak the Scheduler API (``/schedules``), as boto3's
``scheduler`` client would, signed for the ``scheduler`` service."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import typer

from nimbus.cli.client import (
    ENDPOINT,
    FUNCTIONS,
    JsonOption,
    call,
    fail,
    no_function,
    print_json,
    report_error,
    say,
    segment,
    show,
    table,
)

schedules_app = typer.Typer(
    help="Schedules (EventBridge Scheduler): invoke a function on a cron, rate or at().",
    no_args_is_help=True,
)

GroupOption = Annotated[str, typer.Option(help="Schedule group")]


def _call(method: str, url: str, allow: tuple[int, ...] = (), **kwargs: Any) -> httpx.Response:
    """A Scheduler API request (signed for ``scheduler`` when the server wants SigV4)."""
    return call(method, url, allow, service="scheduler", **kwargs)


@schedules_app.command("list")
def schedules_list(
    group: Annotated[str | None, typer.Option(help="Only this group")] = None,
    prefix: Annotated[str | None, typer.Option(help="Only names starting so")] = None,
    as_json: JsonOption = False,
    endpoint: str = ENDPOINT,
) -> None:
    """List schedules (--json: ListSchedules' ScheduleSummary objects)."""
    found: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        params = {"ScheduleGroup": group, "NamePrefix": prefix, "NextToken": token}
        page = _call("GET", f"{endpoint}/schedules",
                     params={k: v for k, v in params.items() if v}).json()  # fmt: skip
        found += page["Schedules"]
        token = page.get("NextToken")
        if not token:
            break
    if as_json:
        print_json(found)
        return
    made = table("group", "name", "state", "target")
    for s in found:
        made.add_row(s["GroupName"], s["Name"], s["State"], s["Target"]["Arn"])
    show(made)


@schedules_app.command("create")
def schedules_create(
    name: Annotated[str, typer.Argument(help="Schedule name")],
    function: Annotated[str, typer.Option(help="Function name or ARN (with :alias)")],
    expression: Annotated[
        str, typer.Option(help="cron(m h dom mon dow y), rate(5 minutes), at(2030-01-01T09:00:00)")
    ],
    input: Annotated[str | None, typer.Option(help="The event (JSON); default {}")] = None,
    timezone: Annotated[str | None, typer.Option(help="IANA time zone [UTC]")] = None,
    group: GroupOption = "default",
    disabled: Annotated[bool, typer.Option(help="Create it disabled")] = False,
    as_json: JsonOption = False,
    endpoint: str = ENDPOINT,
) -> None:
    """Create a schedule that invokes a function (asynchronously) and print its ARN
    (--json: CreateSchedule's answer)."""
    arn = function
    if not function.startswith("arn:"):
        got = call("GET", f"{endpoint}{FUNCTIONS}/{segment(function)}", allow=(404,))
        if got.status_code == 404:
            no_function(got)
        arn = got.json()["Configuration"]["FunctionArn"]
    account = arn.split(":")[4] if arn.count(":") >= 4 else "000000000000"
    # Scheduler requires a role; nimbus stores it but does not assume it (no IAM).
    target: dict[str, Any] = {"Arn": arn, "RoleArn": f"arn:aws:iam::{account}:role/nimbus"}
    if input is not None:
        target["Input"] = input
    body: dict[str, Any] = {
        "GroupName": group,
        "ScheduleExpression": expression,
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "Target": target,
        "State": "DISABLED" if disabled else "ENABLED",
    }
    if timezone:
        body["ScheduleExpressionTimezone"] = timezone
    created = _call("POST", f"{endpoint}/schedules/{segment(name)}", json=body).json()
    say(f"created schedule {group}/{name}: {expression} -> {arn}")
    if as_json:
        print_json(created)
    else:
        typer.echo(created["ScheduleArn"])


@schedules_app.command("delete")
def schedules_delete(
    name: Annotated[str, typer.Argument(help="Schedule name")],
    group: GroupOption = "default",
    endpoint: str = ENDPOINT,
) -> None:
    """Delete a schedule."""
    got = _call("DELETE", f"{endpoint}/schedules/{segment(name)}",
                params={"groupName": group}, allow=(404,))  # fmt: skip
    if got.status_code == 404:
        report_error(got)
        fail(f"no schedule {name} in group {group}: `nimbus schedules list` lists them")
    say(f"deleted schedule {group}/{name}")
