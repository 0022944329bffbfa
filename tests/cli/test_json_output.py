"""`--json` on every command that prints data: one JSON document on stdout that parses,
with the API's own field names; and tables that fit 80 columns without losing ids."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
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


# Every command that takes --json, with what it is run with (after `prepared`) and what its
# document must hold; logs prints one JSON object per line (it can follow).
JSON_CASES: dict[str, tuple[tuple[str, ...], Callable[[Any], bool]]] = {
    "version": (("version",), lambda d: d["version"].count(".") == 2),
    "doctor": (("doctor",), lambda d: any(c["name"] == "root" for c in d["checks"])),
    "credentials": (("credentials", "--data-dir", "{data}"),
                    lambda d: d["AWS_ACCESS_KEY_ID"] and d["AWS_DEFAULT_REGION"] == "us-east-1"),
    "deploy": (("deploy", "{tmp}/site"), lambda d: d["StackName"] == "site" and any(
        r["LogicalResourceId"] == "Function" and r["Action"] == "created"
        for r in d["Resources"]) and d["Urls"][0].startswith("http://")),
    "ls": (("ls",), lambda d: sorted(f["FunctionName"] for f in d) == ["boom", "site", "web"]),
    "invoke": (("invoke", "web", "--data", '{"a": 1}'),
               lambda d: d["Payload"] == {"a": 1} and d["StatusCode"] == 200),
    "logs": (("logs", "web"), lambda d: d and all(e["function"] == "web" for e in d)),
    "url create": (("url", "create", "web"), lambda d: d["AuthType"] == "NONE"),
    "url show": (("url", "show", "web"), lambda d: "/lambda-url/" in d["FunctionUrl"]),
    "url ls": (("url", "ls"), lambda d: len(d) == 2),  # web's, and site's from its deploy
    "api route": (("api", "route", "GET /x", "web"),
                  lambda d: d["url"].endswith("/x") and d["route"]["routeKey"] == "GET /x"),
    "api ls": (("api", "ls"), lambda d: d[0]["routes"][0]["routeKey"] == "GET /x"),
    "schedules create": (("schedules", "create", "n", "--function", "web", "--expression",
                          "rate(1 day)", "--disabled"),
                         lambda d: d["ScheduleArn"].endswith(":schedule/default/n")),
    "schedules list": (("schedules", "list"), lambda d: [s["Name"] for s in d] == ["n"]),
    "dlq ls": (("dlq", "ls"), lambda d: [x["function_name"] for x in d] == ["boom"]),
    "dlq redrive": (("dlq", "redrive", "{letter}"),
                    lambda d: len(d) == 1 and len(d[0]["RequestId"]) == 36),
}


def test_every_data_command_has_a_json_case() -> None:
    from tests.cli.test_exit_codes import commands

    assert {path for path, _, has_json in commands() if has_json} == set(JSON_CASES)


@pytest.mark.sandbox
def test_every_data_command_prints_json_that_parses(nimbus: NimbusProcess,
                                                    tmp_path: Path) -> None:
    lam = nimbus.client()
    lam.create_function(FunctionName="web", Runtime="python3.12", Role=ROLE,
                        Handler="app.handler", Code={"ZipFile": ECHO})
    lam.create_function(FunctionName="boom", Runtime="python3.12", Role=ROLE,
                        Handler="app.handler", Code={"ZipFile": make_zip(
                            {"app.py": "def handler(e, c):\n  raise ValueError(e)\n"})})
    lam.put_function_event_invoke_config(FunctionName="boom", MaximumRetryAttempts=0)
    lam.invoke(FunctionName="boom", InvocationType="Event", Payload=b"{}")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "app.py").write_text("def handler(e, c):\n  return 1\n")
    deadline = time.monotonic() + 60
    letters: list[Any] = []
    while not letters:  # polling a listing: there is no event to await
        assert time.monotonic() < deadline, "boom's event never became a dead letter"
        letters = httpx.get(f"{nimbus.endpoint}/_nimbus/dead-letters").json()["DeadLetters"]
        time.sleep(0.05)
    fill = {"{tmp}": str(tmp_path), "{data}": str(nimbus.data_dir),
            "{letter}": str(letters[0]["id"])}
    for path, (args, holds) in JSON_CASES.items():
        filled = [fill.get(a, a.replace("{tmp}", str(tmp_path))) for a in args]
        result = nimbus_cli(nimbus, *filled, "--json")
        assert result.returncode == 0, (path, result.stdout + result.stderr)
        document = ([json.loads(line) for line in result.stdout.splitlines()]
                    if path == "logs" else json.loads(result.stdout))
        assert holds(document), (path, document)


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


def column(table: str, index: int) -> str:
    """A column of a rich table's body read top to bottom (its one row, folded)."""
    return "".join(line.split("│")[index].strip() for line in table.splitlines()
                   if line.startswith("│"))


def test_every_table_fits_80_columns_without_losing_ids(nimbus: NimbusProcess) -> None:
    """Function names, ARNs and URLs are folded onto more lines, never cut, in 80 columns."""
    lam = nimbus.client()
    arn = lam.create_function(FunctionName=LONG, Runtime="python3.12", Role=ROLE,
                              Handler="app.handler", Code={"ZipFile": ECHO})["FunctionArn"]
    url = json.loads(nimbus_cli(nimbus, "url", "create", LONG, "--json").stdout)["FunctionUrl"]
    route = json.loads(nimbus_cli(nimbus, "api", "route", "GET /a/long/path/{id}", LONG,
                                  "--json").stdout)["url"]
    assert nimbus_cli(nimbus, "schedules", "create", "s" * 64, "--function", LONG,
                      "--expression", "rate(1 day)").returncode == 0
    for args, index, whole in [
        (("ls",), 1, LONG),
        (("url", "ls"), 1, LONG),
        (("url", "ls"), 4, url),
        (("api", "ls"), 3, LONG),
        (("api", "ls"), 6, route),
        (("schedules", "list"), 2, "s" * 64),
        (("schedules", "list"), 4, arn),
    ]:
        result = nimbus_cli_columns(nimbus, 80, *args)
        assert result.returncode == 0, result.stderr
        assert max(len(line) for line in result.stdout.splitlines()) <= 80, result.stdout
        assert "…" not in result.stdout and column(result.stdout, index) == whole, (
            args, result.stdout)


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
    assert bad.returncode == 2 and "cors.maxAge" in bad.stderr


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
