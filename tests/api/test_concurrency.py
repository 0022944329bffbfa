"""Reserved concurrency holds across the server and its async workers, and what a
killed worker held is given back."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.conftest import CLUSTER, ROLE, live_server, make_zip
from tests.sink import Sink

# Tells the sink it started (so the test waits on that, not on a sleep), then holds.
SLOW = """
import json, time, urllib.request
def handler(event, context):
    urllib.request.urlopen(urllib.request.Request(
        event["sink"], data=json.dumps({"started": context.aws_request_id}).encode(),
        headers={"content-type": "application/json"}), timeout=5)
    time.sleep(event["seconds"])
    return "done"
"""


@pytest.mark.sandbox
@pytest.mark.skipif(
    CLUSTER, reason="kills the server's async worker to show its sandbox's slot is freed with "
    "it; in cluster mode the invocation runs on the worker node, which rightly keeps running "
    "it (and holding its slot) when the server's async worker that forwarded it dies")
def test_a_reservation_counts_async_and_sync_invocations_together(
    tmp_path: Path, sink: Sink
) -> None:
    with live_server(tmp_path / "data", {"NIMBUS_ASYNC_WORKERS": "1"}) as server:
        lam = server.client()
        lam.create_function(FunctionName="slow", Runtime="python3.12", Role=ROLE,
                            Handler="app.handler", Timeout=60,
                            Code={"ZipFile": make_zip({"app.py": SLOW})})
        lam.put_function_concurrency(FunctionName="slow", ReservedConcurrentExecutions=1)
        event = b'{"sink": "%s", "seconds": 30}' % sink.url.encode()
        assert lam.invoke(FunctionName="slow", InvocationType="Event",
                          Payload=event)["StatusCode"] == 202
        sink.wait_until(lambda records: len(records) == 1)  # running in the worker
        quick = b'{"sink": "%s", "seconds": 0}' % sink.url.encode()
        with pytest.raises(lam.exceptions.TooManyRequestsException) as info:
            lam.invoke(FunctionName="slow", Payload=quick)
        assert info.value.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"

        # kill -9 the worker mid-invocation: its slot must not stay taken. (The event
        # comes back and runs again in the new worker, for 30 s: give it no chance.)
        lam.put_function_concurrency(FunctionName="slow", ReservedConcurrentExecutions=2)
        (worker,) = server.workers()
        os.kill(worker, signal.SIGKILL)
        sink.wait_until(lambda records: len(records) == 2, timeout=60)  # redelivered
        # One slot is the redelivered event's; had the dead worker's stayed counted,
        # there would be none left for this call.
        result = lam.invoke(FunctionName="slow", Payload=quick)
        assert result["Payload"].read() == b'"done"'
