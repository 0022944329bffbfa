"""Tests of the bot: HTTP API events (payload format 2.0) signed as Slack signs them, or
badly, and a local server standing in for Slack's Web API.
Needs the requirements: ``pip install -r requirements.txt pytest``, then, from the
blueprint's folder, ``python -m pytest tests``."""

import base64
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import app

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


@pytest.fixture(autouse=True)
def settings(monkeypatch):
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SECRET)
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)


def http_event(path, body, content_type, headers):
    """An HTTP API event as API Gateway sends it: form posts base64-encoded."""
    form = content_type.startswith("application/x-www-form-urlencoded")
    return {
        "version": "2.0", "routeKey": f"POST {path}", "rawPath": path, "rawQueryString": "",
        "headers": {"content-type": content_type, **{k.lower(): v for k, v in headers.items()}},
        "requestContext": {"http": {"method": "POST", "path": path, "sourceIp": "127.0.0.1"},
                           "stage": "$default", "requestId": "r1"},
        "body": base64.b64encode(body).decode() if form else body.decode(),
        "isBase64Encoded": form,
    }


def call(path, body, content_type, secret=SECRET, timestamp=None, signature=None, **headers):
    timestamp = str(int(time.time())) if timestamp is None else timestamp
    if signature is None:
        signature = app.sign(secret, timestamp, body)
    signed = {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature}
    reply = app.handler(http_event(path, body, content_type, {**signed, **headers}), None)
    return reply["statusCode"], json.loads(reply["body"] or "null")


def command(text, **kwargs):
    body = urlencode({"command": "/bot", "text": text, "user_id": "U1",
                      "response_url": "https://hooks.slack.com/commands/x"}).encode()
    return call("/slack/commands", body, "application/x-www-form-urlencoded", **kwargs)


def event(payload, **kwargs):
    return call("/slack/events", json.dumps(payload).encode(), "application/json", **kwargs)


def test_the_signature_is_slacks():
    # Slack's documented example: this secret, timestamp and body give this signature.
    body = (b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&"
            b"channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&"
            b"command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2F"
            b"commands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&"
            b"trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c")
    assert app.sign(SECRET, "1531420618", body) == (
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503")


def test_signed_slash_commands_are_answered():
    status, body = command("roll 3d6")
    assert status == 200 and body["response_type"] == "in_channel"
    assert body["text"].startswith("3d6: ")
    total = int(body["text"].rsplit("= ", 1)[1])
    assert 3 <= total <= 18
    assert command("echo hello  there")[1] == {"response_type": "in_channel",
                                               "text": "hello  there"}
    status, body = command("")
    assert body["response_type"] == "ephemeral" and "`roll [NdM]`" in body["text"]
    assert "UTC" in command("time")[1]["text"]
    assert command("roll 1000d6")[1]["text"] == "Up to 100 dice of 2 to 1000 sides, please."
    assert command("dance")[1] == {"response_type": "ephemeral",
                                   "text": "I don't know `dance`. Try `help`."}


@pytest.mark.parametrize("why, kwargs", [
    ("the signature does not match", {"secret": "another-secret"}),
    ("the signature does not match", {"signature": "v0=" + "0" * 64}),
    ("s old", {"timestamp": str(int(time.time()) - 301)}),
    ("s old", {"timestamp": str(int(time.time()) + 600)}),
    ("not a number", {"timestamp": "yesterday"}),
    ("are required", {"signature": ""}),
])
def test_badly_signed_requests_are_refused(why, kwargs):
    status, body = command("echo should not run", **kwargs)
    assert status == 401 and why in body["message"]
    status, body = event({"type": "url_verification", "challenge": "c"}, **kwargs)
    assert status == 401 and why in body["message"]


def test_a_body_changed_after_signing_is_refused():
    timestamp = str(int(time.time()))
    signed_for = app.sign(SECRET, timestamp, b"command=%2Fbot&text=echo+hi")
    status, body = command("echo pwned", timestamp=timestamp, signature=signed_for)
    assert status == 401 and "does not match" in body["message"]


def test_without_a_signing_secret_everything_is_refused(monkeypatch):
    monkeypatch.delenv("SLACK_SIGNING_SECRET")
    status, body = command("help")
    assert status == 401 and "SLACK_SIGNING_SECRET" in body["message"]


def test_the_events_url_verification_challenge():
    assert event({"type": "url_verification", "challenge": "3eZbrw1aB"}) == (
        200, {"challenge": "3eZbrw1aB"})
    status, _ = call("/slack/events", b"not json", "application/json")
    assert status == 400


class _SlackApi(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.posted.append((self.path, self.headers["Authorization"], body))
        data = json.dumps({"ok": True}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def slack_api(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlackApi)
    server.posted = []
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    monkeypatch.setenv("SLACK_API_URL", f"http://127.0.0.1:{server.server_address[1]}/api")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
    yield server
    server.shutdown()
    server.server_close()


def mention(text, **extra):
    return {"type": "event_callback", "event_id": "Ev1", "event": {
        "type": "app_mention", "text": text, "channel": "C1", "user": "U2",
        "ts": "1700000000.000100", **extra}}


def test_mentions_are_answered_in_their_thread(slack_api):
    assert event(mention("<@U0BOT> echo  hi there")) == (200, {})
    [(path, auth, body)] = slack_api.posted
    assert path == "/api/chat.postMessage" and auth == "Bearer xoxb-test"
    assert body == {"channel": "C1", "text": "hi there", "thread_ts": "1700000000.000100"}
    direct = {"type": "event_callback", "event": {
        "type": "message", "channel_type": "im", "text": "help", "channel": "D1",
        "ts": "1.2", "thread_ts": "1.0"}}
    assert event(direct) == (200, {})
    answered = slack_api.posted[1][2]
    assert answered["thread_ts"] == "1.0" and "Commands" in answered["text"]


def test_retries_and_the_bots_own_messages_are_not_answered(slack_api):
    assert event(mention("<@U0BOT> help"), **{"X-Slack-Retry-Num": "1"}) == (200, {})
    assert event(mention("<@U0BOT> help", bot_id="B1")) == (200, {})
    channel = {"type": "event_callback", "event": {"type": "message", "channel_type": "channel",
                                                   "text": "help", "channel": "C1", "ts": "1"}}
    assert event(channel) == (200, {})
    assert slack_api.posted == []
