"""SigV4 authentication and access control for the control plane (``api_auth = "sigv4"``).

Without it anyone who can reach the port can call the API. With it every request must
be signed, service ``lambda``, with a key pair nimbus knows, as boto3, the AWS CLI and the
nimbus CLI do: the admin pair (``nimbus.sigv4.credentials``), which may do anything, or
a principal's from the principals file (``nimbus.iam.principals``), whose request is
mapped to its IAM action and resource (``access.py``) and allowed only if its identity
policies or the function's resource-based policy allow it (``nimbus.iam.decision``);
else AccessDeniedException (403). Such a principal's request that nimbus cannot map to
an action is refused the same way (no policy can allow it), and code a request names in
S3 needs ``s3:GetObject`` on the object as well (``code_s3.py``). ``/health`` stays
open; ``/lambda-url/`` and ``/execute-api/`` are the data plane, where each function URL
or route checks its own AuthType; code download links (GetFunction's ``Code.Location``)
are presigned and check their own signature.

A pure ASGI middleware, not ``BaseHTTPMiddleware``: the key, scope and time are checked
from the headers before the body is read, the body is hashed as it arrives, and then
replayed to the application unchanged.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any
from urllib.parse import parse_qsl, quote

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nimbus.api import aws_services
from nimbus.api.access import describe
from nimbus.api.code_location import CODE_PATH
from nimbus.api.code_s3 import s3_denied, s3_read_access
from nimbus.api.services import services_of
from nimbus.api.wire import error_response
from nimbus.config import Config
from nimbus.errors import AccessDenied, NimbusError, RequestTooLarge
from nimbus.iam.decision import authorize
from nimbus.iam.policy import Policy, resource_policy_of
from nimbus.iam.principals import Principals
from nimbus.models import FunctionPolicy
from nimbus.sigv4.verification import Caller, authenticate, control_plane_service
from nimbus.sns.signing import CERT_PATH
from nimbus.threads import blocking

log = logging.getLogger("nimbus.api.auth")

OPEN_PATHS = frozenset({"/health"})
DATA_PLANE_PREFIXES = ("/lambda-url/", "/execute-api/")
# The largest control-plane request: a 50 MB zip, base64-encoded in a JSON body
# (api/functions.py CODE_REQUEST_LIMIT), with room for the other members.
MAX_BODY = 70 * 1024 * 1024


def auth_middleware(config: Config) -> list[Middleware]:
    """What ``Starlette(middleware=...)`` needs for ``config.api_auth`` (nothing for "none")."""
    if config.api_auth == "none":
        return []
    principals = Principals.load(config)
    log.info(
        "control plane requires SigV4 (%d principal(s)); `nimbus credentials --data-dir %s` "
        "prints the admin keys",
        len(list(principals.keyring)),
        config.data_dir,
    )
    return [Middleware(SigV4Middleware, principals=principals, config=config)]


class SigV4Middleware:
    """Refuses control-plane requests not signed with a known key, or whose signer's
    policies do not allow them."""

    def __init__(self, app: ASGIApp, principals: Principals, config: Config) -> None:
        self.app = app
        self.principals = principals
        self.config = config
        self.region = config.region

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _exempt(scope):
            await self.app(scope, receive, send)
            return
        # A request for another AWS service nimbus speaks (SQS...) is signed for that
        # service and refused in its protocol's shape.
        aws = aws_services.auth_target(scope)
        service, refuse = aws if aws is not None else (control_plane_service(scope["path"]), None)
        render = refuse or error_response
        try:
            pending = authenticate(
                scope["method"],
                scope.get("raw_path") or quote(scope["path"], safe="/~!$&'()*+,;=:@"),
                scope["query_string"],
                [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]],
                self.principals.keyring,
                region=self.region,
                service=service,
            )
        except NimbusError as exc:
            await _drain(receive)
            await render(exc)(scope, receive, send)
            return
        digest = hashlib.sha256() if pending.needs_body_hash else None
        body, complete = await _read(receive, digest)
        if not complete:
            return  # the client went away mid-body: nobody to answer
        try:
            if body is None:
                raise RequestTooLarge(f"Request must be smaller than {MAX_BODY} bytes.")
            caller = pending.check_hash(digest.hexdigest() if digest else "")
            await self._authorize(caller, scope, body)
        except NimbusError as exc:
            await render(exc)(scope, receive, send)
            return
        scope.setdefault("state", {})["caller"] = caller
        await self.app(scope, _replay(body, receive), send)

    async def _authorize(self, caller: Caller, scope: Scope, body: bytes) -> None:
        """Raise AccessDenied unless the signer may do what the request does."""
        principal = self.principals.find(caller.access_key)
        if principal is None or principal.admin:
            return  # the admin (root) may do anything; the keyring knows no other key
        try:
            access = describe(scope, body, self.config)
        except Exception:  # a request we cannot map is refused, never answered with a 500
            log.exception("cannot map %s %s to an IAM action", scope["method"], scope["path"])
            access = None
        if access is None:
            # No action nimbus can name, so no policy can allow it: refused here rather
            # than trusting every route to refuse it before acting.
            raise AccessDenied(
                f"User: {principal.arn} is not authorized to perform this request: nimbus "
                "could not tell which action it is."
            )

        async def resource_policy(function: str, qualifier: str) -> Policy | None:
            found = await blocking(services_of(scope).policies.find, function, qualifier)
            return _parsed(found)

        await authorize(principal, access, resource_policy)
        # Code named by an S3 location is read with nimbus's rights: the caller must be
        # allowed to read it too (code_s3.py).
        read = s3_read_access(access.action, body)
        if read is not None:
            try:
                await authorize(principal, read, None)
            except AccessDenied as exc:
                raise s3_denied(read, exc) from None


def _parsed(policy: FunctionPolicy | None) -> Policy | None:
    return None if policy is None else resource_policy_of(policy.statements)


def _exempt(scope: Scope) -> bool:
    path = scope["path"]
    if path in OPEN_PATHS or path.startswith((*DATA_PLANE_PREFIXES, CODE_PATH, CERT_PATH)):
        return True
    return _sns_confirmation(scope)


def _sns_confirmation(scope: Scope) -> bool:
    """An SNS SubscribeURL fetched by the endpoint that got it (its token is the proof, as
    on AWS): a plain GET of ``/`` whose one Action is ConfirmSubscription, nothing that
    could route it elsewhere: no body either (a form body's Action would win over the
    query's)."""
    if scope["method"] != "GET" or scope["path"] != "/":
        return False
    for key, value in scope["headers"]:
        name = key.lower()
        if name in (b"authorization", b"x-amz-target", b"transfer-encoding"):
            return False
        if name == b"content-length" and value.strip() not in (b"", b"0"):
            return False
    query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    return [v for k, v in query if k == "Action"] == ["ConfirmSubscription"]


async def _read(receive: Receive, digest: Any) -> tuple[bytes | None, bool]:
    """The whole body (None when over MAX_BODY, still read to its end), hashed as it
    arrives; and whether it arrived whole rather than cut short by a disconnect."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        size += len(chunk)
        if digest is not None:
            digest.update(chunk)
        if size <= MAX_BODY:
            chunks.append(chunk)
        elif chunks:
            chunks.clear()
        if not message.get("more_body", False):
            return (b"".join(chunks) if size <= MAX_BODY else None), True


async def _drain(receive: Receive) -> None:
    """Read a refused request's body to its end so the client gets to read the answer."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


def _replay(body: bytes, receive: Receive) -> Receive:
    """The buffered body once, then the real channel (which reports the disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
