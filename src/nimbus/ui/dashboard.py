"""The dashboard at ``/ui``, served by nimbus itself: one page (plain HTML, CSS and
JavaScript modules, charts by uPlot), its JSON (``data.py``) and its gate (``gate.py``).

It is an ASGI middleware placed before the control plane's SigV4 check: ``/ui`` paths
are answered here, under the dashboard's own gate, and everything else passes on
untouched. uPlot is not in the repository: ``make ui-assets`` (a step of ``make up`` and
``make test``) fetches a pinned release from the npm registry into ``ui/vendor/``; when
it is missing, ``/ui`` says so and how to get it instead of showing a blank page.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from urllib.parse import parse_qs

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nimbus.api.services import services_of
from nimbus.api.wire import receive_body
from nimbus.config import Config
from nimbus.errors import NimbusError
from nimbus.sigv4.credentials import Credentials
from nimbus.ui import data, gate

HERE = Path(__file__).parent
STATIC = HERE / "static"
VENDOR = HERE / "vendor"
# What index.html loads from vendor/ (the Makefile's ui-assets rule puts them there).
VENDOR_FILES = ("uPlot.iife.min.js", "uPlot.min.css")
UPLOT_VERSION = "1.6.32"  # keep in step with UPLOT_VERSION in the Makefile
_ASSET = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")
MEDIA = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
     b"img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


def dashboard_middleware(config: Config) -> list[Middleware]:
    """The dashboard, for ``Starlette(middleware=[...])``: before the control plane's own."""
    return [Middleware(Dashboard, api_auth=config.api_auth)]


def is_dashboard(path: str) -> bool:
    return path == "/ui" or path.startswith("/ui/")


class Dashboard:
    """Answers ``/ui`` and ``/ui/...``; passes every other request to ``app``."""

    def __init__(self, app: ASGIApp, api_auth: str, vendor: Path = VENDOR) -> None:
        self.app = app
        self.api_auth = api_auth
        self.vendor = vendor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_dashboard(scope["path"]):
            await self.app(scope, receive, send)
            return
        secured = _with_headers(send)
        response = await self.respond(scope, receive, secured)
        if response is not None:
            await response(scope, receive, secured)

    async def respond(self, scope: Scope, receive: Receive, send: Send) -> Response | None:
        """The answer to a dashboard request (None: already sent)."""
        path, method = scope["path"], scope["method"]
        if path.startswith("/ui/static/"):
            return _asset(STATIC, path.removeprefix("/ui/static/"))
        if path.startswith("/ui/vendor/"):
            return _asset(self.vendor, path.removeprefix("/ui/vendor/"))
        credentials = services_of(scope).credentials
        if path == "/ui/login":
            if self.api_auth != "sigv4":  # nothing to log in to
                return RedirectResponse("/ui", status_code=303)
            if method == "POST":
                try:
                    return await _log_in(Request(scope, receive), credentials)
                except NimbusError as exc:  # an oversized form
                    return login_page(exc.message, exc.status)
            return login_page()
        if path == "/ui/logout" and method == "POST":
            response: Response = RedirectResponse("/ui/login", status_code=303)
            response.delete_cookie(gate.COOKIE, path="/ui")
            return response
        verdict = gate.check(scope, self.api_auth, credentials)
        api = path.startswith(data.PREFIX + "/")
        if not verdict.allowed:
            if api:
                status = 401 if verdict.login else 403
                return JSONResponse({"message": verdict.reason}, status_code=status)
            if verdict.login:
                return RedirectResponse("/ui/login", status_code=303)
            return message_page("The dashboard is not open to you", verdict.reason, 403)
        if path == data.PREFIX + "/session":
            return JSONResponse({"Auth": self.api_auth}, headers=data.NO_STORE)
        if api:
            await data.api(scope, receive, send)
            return None
        if path in ("/ui", "/ui/") and method in ("GET", "HEAD"):
            return self.index()
        return message_page("Not found", f"The dashboard has no page {path}.", 404)

    def index(self) -> Response:
        missing = [f for f in VENDOR_FILES if not (self.vendor / f).is_file()]
        if missing:
            return message_page(
                "The dashboard's chart library is missing",
                f"uPlot {UPLOT_VERSION} is fetched from the npm registry when nimbus is set "
                f"up, and {', '.join(missing)} is not in {self.vendor}. In the nimbus "
                "checkout, run `make ui-assets` (needs npm; `make up` and `make test` run "
                "it too), then reload this page.",
                503,
            )
        return FileResponse(STATIC / "index.html", media_type="text/html",
                            headers={"Cache-Control": "no-store"})


def _asset(directory: Path, name: str) -> Response:
    path = directory / name
    if not _ASSET.fullmatch(name) or not path.is_file():
        return message_page("Not found", f"The dashboard has no file {name}.", 404)
    return FileResponse(
        path, media_type=MEDIA.get(path.suffix), headers={"Cache-Control": "no-cache"}
    )


async def _log_in(request: Request, credentials: Credentials) -> Response:
    if not gate.same_origin(request.scope):
        return login_page("The login form must be sent from this server's own page.", 403)
    # The form is small and urlencoded: parsed here, without a multipart library.
    body = await receive_body(request.receive, 16 * 1024, "dashboard login")
    form = parse_qs(body.decode("utf-8", "replace"))
    key, secret = form.get("access_key_id", [""])[0], form.get("secret_access_key", [""])[0]
    if not key or not secret:
        return login_page("Give both the access key id and the secret access key.", 400)
    if not gate.keys_match(key.strip(), secret.strip(), credentials):
        return login_page("Those are not nimbus' keys (see `nimbus credentials`).", 403)
    value, max_age = gate.new_session(credentials)
    response = RedirectResponse("/ui", status_code=303)
    response.set_cookie(gate.COOKIE, value, max_age=max_age, path="/ui", httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")
    return response


def _page(title: str, body: str, status: int) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)} · nimbus</title>"
        "<link rel=stylesheet href=/ui/static/app.css></head>"
        f"<body class=plain><main class=card><h1>{html.escape(title)}</h1>{body}</main>"
        "</body></html>",
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )


def message_page(title: str, text: str, status: int) -> HTMLResponse:
    # `code` spans for what the user types: the text is ours, escaped, then marked up.
    body = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))
    return _page(title, f"<p id=message>{body}</p>", status)


def login_page(error: str = "", status: int = 200) -> HTMLResponse:
    notice = f"<p class=error id=login-error>{html.escape(error)}</p>" if error else ""
    return _page(
        "Log in to the nimbus dashboard",
        "<p>The control plane requires SigV4 (<code>api_auth = \"sigv4\"</code>). Give the "
        "key pair that <code>nimbus credentials</code> prints.</p>" + notice +
        "<form method=post action=/ui/login>"
        "<label>Access key id <input name=access_key_id autocomplete=username required>"
        "</label><label>Secret access key <input name=secret_access_key type=password "
        "autocomplete=current-password required></label><button>Log in</button></form>",
        status,
    )


def _with_headers(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
        await send(message)

    return wrapped
