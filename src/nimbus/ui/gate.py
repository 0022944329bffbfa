"""Who may see the dashboard.

The dashboard reads what the control plane reads (every function, its logs, its traces),
so it is never more open than the control plane, and never open to other machines
without a key:

- ``api_auth = "none"`` (the default): the control plane is open to whoever reaches the
  port, which by default is this machine only. The dashboard answers a browser on this
  machine (a loopback peer) that calls it by a loopback name (``localhost``,
  ``127.0.0.1``, ``[::1]``), and refuses anyone else with a page that says how to let
  them in. The name check keeps a web page from another site, re-pointing its own
  domain at 127.0.0.1 (DNS rebinding), from reading the dashboard's JSON.
- ``api_auth = "sigv4"``: a browser cannot sign requests, so the dashboard asks once for
  nimbus' key pair (what ``nimbus credentials`` prints) and keeps a session cookie:
  HttpOnly, SameSite=Strict, valid 12 hours, an HMAC of its expiry under the secret key
  (so rotating the keys ends every session). Loopback gets no exemption here: sandboxed
  functions share the host's loopback, and ``sigv4`` is how they are kept out.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time
from dataclasses import dataclass
from http.cookies import SimpleCookie

from starlette.types import Scope

from nimbus.sigv4.credentials import Credentials

COOKIE = "nimbus_ui"
SESSION_SECONDS = 12 * 3600
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


@dataclass(frozen=True)
class Verdict:
    """Whether a request may see the dashboard; if not, why (shown to the user) and
    whether logging in would help."""

    allowed: bool
    reason: str = ""
    login: bool = False


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def is_loopback_peer(scope: Scope) -> bool:
    client = scope.get("client")
    if not client:
        return False
    try:
        return ipaddress.ip_address(client[0]).is_loopback
    except ValueError:
        return False


def host_name(host: str) -> str:
    """The name part of a Host header (``[::1]:9000`` -> ``[::1]``, ``a:9000`` -> ``a``)."""
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    name = host_name(host).lower()
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check(scope: Scope, api_auth: str, credentials: Credentials) -> Verdict:
    """The verdict on one request for a dashboard path other than the login page."""
    if api_auth == "sigv4":
        if session_valid(cookie_of(scope), credentials):
            return Verdict(True)
        return Verdict(False, "Log in with nimbus' access key (`nimbus credentials`).", True)
    if not is_loopback_peer(scope):
        return Verdict(
            False,
            "The dashboard answers only browsers on the machine nimbus runs on while the "
            "control plane has no authentication (api_auth = \"none\"). Set api_auth = "
            "\"sigv4\" (NIMBUS_API_AUTH=sigv4) to log in from elsewhere with nimbus' keys, "
            "or reach it through an SSH tunnel (ssh -L 9000:127.0.0.1:9000 HOST).",
        )
    if not is_loopback_host(header(scope, b"host")):
        return Verdict(
            False,
            "Open the dashboard as http://127.0.0.1:PORT/ui or http://localhost:PORT/ui: "
            "without authentication it answers only requests addressed to a loopback name.",
        )
    return Verdict(True)


def cookie_of(scope: Scope) -> str | None:
    raw = header(scope, b"cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # a malformed Cookie header is no session
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None else None


def _mac(credentials: Credentials, expires: int) -> str:
    message = f"nimbus-ui-session:{credentials.access_key_id}:{expires}".encode()
    return hmac.new(credentials.secret_access_key.encode(), message, hashlib.sha256).hexdigest()


def new_session(credentials: Credentials, now: float | None = None) -> tuple[str, int]:
    """A session cookie's value and its lifetime in seconds."""
    expires = int(now if now is not None else time.time()) + SESSION_SECONDS
    return f"{expires}.{_mac(credentials, expires)}", SESSION_SECONDS


def session_valid(value: str | None, credentials: Credentials, now: float | None = None) -> bool:
    if not value or "." not in value:
        return False
    raw_expires, mac = value.split(".", 1)
    # A forged cookie is no session, never an error: digits int() takes (at most 12: a
    # time in seconds), a MAC compare_digest takes (ASCII).
    if not (raw_expires.isascii() and raw_expires.isdigit() and len(raw_expires) <= 12
            and mac.isascii()):
        return False
    expires = int(raw_expires)
    if expires < (now if now is not None else time.time()):
        return False
    return hmac.compare_digest(mac, _mac(credentials, expires))


def keys_match(access_key_id: str, secret_access_key: str, credentials: Credentials) -> bool:
    """Both halves compared in constant time, each whatever the other's outcome."""
    key_ok = hmac.compare_digest(access_key_id.encode(), credentials.access_key_id.encode())
    secret_ok = hmac.compare_digest(
        secret_access_key.encode(), credentials.secret_access_key.encode()
    )
    return key_ok and secret_ok


def same_origin(scope: Scope) -> bool:
    """A form post from a page of this server (or from no page: Origin absent)."""
    origin = header(scope, b"origin")
    if origin is None or origin == "null":
        return origin is None
    host = header(scope, b"host") or ""
    return origin.split("://", 1)[-1].rstrip("/") == host
