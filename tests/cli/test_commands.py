"""The nimbus CLI, run as a user runs it, against a live server."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.cli.conftest import nimbus_cli
from tests.conftest import ROLE, aws_json, live_server, make_zip
from tests.nimbus_process import NimbusProcess

HANDLER_PRINTS = "def handler(event, context):\n    print('said hello')\n"


@pytest.mark.sandbox
def test_doctor_reports_isolation() -> None:
    result = nimbus_cli(None, "doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[ok  ] namespace:pid" in result.stdout
    assert "namespace isolation: available" in result.stdout


@pytest.mark.sandbox
def test_invoke_ls_and_logs(nimbus: NimbusProcess) -> None:
    lam = nimbus.client()
    code = "print('loading')\ndef handler(event, context):\n    print('got', event)\n    return 7\n"
    lam.create_function(
        FunctionName="cli-fn",
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": code})},
    )
    invoked = nimbus_cli(nimbus, "invoke", "cli-fn", "-p", json.dumps({"a": 1}), "--tail")
    assert invoked.returncode == 0, invoked.stderr
    assert invoked.stdout.strip() == "7"
    assert "got {'a': 1}" in invoked.stderr and "REPORT RequestId" in invoked.stderr

    listed = nimbus_cli(nimbus, "ls")
    assert "cli-fn" in listed.stdout and "python3.12" in listed.stdout

    logs = nimbus_cli(nimbus, "logs", "cli-fn")
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.index("loading") < logs.stdout.index("START RequestId")
    assert "got {'a': 1}" in logs.stdout and "Init Duration" in logs.stdout

    missing = nimbus_cli(nimbus, "invoke", "nope")
    assert missing.returncode == 2  # the caller's mistake (1 is the function's error)
    assert "ResourceNotFoundException: Function not found" in missing.stderr


def test_aws_cli_works_unchanged(nimbus: NimbusProcess, tmp_path) -> None:
    """The AWS CLI, pointed at nimbus, manages functions as on Lambda."""
    (tmp_path / "fn.zip").write_bytes(make_zip({"app.py": "def handler(e, c):\n    return e\n"}))

    def run(*args: str) -> dict:
        return aws_json(nimbus.endpoint, "lambda", *args)

    created = run(
        "create-function",
        "--function-name",
        "from-cli",
        "--runtime",
        "python3.12",
        "--role",
        ROLE,
        "--handler",
        "app.handler",
        "--zip-file",
        f"fileb://{tmp_path / 'fn.zip'}",
    )
    assert created["FunctionArn"].endswith(":function:from-cli")
    listed = run("list-functions")
    assert [f["FunctionName"] for f in listed["Functions"]] == ["from-cli"]
    run("delete-function", "--function-name", "from-cli")
    assert run("list-functions")["Functions"] == []


@pytest.mark.sandbox
def test_logs_past_the_retention_are_deleted(tmp_path: Path) -> None:
    # 0.0001 days is 8.6 s (room for a slow CLI start on a loaded machine before the
    # first read), so the server prunes every 2.2 s.
    with live_server(tmp_path / "data", {"NIMBUS_LOG_RETENTION_DAYS": "0.0001"}) as server:
        lam = server.client()
        lam.create_function(FunctionName="brief", Runtime="python3.12", Role=ROLE,
                            Handler="app.handler",
                            Code={"ZipFile": make_zip({"app.py": HANDLER_PRINTS})})
        lam.invoke(FunctionName="brief", Payload=b"{}")
        assert "said hello" in nimbus_cli(server, "logs", "brief").stdout
        folder = tmp_path / "data" / "logs" / "brief"
        deadline = time.monotonic() + 60
        while folder.exists():  # expires 8.6 s after it was written, gone a prune later
            assert time.monotonic() < deadline, list(folder.iterdir())
            time.sleep(0.2)
        logs = nimbus_cli(server, "logs", "brief")
        assert logs.returncode == 0 and "said hello" not in logs.stdout
