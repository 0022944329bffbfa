"""The CloudWatch Logs subset through boto3's ``logs`` client and the AWS CLI, against a
live server whose functions really ran: log groups, streams named as Lambda names them,
GetLogEvents' tokens, FilterLogEvents' patterns, interleaving and pages, and polling as
``aws logs tail --follow`` (AWS CLI v2) does."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from tests.api.conftest import error
from tests.conftest import ROLE, aws_cli, aws_json, make_zip
from tests.nimbus_process import NimbusProcess

pytestmark = pytest.mark.sandbox

TEXT_APP = """
print('cold start here')
def handler(event, context):
    print('[ERROR 400] BAD REQUEST')
    print('[ERROR 419] MISSING ARGUMENTS')
    print('[SUCCESS 200] AUTHORIZED REQUEST')
    print('tag', event.get('tag', '-'))
    return {'stream': context.log_stream_name, 'group': context.log_group_name}
"""

JSON_APP = """
import logging
log = logging.getLogger()
def handler(event, context):
    log.info('all good', extra={'latency': 3})
    log.error('it broke')
    return context.log_stream_name
"""

STREAM = re.compile(r"\d{4}/\d{2}/\d{2}/\[(\$LATEST|\d+)\][0-9a-f]{32}")


@pytest.fixture(scope="module")
def logs(server: NimbusProcess) -> Any:
    return server.client("logs")


@pytest.fixture(scope="module")
def lam_m(server: NimbusProcess) -> Any:
    return server.client()


def create(lam: Any, name: str, code: str, **extra: Any) -> None:
    lam.create_function(FunctionName=name, Runtime="python3.12", Role=ROLE,
                        Handler="app.handler", Code={"ZipFile": make_zip({"app.py": code})},
                        **extra)


def invoke(lam: Any, name: str, qualifier: str | None = None, **event: Any) -> Any:
    kwargs = {"Qualifier": qualifier} if qualifier else {}
    out = lam.invoke(FunctionName=name, Payload=json.dumps(event).encode(), **kwargs)
    assert "FunctionError" not in out, out["Payload"].read()
    return json.loads(out["Payload"].read())


@pytest.fixture(scope="module")
def text_fn(lam_m: Any) -> dict[str, Any]:
    """A Text-logging function run twice on $LATEST and once as version 1 (two streams)."""
    name = f"cwl-text-{uuid.uuid4().hex[:6]}"
    create(lam_m, name, TEXT_APP, Publish=True)
    first = invoke(lam_m, name, tag="one")
    second = invoke(lam_m, name, tag="two")
    versioned = invoke(lam_m, name, "1", tag="three")
    assert first["stream"] == second["stream"] != versioned["stream"]
    return {"name": name, "group": f"/aws/lambda/{name}", "latest": first["stream"],
            "v1": versioned["stream"]}


def test_log_groups_are_listed_by_prefix_and_page(logs: Any, lam_m: Any,
                                                  text_fn: dict[str, Any]) -> None:
    prefix = f"/aws/lambda/cwl-pages-{uuid.uuid4().hex[:6]}"
    names = [f"{prefix.rsplit('/', 1)[1]}-{i}" for i in range(3)]
    for name in names:
        create(lam_m, name, TEXT_APP)
    groups = logs.describe_log_groups(logGroupNamePrefix=text_fn["group"])["logGroups"]
    assert [g["logGroupName"] for g in groups] == [text_fn["group"]]
    group = groups[0]
    assert group["arn"] == f"arn:aws:logs:us-east-1:000000000000:log-group:{text_fn['group']}:*"
    assert group["logGroupArn"] == group["arn"][:-2]
    assert group["retentionInDays"] == 30 and group["creationTime"] > 0

    seen, token = [], None
    while True:
        kwargs: dict[str, Any] = {"nextToken": token} if token else {}
        page = logs.describe_log_groups(logGroupNamePrefix=prefix, limit=2, **kwargs)
        assert len(page["logGroups"]) <= 2
        seen += [g["logGroupName"] for g in page["logGroups"]]
        token = page.get("nextToken")
        if not token:
            break
    assert seen == [f"/aws/lambda/{n}" for n in names]
    # A group is as old as its function: an update does not make it new.
    created = logs.describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{names[0]}")
    lam_m.update_function_configuration(FunctionName=names[0], Description="changed")
    lam_m.get_waiter("function_updated_v2").wait(FunctionName=names[0])
    later = logs.describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{names[0]}")
    assert later["logGroups"] == created["logGroups"]
    # A pattern is a case-sensitive substring, answered with three fields only.
    found = logs.describe_log_groups(logGroupNamePattern=names[1][4:])["logGroups"]
    assert [g["logGroupName"] for g in found] == [f"/aws/lambda/{names[1]}"]
    assert set(found[0]) == {"arn", "creationTime", "logGroupName"}
    assert logs.describe_log_groups(logGroupNamePattern=names[1].upper())["logGroups"] == []
    # A token of another call, or a value outside an enum, is a 400 with a reason.
    streams = logs.describe_log_streams(logGroupName=text_fn["group"], limit=1)
    with pytest.raises(ClientError) as exc:
        logs.describe_log_groups(nextToken=streams["nextToken"])
    assert error(exc) == ("InvalidParameterException", 400,
                          "The specified nextToken is invalid.")
    with pytest.raises(ClientError) as exc:
        logs.describe_log_streams(logGroupName=text_fn["group"], orderBy="LastEventTime",
                                  nextToken=streams["nextToken"])
    assert error(exc)[0] == "InvalidParameterException"
    with pytest.raises(ClientError) as exc:
        logs.describe_log_groups(logGroupClass="COLD")
    code, status, message = error(exc)
    assert (code, status) == ("InvalidParameterException", 400) and "enum" in message
    assert logs.describe_log_groups(logGroupClass="INFREQUENT_ACCESS")["logGroups"] == []
    with pytest.raises(ClientError) as exc:
        logs.describe_log_groups(logGroupNamePrefix=prefix, logGroupNamePattern="x")
    assert error(exc)[0] == "InvalidParameterException"


def test_a_custom_log_group_holds_its_functions(logs: Any, lam_m: Any) -> None:
    group = f"/custom/shared-{uuid.uuid4().hex[:6]}"
    name = f"cwl-custom-{uuid.uuid4().hex[:6]}"
    create(lam_m, name, TEXT_APP, LoggingConfig={"LogFormat": "Text", "LogGroup": group})
    ran = invoke(lam_m, name, tag="custom")
    assert ran["group"] == group
    streams = logs.describe_log_streams(logGroupName=group)["logStreams"]
    assert [s["logStreamName"] for s in streams] == [ran["stream"]]
    with pytest.raises(ClientError) as exc:  # its default group is not used
        logs.describe_log_streams(logGroupName=f"/aws/lambda/{name}")
    assert error(exc)[0] == "ResourceNotFoundException"


def test_streams_are_the_environments_named_as_lambda_names_them(
        logs: Any, text_fn: dict[str, Any]) -> None:
    streams = logs.describe_log_streams(logGroupName=text_fn["group"])["logStreams"]
    names = [s["logStreamName"] for s in streams]
    assert names == sorted([text_fn["latest"], text_fn["v1"]])
    assert all(STREAM.fullmatch(n) for n in names)
    for stream in streams:
        assert stream["firstEventTimestamp"] <= stream["lastEventTimestamp"]
        assert stream["arn"].endswith(f":log-stream:{stream['logStreamName']}")

    newest = logs.describe_log_streams(logGroupName=text_fn["group"], orderBy="LastEventTime",
                                       descending=True, limit=1)
    assert [s["logStreamName"] for s in newest["logStreams"]] == [text_fn["v1"]]
    rest = logs.describe_log_streams(logGroupName=text_fn["group"], orderBy="LastEventTime",
                                     descending=True, limit=1, nextToken=newest["nextToken"])
    assert [s["logStreamName"] for s in rest["logStreams"]] == [text_fn["latest"]]
    assert "nextToken" not in rest

    with pytest.raises(ClientError) as exc:
        logs.describe_log_streams(logGroupName=text_fn["group"], orderBy="LastEventTime",
                                  logStreamNamePrefix="2")
    assert error(exc)[0] == "InvalidParameterException"
    with pytest.raises(ClientError) as exc:
        logs.describe_log_streams(logGroupName=text_fn["group"], orderBy="lastEventTime")
    assert error(exc)[0] == "InvalidParameterException"
    with pytest.raises(ClientError) as exc:
        logs.describe_log_streams(logGroupName="/aws/lambda/no-such-function")
    assert error(exc) == ("ResourceNotFoundException", 400,
                          "The specified log group does not exist.")


def test_get_log_events_reads_a_stream_forward_and_back(logs: Any,
                                                        text_fn: dict[str, Any]) -> None:
    group, stream = text_fn["group"], text_fn["latest"]
    everything = logs.get_log_events(logGroupName=group, logStreamName=stream,
                                     startFromHead=True)["events"]
    messages = [e["message"] for e in everything]
    assert messages[0] == "cold start here" and messages[1].startswith("START RequestId: ")
    assert messages.count("[ERROR 400] BAD REQUEST") == 2
    assert "tag one" in messages and "tag two" in messages and "tag three" not in messages
    assert messages.index("tag one") < messages.index("tag two")
    assert sum(m.startswith("REPORT RequestId") for m in messages) == 2
    assert all(e["ingestionTime"] >= e["timestamp"] for e in everything)

    # Forward from the head, three at a time, until the token comes back unchanged.
    read, token = [], None
    while True:
        kwargs = {"nextToken": token} if token else {"startFromHead": True}
        page = logs.get_log_events(logGroupName=group, logStreamName=stream, limit=3, **kwargs)
        assert len(page["events"]) <= 3
        read += page["events"]
        if page["nextForwardToken"] == token:
            assert page["events"] == []
            break
        token = page["nextForwardToken"]
    assert read == everything
    # Turned round at the end: back from the same place, the last event included.
    back_from_end = logs.get_log_events(logGroupName=group, logStreamName=stream, limit=2,
                                        nextToken=page["nextBackwardToken"])
    assert back_from_end["events"] == everything[-2:]
    # ... and at the start: forward again from the first event.
    start = logs.get_log_events(logGroupName=group, logStreamName=stream, limit=2,
                                startFromHead=True)
    before = logs.get_log_events(logGroupName=group, logStreamName=stream, limit=2,
                                 nextToken=start["nextBackwardToken"])
    assert before["events"] == []
    again = logs.get_log_events(logGroupName=group, logStreamName=stream, limit=2,
                                nextToken=before["nextForwardToken"])
    assert again["events"] == everything[:2]

    # Without a token: the newest; then backwards to the start.
    newest = logs.get_log_events(logGroupName=group, logStreamName=stream, limit=2)
    assert newest["events"] == everything[-2:]
    back = logs.get_log_events(logGroupName=group, logStreamName=stream, limit=2,
                               nextToken=newest["nextBackwardToken"])
    assert back["events"] == everything[-4:-2]

    # A time window: startTime inclusive, endTime exclusive.
    first_ts = everything[0]["timestamp"]
    early = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True,
                                endTime=first_ts + 1)["events"]
    assert early and all(e["timestamp"] == first_ts for e in early)

    with pytest.raises(ClientError) as exc:
        logs.get_log_events(logGroupName=group, logStreamName="2024/01/01/[$LATEST]nope")
    assert error(exc) == ("ResourceNotFoundException", 400,
                          "The specified log stream does not exist.")


def test_filter_log_events_interleaves_streams_and_applies_patterns(
        logs: Any, text_fn: dict[str, Any]) -> None:
    group = text_fn["group"]
    found = logs.filter_log_events(logGroupName=group, filterPattern="ERROR -ARGUMENTS")
    assert [e["message"] for e in found["events"]] == ["[ERROR 400] BAD REQUEST"] * 3
    assert [e["logStreamName"] for e in found["events"]] == [
        text_fn["latest"], text_fn["latest"], text_fn["v1"]]
    assert len({e["eventId"] for e in found["events"]}) == 3
    stamps = [e["timestamp"] for e in found["events"]]
    assert stamps == sorted(stamps)

    tags = logs.filter_log_events(logGroupName=group, filterPattern='?"tag one" ?"tag three"')
    assert [e["message"] for e in tags["events"]] == ["tag one", "tag three"]
    # A "?" term starts a group the terms after it join (CDK's anyTermGroup).
    groups = logs.filter_log_events(logGroupName=group,
                                    filterPattern='?"[ERROR 400]" REQUEST ?tag three')
    assert [e["message"] for e in groups["events"]] == [
        "[ERROR 400] BAD REQUEST", "[ERROR 400] BAD REQUEST", "[ERROR 400] BAD REQUEST",
        "tag three"]
    only_v1 = logs.filter_log_events(logGroupName=group, logStreamNames=[text_fn["v1"]],
                                     filterPattern="tag")
    assert [e["message"] for e in only_v1["events"]] == ["tag three"]

    # Pages of two, until no nextToken: the same events as in one answer.
    whole = logs.filter_log_events(logGroupName=group)["events"]
    paged, token = [], None
    while True:
        kwargs: dict[str, Any] = {"nextToken": token} if token else {}
        page = logs.filter_log_events(logGroupName=group, limit=2, **kwargs)
        paged += page["events"]
        token = page.get("nextToken")
        if not token:
            break
    assert paged == whole and len(whole) > 10
    # startFromHead false: newest first, and the token keeps that direction.
    newest, token = [], None
    while True:
        kwargs = {"nextToken": token} if token else {"startFromHead": False}
        page = logs.filter_log_events(logGroupName=group, limit=3, **kwargs)
        newest += page["events"]
        token = page.get("nextToken")
        if not token:
            break
    assert newest == whole[::-1]

    later = logs.filter_log_events(logGroupName=group, startTime=whole[-1]["timestamp"] + 1)
    assert later["events"] == []
    with pytest.raises(ClientError) as exc:
        logs.filter_log_events(logGroupName=group, filterPattern="{ $.level = ")
    code, status, message = error(exc)
    assert (code, status) == ("InvalidParameterException", 400) and "filter pattern" in message


def test_json_patterns_on_a_json_logging_function(logs: Any, lam_m: Any) -> None:
    name = f"cwl-json-{uuid.uuid4().hex[:6]}"
    create(lam_m, name, JSON_APP, LoggingConfig={"LogFormat": "JSON"})
    invoke(lam_m, name)
    group = f"/aws/lambda/{name}"
    errors = logs.filter_log_events(logGroupName=group, filterPattern='{ $.level = "ERROR" }')
    assert [json.loads(e["message"])["message"] for e in errors["events"]] == ["it broke"]
    starts = logs.filter_log_events(logGroupName=group,
                                    filterPattern='{ $.type = "platform.start" }')
    assert len(starts["events"]) == 1
    both = logs.filter_log_events(
        logGroupName=group,
        filterPattern='{ $.level = "ERROR" || $.record.metrics.memorySizeMB >= 128 }')
    assert len(both["events"]) == 2  # the error and platform.report


def test_retention_and_live_tail_answer_truthfully(logs: Any, server: NimbusProcess,
                                                   text_fn: dict[str, Any]) -> None:
    group = text_fn["group"]
    logs.put_retention_policy(logGroupName=group, retentionInDays=30)  # the server's own
    with pytest.raises(ClientError) as exc:
        logs.put_retention_policy(logGroupName=group, retentionInDays=7)
    code, _, message = error(exc)
    assert code == "InvalidParameterException" and "log_retention_days" in message
    with pytest.raises(ClientError) as exc:
        logs.delete_retention_policy(logGroupName=group)
    assert error(exc)[0] == "InvalidParameterException"
    with pytest.raises(ClientError) as exc:
        logs.put_retention_policy(logGroupName="/aws/lambda/nope", retentionInDays=30)
    assert error(exc)[0] == "ResourceNotFoundException"

    # StartLiveTail's endpoint has a host prefix: sent to nimbus itself it is refused.
    plain = boto3.client(
        "logs", endpoint_url=server.endpoint, region_name="us-east-1",
        aws_access_key_id="x", aws_secret_access_key="x",
        config=BotoConfig(inject_host_prefix=False, retries={"max_attempts": 0}))
    with pytest.raises(ClientError) as exc:
        plain.start_live_tail(logGroupIdentifiers=[group])
    code, _, message = error(exc)
    assert code == "InvalidOperationException" and "FilterLogEvents" in message


def test_the_aws_cli_filters_and_gets_events(server: NimbusProcess,
                                            text_fn: dict[str, Any]) -> None:
    """AWS CLI v1 (this venv's) has filter-log-events and get-log-events; `aws logs tail`
    is CLI v2 only (see the polling test below for what it does)."""
    group = text_fn["group"]
    found = aws_json(server.endpoint, "logs", "filter-log-events", "--log-group-name", group,
                     "--filter-pattern", "AUTHORIZED")
    assert [e["message"] for e in found["events"]] == ["[SUCCESS 200] AUTHORIZED REQUEST"] * 3
    got = aws_json(server.endpoint, "logs", "get-log-events", "--log-group-name", group,
                   "--log-stream-name", text_fn["v1"], "--start-from-head")
    assert "tag three" in [e["message"] for e in got["events"]]
    assert got["nextForwardToken"].startswith("f/")
    paged = aws_json(server.endpoint, "logs", "filter-log-events", "--log-group-name", group,
                     "--page-size", "2")  # the CLI follows nextToken itself
    assert len(paged["events"]) == len(
        server.client("logs").filter_log_events(logGroupName=group)["events"])
    missing = aws_cli(server.endpoint, "logs", "filter-log-events", "--log-group-name",
                      "/aws/lambda/nope", ok=False)
    assert "ResourceNotFoundException" in missing.stderr


def test_polling_as_aws_logs_tail_follow_sees_a_new_invocation(
        logs: Any, lam_m: Any, text_fn: dict[str, Any]) -> None:
    """What `aws logs tail GROUP --follow` (CLI v2) does: FilterLogEvents from the newest
    timestamp seen, skipping eventIds already printed."""
    group = text_fn["group"]
    seen = {e["eventId"]: e for e in logs.filter_log_events(logGroupName=group)["events"]}
    start = max(e["timestamp"] for e in seen.values())
    invoke(lam_m, text_fn["name"], tag="followed")
    new: list[str] = []
    deadline = time.monotonic() + 30
    while "tag followed" not in new and time.monotonic() < deadline:
        for event in logs.filter_log_events(logGroupName=group, startTime=start)["events"]:
            if event["eventId"] not in seen:
                seen[event["eventId"]] = event
                new.append(event["message"])
                start = max(start, event["timestamp"])
    assert "tag followed" in new and new[0].startswith("START RequestId")
    assert len(new) == len(set(new)) or new.count("[ERROR 400] BAD REQUEST") == 1


def test_a_missing_member_is_the_invalid_parameter_logs_clients_catch(
        server: NimbusProcess, text_fn: dict[str, Any]) -> None:
    raw = boto3.client(
        "logs", endpoint_url=server.endpoint, region_name="us-east-1",
        aws_access_key_id="x", aws_secret_access_key="x",
        config=BotoConfig(parameter_validation=False, retries={"max_attempts": 0}))
    with pytest.raises(raw.exceptions.InvalidParameterException) as exc:
        raw.get_log_events(logGroupName=text_fn["group"])
    assert error(exc) == ("InvalidParameterException", 400,
                          "1 validation error detected: Value null at 'logStreamName' failed "
                          "to satisfy constraint: Member must not be null")
