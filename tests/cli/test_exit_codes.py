"""Exit codes that mean the same on every command, as a script relies on them: 0 done, 1
the function or the operation failed, 2 the caller's mistake (a bad argument or value,
something that does not exist), 3 no nimbus at the endpoint; and never a traceback for a
mistake, always a message saying what to fix, nothing half-printed on stdout.

The walk covers every command the CLI has (a new command without cases fails it): each
with a bad input, and each that talks to a nimbus with an endpoint where none listens."""

from __future__ import annotations

import http.server
import socket
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cli.conftest import nimbus_cli
from tests.conftest import ROLE, make_zip
from tests.nimbus_process import NimbusProcess


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]  # "{tmp}" and "{busy}" are filled in
    code: int
    says: str  # part of what stderr must say


REFUSED, UNREACHABLE = 2, 3
REACH = "cannot reach"

# Every command, with what it is given when no nimbus listens at NIMBUS_ENDPOINT.
OFFLINE: dict[str, list[Case]] = {
    "up": [
        Case(("up", "--isolation", "bogus", "--data-dir", "{tmp}/d"), REFUSED, "isolation"),
        Case(("up", "--log-level", "loud", "--data-dir", "{tmp}/d"), REFUSED, "log_level"),
        Case(("up", "--port", "{busy}", "--data-dir", "{tmp}/d"), REFUSED, "is in use"),
    ],
    "worker": [
        Case(("worker", "--data-dir", "{tmp}/d"), REFUSED, "NIMBUS_DATABASE_URL=postgresql"),
        Case(("worker", "--database-url", "postgresql://127.0.0.1/test", "--data-dir",
              "{tmp}/d"), REFUSED, "NIMBUS_QUEUE_URL=nats"),
    ],
    "credentials": [
        Case(("credentials", "--data-dir", "{tmp}/none"), REFUSED, "is no nimbus data dir"),
    ],
    "invoke": [
        Case(("invoke", "fn", "--data", "{nope"), REFUSED, "is not JSON"),
        Case(("invoke", "fn"), UNREACHABLE, REACH),
    ],
    "logs": [
        Case(("logs", "fn", "--since", "yesterday"), REFUSED, "give a span"),
        Case(("logs", "fn"), UNREACHABLE, REACH),
    ],
    "ls": [
        Case(("ls", "--endpoint", "ftp://h"), REFUSED, "give --endpoint"),
        Case(("ls",), UNREACHABLE, REACH),
    ],
    "rm": [
        Case(("rm",), REFUSED, "give a function NAME, or --stack NAME"),
        Case(("rm", "--stack", "s", "--dir", "{tmp}"), REFUSED, "no stack s was deployed"),
        Case(("rm", "fn"), UNREACHABLE, REACH),
    ],
    "deploy": [
        Case(("deploy", "{tmp}/nowhere"), REFUSED, "is neither a template file nor a folder"),
        Case(("deploy", "{tmp}/fn", "--param", "x"), REFUSED, "write KEY=VALUE"),
        Case(("deploy", "{tmp}/fn"), UNREACHABLE, REACH),
    ],
    "init": [Case(("init", "no-such-blueprint"), REFUSED, "no blueprint")],
    "dev": [Case(("dev", "{tmp}/nowhere"), REFUSED, "does not exist")],
    "doctor": [Case(("doctor", "--bogus"), REFUSED, "No such option")],
    "version": [Case(("version", "extra"), REFUSED, "unexpected extra argument")],
    "dlq ls": [
        Case(("dlq", "ls", "--endpoint", "ftp://h"), REFUSED, "give --endpoint"),
        Case(("dlq", "ls"), UNREACHABLE, REACH),
    ],
    "dlq redrive": [
        Case(("dlq", "redrive", "x"), REFUSED, "valid integer"),
        Case(("dlq", "redrive", "1"), UNREACHABLE, REACH),
    ],
    "url create": [
        Case(("url", "create", "fn", "--auth", "BOGUS"), REFUSED, "use NONE or AWS_IAM"),
        Case(("url", "create", "fn"), UNREACHABLE, REACH),
    ],
    "url show": [
        Case(("url", "show"), REFUSED, "Missing argument"),
        Case(("url", "show", "fn"), UNREACHABLE, REACH),
    ],
    "url rm": [
        Case(("url", "rm"), REFUSED, "Missing argument"),
        Case(("url", "rm", "fn"), UNREACHABLE, REACH),
    ],
    "url ls": [
        Case(("url", "ls", "--endpoint", "ftp://h"), REFUSED, "give --endpoint"),
        Case(("url", "ls"), UNREACHABLE, REACH),
    ],
    "api route": [
        Case(("api", "route", "FOO /a", "fn"), REFUSED, "Invalid route key"),
        Case(("api", "route", "GET /a", "fn"), UNREACHABLE, REACH),
    ],
    "api ls": [
        Case(("api", "ls", "--endpoint", "ftp://h"), REFUSED, "give --endpoint"),
        Case(("api", "ls"), UNREACHABLE, REACH),
    ],
    "api rm": [
        Case(("api", "rm"), REFUSED, "Missing argument"),
        Case(("api", "rm", "pets"), UNREACHABLE, REACH),
    ],
    "schedules create": [
        Case(("schedules", "create", "s", "--function", "fn"), REFUSED,
             "Missing option '--expression'"),
        Case(("schedules", "create", "s", "--function", "fn", "--expression", "rate(1 hour)"),
             UNREACHABLE, REACH),
    ],
    "schedules list": [
        Case(("schedules", "list", "--endpoint", "ftp://h"), REFUSED, "give --endpoint"),
        Case(("schedules", "list"), UNREACHABLE, REACH),
    ],
    "schedules delete": [
        Case(("schedules", "delete"), REFUSED, "Missing argument"),
        Case(("schedules", "delete", "s"), UNREACHABLE, REACH),
    ],
}

# With a nimbus there, a name that does not exist is the caller's to fix (2), as is a
# value the server refuses; a deploy the server refuses part-way failed (1).
ONLINE: list[Case] = [
    Case(("invoke", "nope"), REFUSED, "nimbus ls` lists the functions"),
    Case(("logs", "nope"), REFUSED, "ResourceNotFoundException"),
    Case(("rm", "nope"), REFUSED, "ResourceNotFoundException"),
    Case(("rm", "fn", "--qualifier", "nope"), REFUSED, "ResourceNotFoundException"),
    Case(("url", "create", "nope"), REFUSED, "ResourceNotFoundException"),
    Case(("url", "show", "nope"), REFUSED, "has no function URL (or does not exist)"),
    Case(("url", "rm", "nope"), REFUSED, "ResourceNotFoundException"),
    Case(("url", "create", "fn", "--cors-max-age", "999999"), REFUSED, "cors.maxAge"),
    Case(("api", "rm", "nope"), REFUSED, "no HTTP API named 'nope'"),
    Case(("api", "ls", "--api", "nope"), REFUSED, "no HTTP API named 'nope'"),
    Case(("api", "route", "GET /a", "nope"), REFUSED, "ResourceNotFoundException"),
    Case(("schedules", "create", "s", "--function", "nope", "--expression", "rate(1 hour)"),
         REFUSED, "ResourceNotFoundException"),
    Case(("schedules", "create", "s", "--function", "fn", "--expression", "rate(1 hours"),
         REFUSED, "ValidationException"),
    Case(("schedules", "delete", "nope"), REFUSED, "`nimbus schedules list` lists them"),
    Case(("dlq", "redrive", "999"), REFUSED, "ResourceNotFoundException"),
    Case(("logs", "fn", "--filter", "{ $.level = "), REFUSED, "InvalidParameterValueException"),
    Case(("deploy", "{tmp}/bad"), REFUSED, "problem(s), nothing was deployed"),
    Case(("deploy", "{tmp}/refused"), 1, "InvalidParameterValueException"),
]

BAD_TEMPLATE = """\
Resources:
  Table:
    Type: AWS::DynamoDB::Table
"""
# A runtime the server refuses: the deploy starts (the template is fine) and is refused.
REFUSED_TEMPLATE = """\
Transform: AWS::Serverless-2016-10-31
Resources:
  Old:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: .
      Handler: app.handler
      Runtime: python2.7
"""


def commands() -> Iterator[tuple[str, bool, bool]]:
    """(command path, whether it takes --endpoint, whether it takes --json) of every
    command the CLI has."""
    import typer.main

    from nimbus.cli.main import app

    def walk(command: object, prefix: str) -> Iterator[tuple[str, bool, bool]]:
        subcommands = getattr(command, "commands", None)
        if subcommands is not None:
            for name, sub in subcommands.items():
                yield from walk(sub, f"{prefix} {name}".strip())
            return
        options = {o for p in getattr(command, "params", []) for o in p.opts}
        yield prefix, "--endpoint" in options, "--json" in options

    yield from walk(typer.main.get_command(app), "")


def project(root: Path) -> Path:
    """The folders the cases name under {tmp}."""
    (root / "fn").mkdir()
    (root / "fn" / "app.py").write_text("def handler(event, context):\n    return 1\n")
    for name, template in (("bad", BAD_TEMPLATE), ("refused", REFUSED_TEMPLATE)):
        (root / name).mkdir()
        (root / name / "template.yaml").write_text(template)
        (root / name / "app.py").write_text("def handler(event, context):\n    return 1\n")
    return root


def run_all(server: NimbusProcess, cases: list[Case], tmp: Path, busy: int) -> None:
    """Run every case (a few at once) and check each: its exit code, a message naming
    what to fix, no traceback, nothing on stdout."""

    def run(case: Case) -> tuple[Case, subprocess.CompletedProcess[str]]:
        args = [a.replace("{tmp}", str(tmp)).replace("{busy}", str(busy)) for a in case.args]
        return case, nimbus_cli(server, *args)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, cases))
    wrong = []
    for case, result in results:
        output = result.stdout + result.stderr
        if (result.returncode != case.code or case.says not in result.stderr
                or "Traceback" in output or result.stdout.strip()):
            wrong.append(f"nimbus {' '.join(case.args)}: exit {result.returncode} (want "
                         f"{case.code}, saying {case.says!r}):\n{output}")
    assert not wrong, "\n".join(wrong)


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_every_command_is_walked() -> None:
    """Each command has a bad-input case, and one with no nimbus when it talks to one."""
    found = {path: talks for path, talks, _ in commands()}
    assert set(found) == set(OFFLINE), "commands without cases: give them some"
    for path, talks in found.items():
        codes = {case.code for case in OFFLINE[path]}
        assert REFUSED in codes, f"{path}: no bad-input case"
        assert (UNREACHABLE in codes) == talks, f"{path}: no case without a nimbus"


def test_every_command_without_a_nimbus(tmp_path: Path, busy_port: int) -> None:
    nobody = NimbusProcess(tmp_path / "data")  # not started: nothing listens on its port
    cases = [case for path in OFFLINE for case in OFFLINE[path]]
    run_all(nobody, cases, project(tmp_path), busy_port)


def test_every_command_with_a_nimbus(nimbus: NimbusProcess, tmp_path: Path,
                                     busy_port: int) -> None:
    nimbus.client().create_function(
        FunctionName="fn", Runtime="python3.12", Role=ROLE, Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": "def handler(e, c):\n    return e\n"})})
    run_all(nimbus, ONLINE, project(tmp_path), busy_port)
    assert [f["FunctionName"] for f in nimbus.client().list_functions()["Functions"]] == ["fn"]


class NotNimbus(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html>a web server, not a nimbus</html>"
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_an_endpoint_that_is_not_a_nimbus(tmp_path: Path) -> None:
    """A web server at NIMBUS_ENDPOINT (a wrong port) is no nimbus: exit 3, said so."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotNimbus)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        other = NimbusProcess(tmp_path)
        other.port = server.server_address[1]
        for args in (("ls",), ("url", "ls"), ("logs", "fn")):
            result = nimbus_cli(other, *args)
            assert result.returncode == 3, result.stderr
            assert "not as a nimbus does" in result.stderr and "Traceback" not in result.stderr
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.sandbox
def test_a_function_error_exits_1(nimbus: NimbusProcess) -> None:
    nimbus.client().create_function(
        FunctionName="boom", Runtime="python3.12", Role=ROLE, Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": "def handler(e, c):\n    raise ValueError('no')\n"})})
    failed = nimbus_cli(nimbus, "invoke", "boom")
    assert failed.returncode == 1 and "function error (Unhandled): ValueError: no" in (
        failed.stderr)
    assert "Traceback" not in failed.stderr
