"""SnapStart through the Lambda API: configuration as Lambda reports it, and published
versions cold-starting from their initialised template (Restore Duration in REPORT)."""

from __future__ import annotations

import base64
import io
import json
import re
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.api.conftest import error
from tests.conftest import CLUSTER, ROLE

pytestmark = pytest.mark.sandbox

APP = '''
import os, time, uuid
time.sleep(0.5)
BOOT = uuid.uuid4().hex


def handler(event, context):
    time.sleep(event.get("hold", 0))
    return {"boot": BOOT, "pid": os.getpid(), "uuid": str(uuid.uuid4())}
'''


def _zip(app: str = APP) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", app)
    return buf.getvalue()


def _wait_active(lam: Any, name: str, version: str) -> None:
    lam.get_waiter("published_version_active").wait(
        FunctionName=name, Qualifier=version, WaiterConfig={"Delay": 0.2, "MaxAttempts": 150})


def _invoke(lam: Any, name: str, qualifier: str, hold: float = 0) -> tuple[dict, str]:
    out = lam.invoke(FunctionName=name, Qualifier=qualifier, LogType="Tail",
                     Payload=json.dumps({"hold": hold}).encode())
    assert "FunctionError" not in out, out
    return json.loads(out["Payload"].read()), base64.b64decode(out["LogResult"]).decode()


def test_snapstart_published_version(lam: Any) -> None:
    name = f"snap-{uuid.uuid4().hex[:8]}"
    created = lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler",
                                  Role=ROLE, Code={"ZipFile": _zip()}, Timeout=10,
                                  SnapStart={"ApplyOn": "PublishedVersions"})
    assert created["SnapStart"] == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "Off"}
    published = lam.publish_version(FunctionName=name)
    version = published["Version"]
    # As Lambda: Pending while the snapshot (the template) is made, not invocable.
    assert published["State"] == "Pending" and published["StateReasonCode"] == "Creating"
    with pytest.raises(ClientError) as exc:
        lam.invoke(FunctionName=name, Qualifier=version, Payload=b"{}")
    code, status, message = error(exc)
    assert (code, status) == ("ResourceConflictException", 409)
    assert message.endswith("The function is currently in the following state: Pending")
    _wait_active(lam, name, version)
    got = lam.get_function_configuration(FunctionName=name, Qualifier=version)
    assert got["SnapStart"] == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "On"}
    assert got["State"] == "Active" and "StateReasonCode" not in got

    # Two concurrent invocations: two environments, both from one init.
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: _invoke(lam, name, version, hold=0.3), range(2)))
    (a, log_a), (b, log_b) = results
    assert a["boot"] == b["boot"] and a["uuid"] != b["uuid"]
    for log in (log_a, log_b):
        assert "Init Duration" not in log
        restore = re.search(r"Restore Duration: ([\d.]+) ms\tBilled Restore Duration: \d+ ms", log)
        assert restore is not None, log
        assert float(restore.group(1)) < 100

    # $LATEST never starts from the template: init runs in its own environment.
    latest, log_latest = _invoke(lam, name, "$LATEST")
    assert latest["boot"] != a["boot"]
    init = re.search(r"Init Duration: ([\d.]+) ms", log_latest)
    assert init is not None and float(init.group(1)) >= 500


def test_snapstart_init_failure_fails_the_version(lam: Any) -> None:
    name = f"snapfail-{uuid.uuid4().hex[:8]}"
    lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler",
                        Role=ROLE, Code={"ZipFile": _zip("raise RuntimeError('no init')\n")},
                        SnapStart={"ApplyOn": "PublishedVersions"}, Publish=True)
    with pytest.raises(Exception, match="failure state"):
        _wait_active(lam, name, "1")
    got = lam.get_function_configuration(FunctionName=name, Qualifier="1")
    assert got["State"] == "Failed" and got["StateReasonCode"] == "FunctionError"
    assert "RuntimeError" in got["StateReason"]
    with pytest.raises(ClientError) as exc:
        lam.invoke(FunctionName=name, Qualifier="1", Payload=b"{}")
    assert error(exc)[:2] == ("ResourceConflictException", 409)
    # $LATEST is unaffected by SnapStart: it fails its own init, as any function.
    out = lam.invoke(FunctionName=name, Payload=b"{}")
    assert out["FunctionError"] == "Unhandled"


@pytest.mark.skipif(
    CLUSTER, reason="/_nimbus/snapstart lists the templates of the server asked; in cluster "
    "mode the invocation forks from the worker node's own template, so the server's shows "
    "no fork")
def test_snapstart_endpoint_lists_templates(lam: Any, request: pytest.FixtureRequest) -> None:
    from tests.api.conftest import server_of

    name = f"snapinfo-{uuid.uuid4().hex[:8]}"
    lam.create_function(FunctionName=name, Runtime="python3.12",
                        Handler="app.handler", Role=ROLE, Code={"ZipFile": _zip()},
                        SnapStart={"ApplyOn": "PublishedVersions"}, Publish=True)
    _wait_active(lam, name, "1")
    _invoke(lam, name, "1")
    got = httpx.get(f"{server_of(request).endpoint}/_nimbus/snapstart").json()
    mine = [t for t in got["Templates"] if t["FunctionName"] == name]
    assert len(mine) == 1, got
    t = mine[0]
    assert t["Version"] == "1" and t["Pid"] > 0 and t["Forks"] >= 1
    assert t["InitDurationMs"] >= 500 and t["MemoryBytes"] > 0


@pytest.mark.parametrize("runtime", ["python3.11", "provided.al2023"])
def test_snapstart_refused_on_runtimes_without_it(lam: Any, runtime: str) -> None:
    name = f"snapno-{uuid.uuid4().hex[:8]}"
    kwargs: dict[str, Any] = {"Handler": "app.handler"} if runtime.startswith("python") \
        else {"Handler": "bootstrap"}
    with pytest.raises(ClientError) as exc:
        lam.create_function(FunctionName=name, Runtime=runtime, Role=ROLE,
                            Code={"ZipFile": _zip()}, SnapStart={"ApplyOn": "PublishedVersions"},
                            **kwargs)
    assert error(exc) == ("InvalidParameterValueException", 400,
                          f"{runtime} is not supported for SnapStart enabled functions.")
    with pytest.raises(ClientError):
        lam.get_function(FunctionName=name)  # nothing half-stored
    # Nor by an update: turning it on, or moving a SnapStart function to such a runtime.
    lam.create_function(FunctionName=name, Runtime="python3.12", Role=ROLE,
                        Handler="app.handler", Code={"ZipFile": _zip()})
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    with pytest.raises(ClientError) as exc:
        lam.update_function_configuration(FunctionName=name, Runtime=runtime,
                                          SnapStart={"ApplyOn": "PublishedVersions"})
    assert error(exc)[0] == "InvalidParameterValueException"
    got = lam.get_function_configuration(FunctionName=name)
    assert got["Runtime"] == "python3.12" and got["SnapStart"]["ApplyOn"] == "None"


def test_snapstart_refusals(lam: Any) -> None:
    name = f"snapbad-{uuid.uuid4().hex[:8]}"
    base = {"FunctionName": name, "Runtime": "python3.12", "Role": ROLE,
            "Handler": "app.handler", "Code": {"ZipFile": _zip()}}
    with pytest.raises(ClientError) as exc:
        lam.create_function(**base, SnapStart={"ApplyOn": "invalidOption"})
    assert error(exc) == (
        "ValidationException", 400,
        "1 validation error detected: Value 'invalidOption' at 'snapStart.applyOn' failed to "
        "satisfy constraint: Member must satisfy enum value set: [PublishedVersions, None]")
    with pytest.raises(ClientError) as exc:
        lam.create_function(**base, SnapStart={"ApplyOn": "PublishedVersions"},
                            EphemeralStorage={"Size": 1024})
    code, status, message = error(exc)
    assert (code, status) == ("InvalidParameterValueException", 400) and "512 MB" in message
    # ApplyOn None is accepted anywhere, and SnapStart can be turned off again.
    lam.create_function(**base, SnapStart={"ApplyOn": "PublishedVersions"})
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    off = lam.update_function_configuration(FunctionName=name, SnapStart={"ApplyOn": "None"})
    assert off["SnapStart"] == {"ApplyOn": "None", "OptimizationStatus": "Off"}
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    published = lam.publish_version(FunctionName=name)
    assert published["State"] == "Active"  # no snapshot to make: Active at once


def test_snapstart_refuses_provisioned_concurrency(lam: Any) -> None:
    """Lambda: SnapStart does not support provisioned concurrency. Refused on the version
    and on an alias routing to it (either weight), and nothing is stored."""
    name = f"snappc-{uuid.uuid4().hex[:8]}"
    lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler",
                        Role=ROLE, Code={"ZipFile": _zip("def handler(e, c):\n    return 1\n")},
                        SnapStart={"ApplyOn": "PublishedVersions"}, Publish=True)
    lam.update_function_configuration(FunctionName=name, SnapStart={"ApplyOn": "None"})
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    assert lam.publish_version(FunctionName=name)["Version"] == "2"  # without SnapStart
    lam.create_alias(FunctionName=name, Name="snap", FunctionVersion="1")
    lam.create_alias(FunctionName=name, Name="split", FunctionVersion="2",
                     RoutingConfig={"AdditionalVersionWeights": {"1": 0.5}})
    for qualifier in ("1", "snap", "split"):
        with pytest.raises(ClientError) as exc:
            lam.put_provisioned_concurrency_config(
                FunctionName=name, Qualifier=qualifier, ProvisionedConcurrentExecutions=1)
        code, status, message = error(exc)
        assert (code, status) == ("InvalidParameterValueException", 400), qualifier
        assert "not supported for SnapStart enabled functions" in message
        with pytest.raises(ClientError) as exc:
            lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier=qualifier)
        assert error(exc)[0] == "ProvisionedConcurrencyConfigNotFoundException"
    assert lam.list_provisioned_concurrency_configs(
        FunctionName=name)["ProvisionedConcurrencyConfigs"] == []
    # A version without SnapStart is provisioned as usual.
    ok = lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="2",
                                                ProvisionedConcurrentExecutions=1)
    assert ok["RequestedProvisionedConcurrentExecutions"] == 1
    lam.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="2")
