"""Tests of the sender against a local webhook sink that records what it receives and
fails on demand. Run from the blueprint's folder: ``python -m pytest tests``."""

import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import app


class _Sink(BaseHTTPRequestHandler):
    """Answers 200 "ok" as Slack does, or 500 when the text has a word in ``fail_on``."""

    def log_message(self, *args):
        pass

    def do_POST(self):
        data = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        failing = any(word in data["text"] for word in self.server.fail_on)
        if not failing:
            self.server.received.append(data)
        self.send_response(500 if failing else 200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"internal_error" if failing else b"ok")


@pytest.fixture
def sink(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    server.received, server.fail_on = [], set()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("SLACK_WEBHOOK_URL", f"http://127.0.0.1:{server.server_address[1]}/hook")
    yield server
    server.shutdown()
    server.server_close()


def sqs_event(*bodies):
    """An SQS event as Lambda delivers it (the fields the handler reads)."""
    return {"Records": [{"messageId": f"m{i}", "body": body, "eventSource": "aws:sqs"}
                        for i, body in enumerate(bodies)]}


def test_a_json_alert_becomes_blocks(sink):
    body = json.dumps({"title": "Disk almost full", "text": "db-1 at *93%*",
                       "severity": "warning", "fields": {"host": "db-1", "used": "93%"},
                       "url": "https://grafana.local/d/disk"})
    assert app.handler(sqs_event(body), None) == {"batchItemFailures": []}
    [sent] = sink.received
    assert sent["text"] == ":warning: *Disk almost full* db-1 at *93%*"
    header, section, fields, context = sent["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "emoji": True,
                                                 "text": ":warning: Disk almost full"}}
    assert section["text"] == {"type": "mrkdwn", "text": "db-1 at *93%*"}
    assert [f["text"] for f in fields["fields"]] == ["*host*\ndb-1", "*used*\n93%"]
    assert context["elements"][0]["text"] == (
        "severity: warning · <https://grafana.local/d/disk|details>")


def test_plain_text_is_sent_as_is(sink):
    app.handler(sqs_event("deploy finished", "[1, 2]"), None)
    assert [s["text"] for s in sink.received] == ["deploy finished", "[1, 2]"]
    assert sink.received[0]["blocks"] == [
        {"type": "section", "text": {"type": "mrkdwn", "text": "deploy finished"}}]


def test_long_alerts_are_cut_to_slacks_limits(sink):
    fields = {f"k{i}": "v" * 3000 for i in range(12)}
    app.handler(sqs_event(json.dumps({"title": "t" * 200, "fields": fields})), None)
    [sent] = sink.received
    header, first, second = sent["blocks"]
    assert len(header["text"]["text"]) == 150
    assert len(first["fields"]) == 10 and len(second["fields"]) == 2
    assert all(len(f["text"]) <= 2000 for f in first["fields"] + second["fields"])


def test_only_messages_whose_post_failed_are_reported(sink):
    sink.fail_on.add("FAIL")
    event = sqs_event("one", json.dumps({"title": "FAIL me"}), "three", "FAIL too")
    assert app.handler(event, None) == {
        "batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "m3"}]}
    assert [s["text"] for s in sink.received] == ["one", "three"]


def test_an_unreachable_webhook_fails_every_message(monkeypatch):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        monkeypatch.setenv("SLACK_WEBHOOK_URL", f"http://127.0.0.1:{probe.getsockname()[1]}/")
    assert app.handler(sqs_event("a", "b"), None) == {
        "batchItemFailures": [{"itemIdentifier": "m0"}, {"itemIdentifier": "m1"}]}


def test_without_a_webhook_the_batch_fails_saying_what_to_set(monkeypatch):
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)
    with pytest.raises(RuntimeError, match="SLACK_WEBHOOK_URL"):
        app.handler(sqs_event("a"), None)
