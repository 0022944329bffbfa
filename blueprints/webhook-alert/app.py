"""A Slack-compatible alert sender: each message of an SQS batch becomes one incoming-
webhook payload ({"text": ..., "blocks": [...]}) POSTed to SLACK_WEBHOOK_URL. Messages whose
POST fails (network error, timeout, non-2xx answer) are reported back
(ReportBatchItemFailures), so the queue redelivers only those.

A message body is either JSON:
  {"title": "Disk almost full", "text": "db-1 at 93%", "severity": "warning",
   "fields": {"host": "db-1", "used": "93%"}, "url": "https://grafana/d/disk"}
(every key optional; "message" is accepted for "text") or any other text, sent as is.

Settings (environment variables):
  SLACK_WEBHOOK_URL  the incoming webhook (Slack, Mattermost, Rocket.Chat, ...)
  TIMEOUT_S          per-POST timeout [10]

Standard library only: json, urllib.
"""

import json
import os
import urllib.error
import urllib.request

# Slack's limits (Block Kit reference): header text 150 chars, section text 3000, a section
# at most 10 fields of 2000 chars; longer payloads are refused, so they are cut here.
_HEADER, _SECTION, _FIELD, _FIELDS = 150, 3000, 2000, 10
_EMOJI = {"critical": ":red_circle:", "error": ":red_circle:", "warning": ":warning:",
          "info": ":information_source:", "ok": ":white_check_mark:"}


def _cut(text, limit):
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _alert(body):
    """The message body as an alert dict (plain text becomes its "text")."""
    try:
        alert = json.loads(body)
    except ValueError:
        return {"text": body}
    if not isinstance(alert, dict):
        return {"text": body}
    return alert


def payload(body):
    """The Slack incoming-webhook payload for one message body."""
    alert = _alert(body)
    title = alert.get("title")
    text = alert.get("text", alert.get("message", ""))
    severity = str(alert.get("severity", "")).lower()
    mark = _EMOJI.get(severity, "")
    summary = " ".join(p for p in (mark, f"*{title}*" if title else "", str(text)) if p)
    blocks = []
    if title:
        header = f"{mark} {title}" if mark else title
        blocks.append({"type": "header",
                       "text": {"type": "plain_text", "text": _cut(header, _HEADER),
                                "emoji": True}})
    if text or not title:
        shown = text if title else summary
        blocks.append({"type": "section",
                       "text": {"type": "mrkdwn", "text": _cut(shown or " ", _SECTION)}})
    fields = alert.get("fields")
    if isinstance(fields, dict) and fields:
        items = [{"type": "mrkdwn", "text": _cut(f"*{k}*\n{v}", _FIELD)}
                 for k, v in fields.items()]
        for start in range(0, len(items), _FIELDS):
            blocks.append({"type": "section", "fields": items[start:start + _FIELDS]})
    context = [p for p in (f"severity: {severity}" if severity else "",
                           f"<{alert['url']}|details>" if alert.get("url") else "") if p]
    if context:
        blocks.append({"type": "context",
                       "elements": [{"type": "mrkdwn", "text": " · ".join(context)}]})
    return {"text": _cut(summary or " ", _SECTION), "blocks": blocks}


def post(url, data, timeout=10.0):
    """POST ``data`` as JSON; raises on a network error or a non-2xx answer."""
    request = urllib.request.Request(
        url, data=json.dumps(data).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status


def handler(event, context):
    url = os.environ.get("SLACK_WEBHOOK_URL")
    if not url:
        raise RuntimeError("set SLACK_WEBHOOK_URL to the incoming webhook to post to")
    timeout = float(os.environ.get("TIMEOUT_S", "10"))
    failures = []
    for record in event.get("Records", []):
        try:
            post(url, payload(record["body"]), timeout)
        except urllib.error.HTTPError as exc:
            print(f"message {record['messageId']}: webhook answered {exc.code}")
            failures.append({"itemIdentifier": record["messageId"]})
        except (OSError, ValueError) as exc:
            print(f"message {record['messageId']}: {type(exc).__name__}: {exc}")
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
