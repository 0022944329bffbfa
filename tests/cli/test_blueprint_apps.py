"""Blueprints as a user runs them: ``nimbus init BLUEPRINT DIR``, ``nimbus deploy``, call
what was deployed, check it answered as its README says, ``nimbus rm --stack`` (each step a
subprocess, against a live server of the test's own). Only local servers are reached."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import re
import subprocess
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli.conftest import nimbus_cli
from tests.nimbus_process import NimbusProcess


def init(nimbus: NimbusProcess, blueprint: str, folder: Path) -> Path:
    made = nimbus_cli(nimbus, "init", blueprint, str(folder))
    assert made.returncode == 0, made.stderr
    return folder


def deploy(nimbus: NimbusProcess, folder: Path, *params: str) -> subprocess.CompletedProcess[str]:
    args = [arg for p in params for arg in ("--param", p)]
    out = nimbus_cli(nimbus, "deploy", str(folder / "template.yaml"), *args)
    assert out.returncode == 0, out.stderr
    return out


def output(deployed: subprocess.CompletedProcess[str], name: str) -> str:
    """A template output's value, as deploy prints it (``Name = value``)."""
    found = re.search(rf"^\s*{name} = (\S+)\s*$", deployed.stderr, re.MULTILINE)
    assert found, deployed.stderr
    return found[1]


def remove(nimbus: NimbusProcess, folder: Path) -> None:
    gone = nimbus_cli(nimbus, "rm", "--stack", folder.name, "--dir", str(folder))
    assert gone.returncode == 0, gone.stderr
    assert nimbus.client().list_functions()["Functions"] == []
    assert nimbus.client("sqs").list_queues().get("QueueUrls", []) == []
    assert nimbus.client("scheduler").list_schedules()["Schedules"] == []


# -- site-crawler ----------------------------------------------------------------------------


class _Site(BaseHTTPRequestHandler):
    """A small site: / links to /docs, /missing and /broken; /docs to /docs/deep."""

    PAGES = {
        "/": '<a href="/docs">docs</a> <a href="/missing">old</a> <a href="/broken">x</a>',
        "/docs": '<a href="/docs/deep">deeper</a> <a href="/">home</a>',
        "/docs/deep": "the end",
    }

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        body = self.PAGES.get(self.path)
        status = 200 if body is not None else 500 if self.path == "/broken" else 404
        data = (body or "no").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def site() -> Iterator[Any]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    server.daemon_threads = True
    server.hits = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.sandbox
def test_site_crawler_reports_each_scheduled_crawl_to_its_queue(
    nimbus: NimbusProcess, site: Any, tmp_path: Path
) -> None:
    """Deployed with a rate schedule (which fires at once, as on AWS), the crawler follows
    the site's links to the depth asked and its report, broken links with the pages that
    link to them, arrives in the CrawlReports queue; each URL is a JSON line in its logs."""
    folder = init(nimbus, "site-crawler", tmp_path / "crawler")
    start = f"http://127.0.0.1:{site.server_address[1]}/"
    out = deploy(nimbus, folder, f"StartUrls={start}", "MaxDepth=1",
                 "CrawlSchedule=rate(1 hour)")  # fmt: skip
    queue_url = output(out, "CrawlReportsQueueUrl")
    function = output(out, "CrawlerFunctionName")
    assert function == "crawler-CrawlerFunction"

    sqs = nimbus.client("sqs")
    messages: list[dict[str, Any]] = []
    for _ in range(6):  # long polls: the first tick's run, however slow its cold start
        messages = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=20).get("Messages", [])
        if messages:
            break
    assert len(messages) == 1, "no crawl report arrived"
    record = json.loads(messages[0]["Body"])
    assert record["requestContext"]["condition"] == "Success"
    report = record["responsePayload"]
    assert report["startUrls"] == [start] and report["maxDepth"] == 1
    assert sorted(p["url"].removeprefix(start) for p in report["pages"]) == [
        "", "broken", "docs", "missing"]  # fmt: skip
    assert "/docs/deep" not in site.hits  # two clicks away: beyond MaxDepth 1
    broken = {b["url"].removeprefix(start): b for b in report["broken"]}
    assert {k: b["status"] for k, b in broken.items()} == {"missing": 404, "broken": 500}
    assert broken["missing"]["referrers"] == [start]
    assert report["statuses"] == {"200": 2, "404": 1, "500": 1}

    # The README's query: the broken links' log lines (written in batches by the worker
    # that ran the crawl, so they may land just after the report: asked again until then).
    wanted = {start + "missing", start + "broken"}
    logged: set[str] = set()
    for _ in range(20):
        logs = nimbus_cli(nimbus, "logs", function, "--filter", "{ $.broken = true }", "--json")
        assert logs.returncode == 0, logs.stderr
        events = [json.loads(line) for line in logs.stdout.splitlines()]
        logged = {json.loads(e["message"])["url"] for e in events}
        if logged == wanted:
            break
    assert logged == wanted, logs.stdout

    remove(nimbus, folder)


# -- feature-flags ---------------------------------------------------------------------------


@pytest.mark.sandbox
def test_feature_flags_live_alias_splits_requests_between_two_versions(
    nimbus: NimbusProcess, tmp_path: Path
) -> None:
    """Version 1 as shipped; a flags change deployed with StableVersion=1 publishes version
    2 and the live alias sends about half the requests (NewVersionWeight 0.5) to it, the
    rest to version 1, each answering with its own flags; a deploy without StableVersion
    promotes version 2 to all traffic."""
    folder = init(nimbus, "feature-flags", tmp_path / "flags")
    first = deploy(nimbus, folder)
    url = output(first, "FlagsUrl").rstrip("/")
    assert output(first, "NewestVersion") == "1" and first.stdout.split() == [url + "/"]
    with httpx.Client(timeout=30) as client:
        one = client.get(f"{url}/flags", params={"user": "alice"})
        assert one.status_code == 200 and one.headers["x-flags-version"] == "1"
        assert one.json()["flags"]["new_checkout"] is False
        assert one.json()["flags"]["beta_banner"] is True

        flags = folder / "flags.json"
        data = json.loads(flags.read_text())
        data["flags"]["new_checkout"]["enabled"] = True
        flags.write_text(json.dumps(data))
        split = deploy(nimbus, folder, "StableVersion=1", "NewVersionWeight=0.5")
        assert output(split, "NewestVersion") == "2"
        assert re.search(r"retained\s+FlagsFunctionVersion\w+ \(AWS::Lambda::Version\)",
                         split.stderr), split.stderr  # fmt: skip
        alias = nimbus.client().get_alias(FunctionName="flags-FlagsFunction", Name="live")
        assert alias["FunctionVersion"] == "1"
        assert alias["RoutingConfig"]["AdditionalVersionWeights"] == {"2": 0.5}

        served: dict[str, int] = {"1": 0, "2": 0}
        for _ in range(400):
            answer = client.get(f"{url}/flags/new_checkout")
            assert answer.status_code == 200
            body = answer.json()
            assert answer.headers["x-flags-version"] == body["version"]
            assert body["enabled"] is (body["version"] == "2")  # each its own flags
            served[body["version"]] += 1
        # Binomial(400, 0.5): 200 +- 10; outside 120..280 is 8 standard deviations away.
        assert 120 <= served["2"] <= 280, served
        assert served["1"] + served["2"] == 400

        promoted = deploy(nimbus, folder)
        assert "updated   LiveAlias (AWS::Lambda::Alias)" in promoted.stderr
        versions = {client.get(f"{url}/flags").json()["version"] for _ in range(20)}
        assert versions == {"2"}

    remove(nimbus, folder)
    assert httpx.get(f"{url}/flags", timeout=30).status_code == 404


# -- chatbot-webhook -------------------------------------------------------------------------

SIGNING_SECRET = "e2e-signing-secret"


def slack_headers(body: bytes, secret: str = SIGNING_SECRET, age_s: int = 0) -> dict[str, str]:
    """Headers as Slack signs a request: v0= HMAC-SHA256 of v0:{timestamp}:{body}."""
    timestamp = str(int(time.time()) - age_s)
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256)
    return {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": "v0=" + digest.hexdigest()}


class _SlackApi(BaseHTTPRequestHandler):
    """Slack's Web API as far as the bot uses it: chat.postMessage."""

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.posted_changed:  # type: ignore[attr-defined]
            self.server.posted.append(  # type: ignore[attr-defined]
                (self.path, self.headers["Authorization"], body)
            )
            self.server.posted_changed.notify_all()  # type: ignore[attr-defined]
        data = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def slack_api() -> Iterator[Any]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlackApi)
    server.daemon_threads = True
    server.posted = []  # type: ignore[attr-defined]
    server.posted_changed = threading.Condition()  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.sandbox
def test_chatbot_webhook_answers_signed_requests_only(
    nimbus: NimbusProcess, slack_api: Any, tmp_path: Path
) -> None:
    """Deployed with its requirements (Powertools) installed by nimbus deploy: a signed slash
    command is answered, a badly signed, stale or unsigned one refused with 401; the
    Events API challenge is answered and a mention is answered in its thread through
    chat.postMessage with the bot's token."""
    folder = init(nimbus, "chatbot-webhook", tmp_path / "bot")
    api = f"http://127.0.0.1:{slack_api.server_address[1]}/api"
    out = deploy(nimbus, folder, f"SlackSigningSecret={SIGNING_SECRET}",
                 "SlackBotToken=xoxb-e2e", f"SlackApiUrl={api}")  # fmt: skip
    commands, events = output(out, "CommandsUrl"), output(out, "EventsUrl")
    assert sorted(out.stdout.split()) == sorted([commands, events])
    package = nimbus.client().get_function(FunctionName="bot-BotFunction")["Code"]["Location"]
    listing = zipfile.ZipFile(io.BytesIO(httpx.get(package, timeout=30).content)).namelist()
    assert "aws_lambda_powertools/event_handler/api_gateway.py" in listing  # pip-installed

    form = b"command=%2Fbot&text=roll+2d6&user_id=U1&channel_id=C1"
    plain = {"Content-Type": "application/x-www-form-urlencoded"}
    with httpx.Client(timeout=30) as client:
        signed = client.post(commands, content=form, headers={**plain, **slack_headers(form)})
        assert signed.status_code == 200, signed.text
        answer = signed.json()
        assert answer["response_type"] == "in_channel" and answer["text"].startswith("2d6: ")
        assert 2 <= int(answer["text"].rsplit("= ", 1)[1]) <= 12

        for headers, why in (
            (slack_headers(form, secret="not-the-secret"), "the signature does not match"),
            (slack_headers(form, age_s=600), "s old"),
            ({}, "are required"),
        ):
            refused = client.post(commands, content=form, headers={**plain, **headers})
            assert refused.status_code == 401, refused.text
            assert why in refused.json()["message"]
        tampered = form.replace(b"roll", b"echo")
        signed_for_other = {**plain, **slack_headers(form)}
        assert client.post(commands, content=tampered,
                           headers=signed_for_other).status_code == 401  # fmt: skip

        challenge = json.dumps({"type": "url_verification", "challenge": "3eZbrw1aB"}).encode()
        as_json = {"Content-Type": "application/json"}
        verified = client.post(events, content=challenge,
                               headers={**as_json, **slack_headers(challenge)})  # fmt: skip
        assert verified.json() == {"challenge": "3eZbrw1aB"}

        mention = json.dumps({"type": "event_callback", "event_id": "Ev1", "event": {
            "type": "app_mention", "text": "<@U0BOT> echo hello from e2e", "channel": "C9",
            "user": "U2", "ts": "1700000000.000100"}}).encode()  # fmt: skip
        acked = client.post(events, content=mention, headers={**as_json, **slack_headers(mention)})
        assert acked.status_code == 200, acked.text
    with slack_api.posted_changed:  # posted before the ack: here already, or soon
        assert slack_api.posted_changed.wait_for(lambda: slack_api.posted, timeout=30)
    assert slack_api.posted == [
        (
            "/api/chat.postMessage",
            "Bearer xoxb-e2e",
            {"channel": "C9", "text": "hello from e2e", "thread_ts": "1700000000.000100"},
        )
    ]

    remove(nimbus, folder)
    assert nimbus.client("apigatewayv2").get_apis()["Items"] == []
