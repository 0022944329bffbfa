"""Async invocation through boto3: durable queue, retries, max age, destinations,
dead letters and re-drive, throttling, provisioned concurrency."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROLE, live_server, make_zip
from tests.nimbus_process import NimbusProcess
from tests.sink import LOCAL_WEBHOOKS, Sink

pytestmark = pytest.mark.sandbox

FAST = {"NIMBUS_RETRY_BASE_SECONDS": "0.05", "NIMBUS_THROTTLE_DELAY_SECONDS": "0.1",
        **LOCAL_WEBHOOKS}

APP = """
import json, time
def handler(event, context):
    if event.get("fail"):
        raise RuntimeError("asked to fail: " + str(event.get("id")))
    if event.get("sleep"):
        time.sleep(event["sleep"])
    return {"ok": event.get("id")}
"""


@pytest.fixture(params=["1", "0"], ids=["worker", "in-process"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NimbusProcess]:
    """A server of the test's own that runs async events in a worker process, or in
    itself."""
    env = {**FAST, "NIMBUS_ASYNC_WORKERS": request.param}
    with live_server(tmp_path / "data", env) as proc:
        yield proc


def fn_arn(name: str) -> str:
    return f"arn:aws:lambda:us-east-1:000000000000:function:{name}"


def create(lam: Any, name: str = "worker", code: str = APP, **kw: Any) -> dict[str, Any]:
    return lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": code})},
        **kw,
    )


def send(lam, event: dict, name: str = "worker", **kw) -> str:
    resp = lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps(event), **kw)
    assert resp["StatusCode"] == 202
    return resp["ResponseMetadata"]["RequestId"]


def test_success_and_failure_destinations(server: NimbusProcess, sink: Sink) -> None:
    lam = server.client()
    create(lam)
    config = lam.put_function_event_invoke_config(
        FunctionName="worker",
        MaximumRetryAttempts=1,
        DestinationConfig={
            "OnSuccess": {"Destination": sink.url},
            "OnFailure": {"Destination": sink.url},
        },
    )
    assert config["MaximumRetryAttempts"] == 1
    assert config["FunctionArn"] == fn_arn("worker") + ":$LATEST"
    ok_id = send(lam, {"id": 1})
    bad_id = send(lam, {"id": 2, "fail": True})
    records = sink.wait_until(lambda r: len(r) >= 2)
    by_id = {r["requestContext"]["requestId"]: r for r in records}
    ok, bad = by_id[ok_id], by_id[bad_id]
    assert ok["requestContext"]["condition"] == "Success"
    assert ok["requestContext"]["functionArn"] == fn_arn("worker") + ":$LATEST"
    assert ok["requestPayload"] == {"id": 1} and ok["responsePayload"] == {"ok": 1}
    assert ok["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert ok["version"] == "1.0" and ok["timestamp"].endswith("Z")
    assert bad["requestContext"]["condition"] == "RetriesExhausted"
    assert bad["requestContext"]["approximateInvokeCount"] == 2  # 1 try + 1 retry
    assert bad["responseContext"]["functionError"] == "Unhandled"
    assert bad["responsePayload"]["errorType"] == "RuntimeError"


def test_legacy_invoke_async_queues_the_event(server: NimbusProcess, sink: Sink) -> None:
    lam = server.client()
    create(lam)
    lam.put_function_event_invoke_config(
        FunctionName="worker", DestinationConfig={"OnSuccess": {"Destination": sink.url}}
    )
    answer = lam.invoke_async(FunctionName="worker", InvokeArgs=json.dumps({"id": "legacy"}))
    assert answer["Status"] == 202
    request_id = answer["ResponseMetadata"]["RequestId"]
    (record,) = sink.wait_until(lambda r: len(r) >= 1)
    assert record["requestContext"]["requestId"] == request_id
    assert record["requestPayload"] == {"id": "legacy"}
    assert record["responsePayload"] == {"ok": "legacy"}
    # What Invoke refuses, InvokeAsync refuses too.
    with pytest.raises(lam.exceptions.InvalidRequestContentException):
        lam.invoke_async(FunctionName="worker", InvokeArgs=b"not json")
    with pytest.raises(lam.exceptions.RequestTooLargeException, match="InvokeAsync"):
        lam.invoke_async(FunctionName="worker", InvokeArgs=json.dumps({"x": "y" * 300_000}))
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke_async(FunctionName="nobody", InvokeArgs=b"{}")


def test_function_destination_and_config_api(server: NimbusProcess, sink: Sink) -> None:
    lam = server.client()
    create(lam)
    relay = (
        "import json, urllib.request\n"
        "def handler(event, context):\n"
        "    req = urllib.request.Request(event['requestPayload']['sink'],\n"
        "        data=json.dumps(event).encode(), headers={'Content-Type': 'application/json'})\n"
        "    urllib.request.urlopen(req, timeout=5).read()\n"
    )
    create(lam, "relay", relay)
    lam.put_function_event_invoke_config(
        FunctionName="worker",
        MaximumRetryAttempts=0,
        DestinationConfig={"OnFailure": {"Destination": fn_arn("relay")}},
    )
    updated = lam.update_function_event_invoke_config(
        FunctionName="worker", MaximumEventAgeInSeconds=600
    )
    assert updated["MaximumRetryAttempts"] == 0 and updated["MaximumEventAgeInSeconds"] == 600
    assert updated["DestinationConfig"]["OnFailure"]["Destination"] == fn_arn("relay")
    listed = lam.list_function_event_invoke_configs(FunctionName="worker")
    assert len(listed["FunctionEventInvokeConfigs"]) == 1
    request_id = send(lam, {"fail": True, "sink": sink.url})
    (record,) = sink.wait_until(lambda r: len(r) >= 1)
    assert record["requestContext"]["requestId"] == request_id
    assert record["requestContext"]["approximateInvokeCount"] == 1
    # An SQS queue this nimbus does not have is refused as Lambda refuses a missing function.
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="is invalid"):
        lam.put_function_event_invoke_config(
            FunctionName="worker",
            DestinationConfig={
                "OnFailure": {"Destination": "arn:aws:sqs:us-east-1:000000000000:q"}
            },
        )
    lam.delete_function_event_invoke_config(FunctionName="worker")
    with pytest.raises(lam.exceptions.ResourceNotFoundException, match="EventInvokeConfig"):
        lam.get_function_event_invoke_config(FunctionName="worker")


def dead_letters(server: NimbusProcess, **params: str) -> list[dict]:
    return httpx.get(f"{server.endpoint}/_nimbus/dead-letters", params=params).json()["DeadLetters"]


def test_dead_letters_max_age_and_redrive(server: NimbusProcess, sink: Sink) -> None:
    lam = server.client()
    create(lam)
    lam.put_function_event_invoke_config(FunctionName="worker", MaximumRetryAttempts=2)
    request_id = send(lam, {"id": 7, "fail": True})
    deadline = time.monotonic() + 60
    letters: list[dict] = []
    while not letters and time.monotonic() < deadline:
        letters = dead_letters(server, FunctionName="worker")
        time.sleep(0.05)  # polling an HTTP listing: there is no event to await here
    (letter,) = letters
    assert letter["request_id"] == request_id and letter["condition"] == "RetriesExhausted"
    assert letter["attempts"] == 3 and json.loads(letter["payload"]) == {"id": 7, "fail": True}
    assert "asked to fail: 7" in letter["error"]

    # Re-drive after fixing the function: it now succeeds and reaches OnSuccess.
    lam.update_function_code(
        FunctionName="worker",
        ZipFile=make_zip({"app.py": APP.replace('if event.get("fail"):', "if False:")}),
    )
    lam.put_function_event_invoke_config(
        FunctionName="worker", DestinationConfig={"OnSuccess": {"Destination": sink.url}}
    )
    r = httpx.post(f"{server.endpoint}/_nimbus/dead-letters/{letter['id']}/redrive")
    assert r.status_code == 202
    (record,) = sink.wait_until(lambda rs: len(rs) >= 1)
    assert record["requestPayload"] == {"id": 7, "fail": True}
    assert dead_letters(server, FunctionName="worker") == []
    again = httpx.post(f"{server.endpoint}/_nimbus/dead-letters/{letter['id']}/redrive")
    assert again.status_code == 409


def test_function_dead_letter_config_queue(server: NimbusProcess) -> None:
    lam = server.client()
    dlq = "arn:aws:sqs:us-east-1:000000000000:worker-dlq"
    create(lam, DeadLetterConfig={"TargetArn": dlq})
    lam.put_function_event_invoke_config(FunctionName="worker", MaximumRetryAttempts=0)
    send(lam, {"fail": True})
    deadline = time.monotonic() + 60
    while not dead_letters(server, Queue=dlq) and time.monotonic() < deadline:
        time.sleep(0.05)
    (letter,) = dead_letters(server, Queue=dlq)
    assert letter["function_name"] == "worker" and letter["attempts"] == 1


def test_async_payload_limit_and_throttled_events_wait(server: NimbusProcess, sink: Sink) -> None:
    lam = server.client()
    create(lam)
    with pytest.raises(lam.exceptions.RequestTooLargeException, match="262144 bytes"):
        lam.invoke(
            FunctionName="worker", InvocationType="Event", Payload=json.dumps({"x": "y" * 300_000})
        )
    lam.put_function_concurrency(FunctionName="worker", ReservedConcurrentExecutions=0)
    lam.put_function_event_invoke_config(
        FunctionName="worker", DestinationConfig={"OnSuccess": {"Destination": sink.url}}
    )
    send(lam, {"id": "waited"})
    with pytest.raises(AssertionError):
        sink.wait_until(lambda r: len(r) >= 1, timeout=1.0)  # throttled, not failed
    assert dead_letters(server, FunctionName="worker") == []
    lam.delete_function_concurrency(FunctionName="worker")
    (record,) = sink.wait_until(lambda r: len(r) >= 1)
    assert record["requestPayload"] == {"id": "waited"}


def test_provisioned_concurrency_has_no_cold_start(server: NimbusProcess) -> None:
    lam = server.client()
    create(lam)
    lam.publish_version(FunctionName="worker")
    lam.create_alias(FunctionName="worker", Name="live", FunctionVersion="1")
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="unpublished"):
        lam.put_provisioned_concurrency_config(
            FunctionName="worker", Qualifier="$LATEST", ProvisionedConcurrentExecutions=1
        )
    put = lam.put_provisioned_concurrency_config(
        FunctionName="worker", Qualifier="live", ProvisionedConcurrentExecutions=2
    )
    assert put["RequestedProvisionedConcurrentExecutions"] == 2
    assert put["Status"] in ("IN_PROGRESS", "READY")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got = lam.get_provisioned_concurrency_config(FunctionName="worker", Qualifier="live")
        if got["Status"] == "READY":
            break
        time.sleep(0.05)
    assert got["Status"] == "READY" and got["AllocatedProvisionedConcurrentExecutions"] == 2
    resp = lam.invoke(FunctionName="worker", Qualifier="live", LogType="Tail")
    log = base64.b64decode(resp["LogResult"]).decode()
    assert "REPORT RequestId" in log and "Init Duration" not in log
    listed = lam.list_provisioned_concurrency_configs(FunctionName="worker")
    assert [c["FunctionArn"] for c in listed["ProvisionedConcurrencyConfigs"]] == [
        fn_arn("worker") + ":live"
    ]
    lam.delete_provisioned_concurrency_config(FunctionName="worker", Qualifier="live")
    with pytest.raises(lam.exceptions.ProvisionedConcurrencyConfigNotFoundException):
        lam.get_provisioned_concurrency_config(FunctionName="worker", Qualifier="live")


def test_provisioned_concurrency_beyond_the_reservation_or_the_account_is_refused(
    server: NimbusProcess,
) -> None:
    lam = server.client()
    create(lam, "pcv")
    lam.publish_version(FunctionName="pcv")
    lam.get_waiter("function_updated_v2").wait(FunctionName="pcv")
    lam.update_function_configuration(FunctionName="pcv", Timeout=5)
    lam.get_waiter("function_updated_v2").wait(FunctionName="pcv")
    assert lam.publish_version(FunctionName="pcv")["Version"] == "2"
    lam.put_function_concurrency(FunctionName="pcv", ReservedConcurrentExecutions=3)
    lam.put_provisioned_concurrency_config(
        FunctionName="pcv", Qualifier="1", ProvisionedConcurrentExecutions=2)
    # Both configs together would need more than the 3 reserved.
    with pytest.raises(lam.exceptions.InvalidParameterValueException,
                       match="should not be greater than the reservedConcurrentExecution"):
        lam.put_provisioned_concurrency_config(
            FunctionName="pcv", Qualifier="2", ProvisionedConcurrentExecutions=2)
    lam.put_provisioned_concurrency_config(  # replacing its own config counts it once
        FunctionName="pcv", Qualifier="1", ProvisionedConcurrentExecutions=3)
    lam.delete_provisioned_concurrency_config(FunctionName="pcv", Qualifier="1")
    lam.delete_function_concurrency(FunctionName="pcv")
    with pytest.raises(lam.exceptions.InvalidParameterValueException,
                       match=r"greater than account's unreserved concurrency \[1000\]"):
        lam.put_provisioned_concurrency_config(
            FunctionName="pcv", Qualifier="2", ProvisionedConcurrentExecutions=1001)
    with pytest.raises(lam.exceptions.InvalidParameterValueException,
                       match=r"below its minimum value of \[100\]"):
        lam.put_provisioned_concurrency_config(
            FunctionName="pcv", Qualifier="2", ProvisionedConcurrentExecutions=901)
    with pytest.raises(lam.exceptions.ProvisionedConcurrencyConfigNotFoundException):
        lam.get_provisioned_concurrency_config(FunctionName="pcv", Qualifier="2")
    # Without a reservation, other unreserved configs count against the account too.
    lam.put_provisioned_concurrency_config(
        FunctionName="pcv", Qualifier="1", ProvisionedConcurrentExecutions=500)
    with pytest.raises(lam.exceptions.InvalidParameterValueException,
                       match=r"below its minimum value of \[100\]"):
        lam.put_provisioned_concurrency_config(
            FunctionName="pcv", Qualifier="2", ProvisionedConcurrentExecutions=401)
    # A reservation that leaves the account its minimum still holds configs within it.
    lam.delete_provisioned_concurrency_config(FunctionName="pcv", Qualifier="1")
    lam.put_function_concurrency(FunctionName="pcv", ReservedConcurrentExecutions=900)
    lam.put_provisioned_concurrency_config(
        FunctionName="pcv", Qualifier="2", ProvisionedConcurrentExecutions=900)
    lam.delete_provisioned_concurrency_config(FunctionName="pcv", Qualifier="2")
    lam.delete_function(FunctionName="pcv")


KILLABLE = """
import json, time, urllib.request
def handler(event, context):
    with open("/proc/self/cgroup") as f:
        cgroups = f.read()
    req = urllib.request.Request(event["sink"], data=json.dumps({"cgroups": cgroups}).encode(),
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=5).read()
    time.sleep(30)
"""


def kill_environment(cgroups: str) -> int:
    """SIGKILL every process of the environment, from the host, by its cgroup."""
    import os
    import signal

    killed = 0
    for line in cgroups.splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" not in controllers.split(","):
            continue
        with open(f"/sys/fs/cgroup/memory{path}/cgroup.procs") as procs:
            for pid in procs.read().split():
                os.kill(int(pid), signal.SIGKILL)
                killed += 1
    return killed


def test_killed_environment_is_retried_then_sent_to_on_failure(server: NimbusProcess) -> None:
    lam = server.client()
    create(lam, code=KILLABLE, Timeout=60)
    started, failures = Sink(), Sink()
    try:
        lam.put_function_event_invoke_config(
            FunctionName="worker",
            MaximumRetryAttempts=1,
            DestinationConfig={"OnFailure": {"Destination": failures.url}},
        )
        request_id = send(lam, {"sink": started.url})
        for attempt in (1, 2):  # the first run and its one retry
            runs = started.wait_until(lambda r, n=attempt: len(r) >= n)
            assert kill_environment(runs[-1]["cgroups"]) >= 1
        (record,) = failures.wait_until(lambda r: len(r) >= 1)
        assert record["requestContext"]["requestId"] == request_id
        assert record["requestContext"]["condition"] == "RetriesExhausted"
        assert record["requestContext"]["approximateInvokeCount"] == 2
        assert record["responsePayload"]["errorType"] == "Runtime.ExitError"
        assert "signal: killed" in record["responsePayload"]["errorMessage"]
        assert len(started.received) == 2  # no third run
    finally:
        started.close()
        failures.close()
