"""EventBridge Scheduler through boto3's ``scheduler`` client on a live nimbus: schedule
and group CRUD, AWS's errors, and schedules that really invoke a function.

No clock hook is needed to see a schedule fire: as on AWS, a rate schedule without a
StartDate fires as soon as it is created, and an at() schedule fires at its second."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.api.conftest import error
from tests.conftest import HELLO, ROLE
from tests.nimbus_process import NimbusProcess
from tests.sink import LOCAL_WEBHOOKS, Sink

SERVER_ENV = LOCAL_WEBHOOKS  # a schedule's target posts its result to a sink
REGION_ACCOUNT = "us-east-1:000000000000"
FUNCTION = f"arn:aws:lambda:{REGION_ACCOUNT}:function:target"
SCHEDULER_ROLE = "arn:aws:iam::000000000000:role/scheduler"
TARGET = {"Arn": FUNCTION, "RoleArn": SCHEDULER_ROLE}
OFF = {"Mode": "OFF"}


@pytest.fixture
def sched(server: NimbusProcess) -> Any:
    return server.client("scheduler")


@pytest.fixture
def loose(server: NimbusProcess) -> Any:
    """A client that leaves validation to the server."""
    return server.client("scheduler", validate=False)


def unique(prefix: str = "s") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_create_get_update_delete(sched: Any) -> None:
    name = unique()
    arn = sched.create_schedule(
        Name=name, ScheduleExpression="cron(0 10 * * ? *)", FlexibleTimeWindow=OFF,
        Target=TARGET, Description="daily", State="DISABLED",
    )["ScheduleArn"]  # fmt: skip
    assert arn == f"arn:aws:scheduler:{REGION_ACCOUNT}:schedule/default/{name}"
    got = sched.get_schedule(Name=name)
    assert got["Arn"] == arn and got["GroupName"] == "default" and got["Name"] == name
    assert got["ScheduleExpressionTimezone"] == "UTC" and got["State"] == "DISABLED"
    assert got["Description"] == "daily" and got["FlexibleTimeWindow"] == OFF
    assert got["Target"]["RetryPolicy"] == {
        "MaximumEventAgeInSeconds": 86400, "MaximumRetryAttempts": 185
    }  # fmt: skip
    assert got["ActionAfterCompletion"] == "NONE"
    assert isinstance(got["CreationDate"], datetime)

    with pytest.raises(ClientError) as exc:
        sched.create_schedule(Name=name, ScheduleExpression="rate(1 hour)",
                              FlexibleTimeWindow=OFF, Target=TARGET)  # fmt: skip
    assert error(exc) == ("ConflictException", 409, f"Schedule {name} already exists.")

    # UpdateSchedule replaces everything: the description goes, the window changes.
    sched.update_schedule(
        Name=name, ScheduleExpression="cron(30 8 ? * MON-FRI *)",
        ScheduleExpressionTimezone="Europe/Paris",
        FlexibleTimeWindow={"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 15},
        Target={**TARGET, "Input": '{"k": 1}', "RetryPolicy": {"MaximumRetryAttempts": 3}},
    )  # fmt: skip
    got = sched.get_schedule(Name=name, GroupName="default")
    assert "Description" not in got and got["State"] == "ENABLED"
    assert got["ScheduleExpressionTimezone"] == "Europe/Paris"
    assert got["FlexibleTimeWindow"] == {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 15}
    assert got["Target"]["Input"] == '{"k": 1}'
    assert got["Target"]["RetryPolicy"]["MaximumRetryAttempts"] == 3

    sched.delete_schedule(Name=name)
    for call in (lambda: sched.get_schedule(Name=name), lambda: sched.delete_schedule(Name=name)):
        with pytest.raises(ClientError) as exc:
            call()
        assert error(exc) == ("ResourceNotFoundException", 404, f"Schedule {name} does not exist.")


def test_list_filters_and_pages(sched: Any) -> None:
    prefix = unique("list")
    for i, state in enumerate(("ENABLED", "DISABLED", "DISABLED")):
        sched.create_schedule(Name=f"{prefix}-{i}", ScheduleExpression="rate(7 days)",
                              FlexibleTimeWindow=OFF, Target=TARGET, State=state)  # fmt: skip
    listed = sched.list_schedules(NamePrefix=prefix)["Schedules"]
    assert [s["Name"] for s in listed] == [f"{prefix}-0", f"{prefix}-1", f"{prefix}-2"]
    assert listed[0]["Target"] == {"Arn": FUNCTION} and listed[0]["GroupName"] == "default"
    disabled = sched.list_schedules(NamePrefix=prefix, State="DISABLED")["Schedules"]
    assert [s["Name"] for s in disabled] == [f"{prefix}-1", f"{prefix}-2"]
    pages = sched.get_paginator("list_schedules").paginate(
        NamePrefix=prefix, PaginationConfig={"PageSize": 2}
    )
    sizes = [len(page["Schedules"]) for page in pages]
    assert sizes == [2, 1]


@pytest.mark.parametrize(
    "expression",
    ["rate(1 minutes)", "rate(5 minute)", "cron(0 1 * * * *)", "cron(71 8 1 * ? *)",
     "at(2021-12-31T23:59:59Z)", " rate(10 minutes)"],
)  # fmt: skip
def test_invalid_expression(sched: Any, expression: str) -> None:
    with pytest.raises(ClientError) as exc:
        sched.create_schedule(Name=unique(), ScheduleExpression=expression,
                              FlexibleTimeWindow=OFF, Target=TARGET)  # fmt: skip
    assert error(exc) == ("ValidationException", 400,
                          f"Invalid Schedule Expression {expression}.")  # fmt: skip


def test_refusals(sched: Any, loose: Any) -> None:
    name = unique()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"Target": {"Arn": "arn:aws:sqs:us-east-1:000000000000:q", "RoleArn": SCHEDULER_ROLE}},
         "nimbus schedules invoke Lambda functions only"),
        ({"Target": {**TARGET, "Input": "not json"}}, "well-formed JSON"),
        ({"ScheduleExpressionTimezone": "Mars/Base"}, "Invalid Schedule Expression Timezone"),
        ({"FlexibleTimeWindow": {"Mode": "FLEXIBLE"}}, "MaximumWindowInMinutes is required"),
        ({"KmsKeyArn": "arn:aws:kms:us-east-1:000000000000:key/k"}, "no KMS"),
        ({"StartDate": datetime.now(UTC) - timedelta(hours=1)}, "5 minutes ago"),
        ({"GroupName": "nope"}, "Schedule group nope does not exist."),
    ]  # fmt: skip
    for change, message in cases:
        params = {"Name": name, "ScheduleExpression": "rate(1 hour)",
                  "FlexibleTimeWindow": OFF, "Target": TARGET, **change}  # fmt: skip
        with pytest.raises(ClientError) as exc:
            sched.create_schedule(**params)
        assert message in error(exc)[2], change
    with pytest.raises(ClientError) as exc:
        loose.create_schedule(
            Name=name, ScheduleExpression="rate(1 hour)", FlexibleTimeWindow=OFF,
            Target={**TARGET, "RetryPolicy": {"MaximumRetryAttempts": 186}},
        )  # fmt: skip
    assert error(exc) == (
        "ValidationException", 400,
        "1 validation error detected: Value '186' at 'target.retryPolicy.maximumRetryAttempts' "
        "failed to satisfy constraint: Member must have value less than or equal to 185",
    )  # fmt: skip
    with pytest.raises(ClientError):
        sched.get_schedule(Name=name)  # nothing was half-stored


def test_groups(sched: Any) -> None:
    group = unique("g")
    arn = sched.create_schedule_group(Name=group, Tags=[{"Key": "team", "Value": "a"}])[
        "ScheduleGroupArn"
    ]
    assert arn == f"arn:aws:scheduler:{REGION_ACCOUNT}:schedule-group/{group}"
    got = sched.get_schedule_group(Name=group)
    assert got["State"] == "ACTIVE" and got["Name"] == group
    assert sched.list_tags_for_resource(ResourceArn=arn)["Tags"] == [{"Key": "team", "Value": "a"}]
    with pytest.raises(ClientError) as exc:
        sched.create_schedule_group(Name=group)
    assert error(exc)[0:2] == ("ConflictException", 409)
    names = [g["Name"] for g in sched.list_schedule_groups()["ScheduleGroups"]]
    assert "default" in names and group in names
    created = sched.create_schedule(Name="in-group", GroupName=group, Target=TARGET,
                                    ScheduleExpression="rate(2 hours)", FlexibleTimeWindow=OFF)
    assert created["ScheduleArn"].endswith(f"schedule/{group}/in-group")
    listed = sched.list_schedules(GroupName=group)["Schedules"]
    assert [s["Name"] for s in listed] == ["in-group"]
    sched.delete_schedule_group(Name=group)  # takes its schedules with it
    with pytest.raises(ClientError) as exc:
        sched.get_schedule(Name="in-group", GroupName=group)
    assert error(exc)[0:2] == ("ResourceNotFoundException", 404)
    with pytest.raises(ClientError) as exc:
        sched.delete_schedule_group(Name="default")
    assert error(exc)[0] == "ValidationException"


@pytest.mark.sandbox
def test_schedules_invoke_the_function(server: NimbusProcess, sched: Any, sink: Sink) -> None:
    lam = server.client()
    name = unique("fn")
    lam.create_function(FunctionName=name, Runtime="python3.12", Role=ROLE,
                        Handler="app.handler", Code={"ZipFile": HELLO})  # fmt: skip
    lam.put_function_event_invoke_config(
        FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": sink.url}}
    )
    arn = f"arn:aws:lambda:{REGION_ACCOUNT}:function:{name}"
    # A rate schedule without a StartDate fires at once.
    every = unique("rate")
    sched.create_schedule(
        Name=every, ScheduleExpression="rate(1 minute)", FlexibleTimeWindow=OFF,
        Target={"Arn": arn, "RoleArn": SCHEDULER_ROLE,
                "Input": '{"from": "<aws.scheduler.schedule-arn>"}'},
    )  # fmt: skip
    records = sink.wait_until(lambda r: len(r) >= 1, timeout=60)
    schedule = f"arn:aws:scheduler:{REGION_ACCOUNT}:schedule/default/{every}"
    assert records[0]["requestPayload"] == {"from": schedule}
    assert records[0]["responsePayload"] == {"hello": {"from": schedule}}
    sched.update_schedule(Name=every, ScheduleExpression="rate(1 minute)", State="DISABLED",
                          FlexibleTimeWindow=OFF, Target={"Arn": arn, "RoleArn": SCHEDULER_ROLE})
    # A one-time schedule two seconds ahead fires at its time, without Input ("{}"), and
    # is deleted after it (ActionAfterCompletion DELETE).
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    once = unique("at")
    sched.create_schedule(
        Name=once, ScheduleExpression=f"at({when:%Y-%m-%dT%H:%M:%S})", FlexibleTimeWindow=OFF,
        Target={"Arn": arn, "RoleArn": SCHEDULER_ROLE}, ActionAfterCompletion="DELETE",
    )  # fmt: skip
    records = sink.wait_until(lambda r: len(r) >= 2, timeout=60)
    assert records[1]["requestPayload"] == {}
    assert time.time() >= when.timestamp()
    deadline = time.monotonic() + 10
    while True:  # the delete follows the queuing by one store write
        try:
            sched.get_schedule(Name=once)
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "ResourceNotFoundException"
            break
        assert time.monotonic() < deadline, "the completed at() schedule was not deleted"
        time.sleep(0.05)
    assert len(sink.received) == 2  # updating it to DISABLED fired nothing
