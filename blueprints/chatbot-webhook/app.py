"""A Slack chatbot behind an HTTP API, with Powertools for AWS Lambda's
``APIGatewayHttpResolver``: slash commands and Events API callbacks, each request's
signature verified before anything else runs.

  POST /slack/commands   a slash command (``/bot roll 2d6``): answered in the response
  POST /slack/events     the Events API: the URL verification challenge, and mentions of
                         the bot (``@bot help``) and direct messages, answered in the
                         thread with chat.postMessage

Slack signs each request: ``X-Slack-Signature: v0=HEX`` is the HMAC-SHA256, keyed with the
app's signing secret, of ``v0:{X-Slack-Request-Timestamp}:{raw body}``. A request whose
signature does not match, or whose timestamp is more than 5 minutes away from now (a
replay), is refused with 401 and never reaches a command.

Commands: ``help``, ``echo TEXT``, ``roll [NdM]`` (dice, 1d6 by default), ``time``.

Settings (environment variables):
  SLACK_SIGNING_SECRET  the app's signing secret (required: without it every request is
                        refused)
  SLACK_BOT_TOKEN       xoxb-... token to answer events with (none: events are only logged)
  SLACK_API_URL         Slack's Web API [https://slack.com/api]
"""

import base64
import hashlib
import hmac
import json
import os
import random
import re
import time
import urllib.error
import urllib.request
from urllib.parse import parse_qs

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types

logger = Logger(service="chatbot")
app = APIGatewayHttpResolver()

MAX_AGE_S = 300  # Slack's advice: refuse requests more than 5 minutes old
_DICE = re.compile(r"(\d*)d(\d+)")
_MENTION = re.compile(r"<@[A-Z0-9]+>")


# -- signatures ------------------------------------------------------------------------------


def sign(secret, timestamp, body):
    """Slack's signature of a request: ``v0=`` and the hex HMAC-SHA256 of its base string."""
    base = b"v0:" + str(timestamp).encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def refusal(secret, timestamp, signature, body, now=None):
    """Why a request is not Slack's (None when it is)."""
    if not secret:
        return "SLACK_SIGNING_SECRET is not set: every request is refused"
    if not timestamp or not signature:
        return "X-Slack-Request-Timestamp and X-Slack-Signature are required"
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except ValueError:
        return "X-Slack-Request-Timestamp is not a number"
    if age > MAX_AGE_S:
        return f"the request is {int(age)} s old (more than {MAX_AGE_S} s: a replay?)"
    if not hmac.compare_digest(sign(secret, timestamp, body), signature):
        return "the signature does not match"
    return None


def raw_body(event):
    """The body's bytes as Slack sent them (API Gateway base64-encodes form posts)."""
    body = event.body or ""
    return base64.b64decode(body) if event.is_base64_encoded else body.encode("utf-8")


def verify_signature(app, next_middleware):
    event = app.current_event
    why = refusal(os.environ.get("SLACK_SIGNING_SECRET", ""),
                  event.headers.get("x-slack-request-timestamp"),
                  event.headers.get("x-slack-signature"),
                  raw_body(event))
    if why is not None:
        logger.warning("request refused", reason=why, path=event.path)
        return Response(status_code=401, content_type=content_types.APPLICATION_JSON,
                        body=json.dumps({"message": f"not a signed Slack request: {why}"}))
    return next_middleware(app)


app.use(middlewares=[verify_signature])


# -- commands --------------------------------------------------------------------------------


def _help(_args):
    return ("Commands: `help`, `echo TEXT`, `roll [NdM]` (dice, e.g. `roll 2d6`), "
            "`time`"), False


def _echo(args):
    return (args or "(nothing to echo)"), True


def _roll(args):
    match = _DICE.fullmatch(args or "1d6")
    if not match:
        return "Roll what? Write dice as NdM, e.g. `roll 2d6`.", False
    count, sides = int(match[1] or 1), int(match[2])
    if not 1 <= count <= 100 or not 2 <= sides <= 1000:
        return "Up to 100 dice of 2 to 1000 sides, please.", False
    rolls = [random.randint(1, sides) for _ in range(count)]
    shown = " + ".join(map(str, rolls)) + (f" = {sum(rolls)}" if count > 1 else "")
    return f"{count}d{sides}: {shown}", True


def _time(_args):
    return time.strftime("It is %H:%M:%S UTC on %A %d %B %Y.", time.gmtime()), False


COMMANDS = {"help": _help, "echo": _echo, "roll": _roll, "time": _time}


def answer(text):
    """(reply, for everyone in the channel?) for a command line."""
    name, _, args = (text or "").strip().partition(" ")
    command = COMMANDS.get(name.lower() or "help")
    if command is None:
        return f"I don't know `{name}`. Try `help`.", False
    return command(args.strip())


# -- routes ----------------------------------------------------------------------------------


@app.post("/slack/commands")
def slash_command():
    form = parse_qs(raw_body(app.current_event).decode("utf-8"))
    text = form.get("text", [""])[0]
    reply, public = answer(text)
    logger.info("slash command", command=form.get("command", [""])[0], text=text,
                user=form.get("user_id", [""])[0])
    return {"response_type": "in_channel" if public else "ephemeral", "text": reply}


@app.post("/slack/events")
def events():
    try:
        payload = app.current_event.json_body
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        return Response(status_code=400, content_type=content_types.APPLICATION_JSON,
                        body=json.dumps({"message": "the Events API sends a JSON object"}))
    if payload.get("type") == "url_verification":
        return {"challenge": payload.get("challenge", "")}
    if app.current_event.headers.get("x-slack-retry-num"):
        # Slack retries when the first answer was late; the reply was already posted.
        logger.info("retry acknowledged", event_id=payload.get("event_id"))
        return {}
    event = payload.get("event") or {}
    asked = event.get("type") == "app_mention" or (
        event.get("type") == "message" and event.get("channel_type") == "im")
    if payload.get("type") != "event_callback" or not asked or event.get("bot_id") \
            or event.get("subtype"):
        return {}  # not for us, or the bot's own messages: never answer those (loops)
    reply, _ = answer(_MENTION.sub("", event.get("text", "")))
    post_message(event.get("channel"), reply, event.get("thread_ts") or event.get("ts"))
    return {}


def post_message(channel, text, thread_ts):
    """chat.postMessage; failures are logged (Slack wants its answer within 3 s anyway)."""
    token = os.environ.get("SLACK_BOT_TOKEN")
    if not token:
        logger.warning("no SLACK_BOT_TOKEN: reply not posted", channel=channel, text=text)
        return
    url = os.environ.get("SLACK_API_URL", "https://slack.com/api").rstrip("/")
    request = urllib.request.Request(
        f"{url}/chat.postMessage", method="POST",
        data=json.dumps({"channel": channel, "text": text, "thread_ts": thread_ts}).encode(),
        headers={"Content-Type": "application/json; charset=utf-8",
                 "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            result = json.loads(response.read() or b"{}")
    except (OSError, ValueError) as exc:
        logger.error("chat.postMessage failed", error=f"{type(exc).__name__}: {exc}")
        return
    if not result.get("ok"):
        logger.error("chat.postMessage refused", error=result.get("error"))


def handler(event, context):
    return app.resolve(event, context)
