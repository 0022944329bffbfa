"""`--json` on every command that prints data: one JSON document on stdout that parses,
with the API's own field names; and tables that fit 80 columns without losing ids."""

from __future__ import annotations

import json
import os

import pytest

from tests.cli.conftest import nimbus_cli
from tests.conftest import ROLE, make_zip
from tests.nimbus_process import NimbusProcess

LONG = "f" * 30 + "-" + "g" * 33  # 64 characters, Lambda's longest function name
ECHO = make_zip({"app.py": "def handler(e, c):\n  return e\n"})


def data(nimbus: NimbusProcess, *args: str) -> object:
    result = nimbus_cli(nimbus, *args, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_json_of_every_listing(nimbus: NimbusProcess) -> None:
    lam = nimbus.client()
    for name in ("web", LONG):
        lam.create_function(FunctionName=name, Runtime="python3.12", Role=ROLE,
                            Handler="app.handler",
                            Code={"ZipFile": ECHO})
    functions = data(nimbus, "ls")
    assert sorted(f["FunctionName"] for f in functions) == sorted(["web", LONG])
    assert all(f["Runtime"] == "python3.12" for f in functions)

    assert nimbus_cli(nimbus, "url", "create", "web").returncode == 0
    shown = data(nimbus, "url", "show", "web")
    assert shown["AuthType"] == "NONE" and shown["FunctionUrl"].startswith(nimbus.endpoint)
    assert [c["FunctionUrl"] for c in data(nimbus, "url", "ls")] == [shown["FunctionUrl"]]

    assert nimbus_cli(nimbus, "api", "route", "GET /pets/{id}", "web").returncode == 0
    (api,) = data(nimbus, "api", "ls")
    assert api["name"] == "nimbus" and [s["stageName"] for s in api["stages"]] == ["$default"]
    (route,) = api["routes"]
    assert route["routeKey"] == "GET /pets/{id}"
    assert route["integration"]["integrationUri"].endswith(":function:web")
    assert route["urls"] == [api["apiEndpoint"] + "/pets/{id}"]

    assert data(nimbus, "dlq", "ls") == []
    made = nimbus_cli(nimbus, "schedules", "create", "nightly", "--function", "web",
                      "--expression", "rate(1 day)", "--disabled")
    assert made.returncode == 0, made.stderr
    (schedule,) = data(nimbus, "schedules", "list")
    assert schedule["Name"] == "nightly" and schedule["State"] == "DISABLED"


def test_ls_fits_80_columns_without_losing_ids(nimbus: NimbusProcess) -> None:
    nimbus.client().create_function(
        FunctionName=LONG, Runtime="python3.12", Role=ROLE, Handler="app.handler",
        Code={"ZipFile": ECHO})
    result = nimbus_cli_columns(nimbus, 80, "ls")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in result.stdout
    # The name column, read top to bottom, is the whole name (folded, never cut).
    cells = [line.split("│")[1].strip() for line in lines if line.startswith("│")]
    assert "".join(cells) == LONG


def test_url_create_takes_every_cors_setting(nimbus: NimbusProcess) -> None:
    lam = nimbus.client()
    lam.create_function(FunctionName="web", Runtime="python3.12", Role=ROLE,
                        Handler="app.handler",
                        Code={"ZipFile": ECHO})
    made = nimbus_cli(nimbus, "url", "create", "web", "--cors-origin", "https://a.example",
                      "--cors-method", "get", "--cors-method", "POST", "--cors-header",
                      "x-token", "--cors-expose-header", "x-trace", "--cors-max-age", "600",
                      "--cors-credentials")
    assert made.returncode == 0, made.stderr
    assert lam.get_function_url_config(FunctionName="web")["Cors"] == {
        "AllowOrigins": ["https://a.example"], "AllowMethods": ["GET", "POST"],
        "AllowHeaders": ["x-token"], "ExposeHeaders": ["x-trace"], "MaxAge": 600,
        "AllowCredentials": True,
    }
    # An update changes what it names and keeps the rest.
    changed = nimbus_cli(nimbus, "url", "create", "web", "--cors-max-age", "60",
                         "--no-cors-credentials")
    assert changed.returncode == 0 and "updated" in changed.stderr
    cors = lam.get_function_url_config(FunctionName="web")["Cors"]
    assert cors["MaxAge"] == 60 and cors["AllowCredentials"] is False
    assert cors["AllowMethods"] == ["GET", "POST"]
    bad = nimbus_cli(nimbus, "url", "create", "web", "--cors-max-age", "999999")
    assert bad.returncode == 1 and "cors.maxAge" in bad.stderr


def nimbus_cli_columns(nimbus: NimbusProcess, columns: int, *args: str):  # type: ignore[no-untyped-def]
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(columns)
    try:
        return nimbus_cli(nimbus, *args)
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


@pytest.fixture(autouse=True)
def wide_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "300")
