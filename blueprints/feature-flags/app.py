"""A feature-flag API behind a function URL: the flags in ``flags.json`` (shipped with the
code, so each published version serves the flags it was published with), evaluated for
a user.

  GET /flags?user=alice
      {"version": "2", "user": "alice", "flags": {"dark_mode": true, ...}}
  GET /flags/new_checkout
      {"version": "2", "user": "", "flag": "new_checkout", "enabled": false}

A flag is ``{"enabled": bool}``, optionally with ``"users": [...]`` (on only for them) or
``"rollout": PERCENT`` (on for that share of users, each user always in or out: the share
is taken by a hash of flag and user, so raising the percentage only adds users). Without
a user, a flag with ``users`` or a rollout under 100 is off.

Every answer names the function version that served it (body ``version`` and header
``x-flags-version``): behind an alias that splits traffic between two versions, that is
the A/B variant. Unknown flags are 404, methods other than GET 405.

Standard library only.
"""

import hashlib
import json
import os
from pathlib import Path

FLAGS_FILE = Path(__file__).with_name("flags.json")


def load_flags(path=FLAGS_FILE):
    """The flags, checked once per environment (a bad file fails the cold start, saying
    which flag is wrong, rather than serving half of it)."""
    flags = json.loads(Path(path).read_text())["flags"]
    for name, flag in flags.items():
        if not isinstance(flag, dict) or not isinstance(flag.get("enabled"), bool):
            raise ValueError(f"flag {name!r}: give {{\"enabled\": true|false, ...}}")
        rollout = flag.get("rollout", 100)
        if not isinstance(rollout, (int, float)) or not 0 <= rollout <= 100:
            raise ValueError(f"flag {name!r}: rollout is a percentage, 0 to 100")
        if not isinstance(flag.get("users", []), list):
            raise ValueError(f"flag {name!r}: users is a list of user ids")
    return flags


FLAGS = load_flags()


def bucket(flag, user):
    """The user's place in 0..99 for this flag: stable, and independent between flags."""
    digest = hashlib.sha256(f"{flag}:{user}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def enabled(name, flag, user):
    if not flag["enabled"]:
        return False
    if "users" in flag:
        return user in flag["users"]
    rollout = flag.get("rollout", 100)
    if rollout >= 100:
        return True
    return bool(user) and bucket(name, user) < rollout


def _version(context):
    return (getattr(context, "function_version", None)
            or os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"))


def _reply(status, body, version):
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json", "x-flags-version": version,
                    "cache-control": "no-store"},
        "body": json.dumps(body),
    }


def handler(event, context):
    version = _version(context)
    method = event.get("requestContext", {}).get("http", {}).get("method", "GET")
    path = event.get("rawPath", "/").rstrip("/") or "/"
    user = (event.get("queryStringParameters") or {}).get("user", "")
    if method != "GET":
        reply = _reply(405, {"message": "only GET"}, version)
        reply["headers"]["allow"] = "GET"
        return reply
    if path == "/flags":
        flags = {name: enabled(name, flag, user) for name, flag in FLAGS.items()}
        return _reply(200, {"version": version, "user": user, "flags": flags}, version)
    if path.startswith("/flags/"):
        name = path.removeprefix("/flags/")
        if name not in FLAGS:
            return _reply(404, {"message": f"no flag {name!r}", "flags": sorted(FLAGS)}, version)
        body = {"version": version, "user": user, "flag": name,
                "enabled": enabled(name, FLAGS[name], user)}
        return _reply(200, body, version)
    return _reply(404, {"message": "GET /flags or /flags/NAME"}, version)
