"""AWS Signature Version 4: verifying signed requests (``signing.py`` signs them).

The server side (``verify``, or ``authenticate`` then ``Pending.check`` to look at the
headers before the body arrives) accepts both forms AWS defines: the ``Authorization:
AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`` header and presigned
query strings (``X-Amz-Algorithm``, ``X-Amz-Credential``, ``X-Amz-Date``,
``X-Amz-Expires``, ``X-Amz-SignedHeaders``, ``X-Amz-Signature``). The client side
(``signing.py``) builds the same canonical request (``canonical.py``).

Failures raise Lambda's errors: ``MissingAuthenticationTokenException`` (nothing
signed), ``IncompleteSignatureException`` (malformed), ``UnrecognizedClientException``
(unknown key), ``InvalidSignatureException`` (wrong secret, scope, or time).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from time import time
from urllib.parse import unquote_to_bytes

from nimbus.errors import (
    IncompleteSignature,
    InvalidSignature,
    MissingAuthenticationToken,
    UnrecognizedClient,
)
from nimbus.sigv4.canonical import (
    ALGORITHM,
    TERMINATOR,
    TIMESTAMP_FORMAT,
    UNSIGNED_PAYLOAD,
    amz_date,
    as_bytes,
    canonical_headers,
    canonical_query,
    canonical_request,
    canonical_uri,
    header_map,
    signature_of,
    signing_key,
    string_to_sign,
    verbatim_query,
)
from nimbus.sigv4.chunks import STREAMING_PAYLOADS, SignatureChain
from nimbus.sigv4.credentials import Credentials, Keyring

MAX_SKEW_SECONDS = 5 * 60  # Lambda's tolerance for a client's clock
MAX_PRESIGN_SECONDS = 7 * 24 * 3600

MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service "
    "documentation for details."
)
UNKNOWN_KEY = "The security token included in the request is invalid."
_AUTH_PARAMS = ("Credential", "SignedHeaders", "Signature")


@dataclass(frozen=True)
class Caller:
    """Who signed a request: the identity behind the access key."""

    access_key: str
    account_id: str
    user_arn: str
    user_id: str

    def iam_authorizer(self) -> dict[str, object]:
        """The ``requestContext.authorizer.iam`` block of a function URL event."""
        return {
            "accessKey": self.access_key,
            "accountId": self.account_id,
            "callerId": self.user_id,
            "cognitoIdentity": None,
            "principalOrgId": None,
            "userArn": self.user_arn,
            "userId": self.user_id,
        }


@dataclass(frozen=True)
class Pending:
    """A request whose key, scope and time check out; only the payload is left to hash.

    ``authenticate`` returns it before the body is read, so a caller without a valid
    key is refused without buffering anything.
    """

    caller: Caller
    declared_payload: str | None  # X-Amz-Content-SHA256 as sent
    _key: bytes
    _timestamp: str
    _scope: str
    _prefixes: tuple[str, ...]  # canonical requests up to the payload hash, one per form
    _signature: str

    @property
    def needs_body_hash(self) -> bool:
        return self.declared_payload != UNSIGNED_PAYLOAD and not self.streaming

    @property
    def streaming(self) -> bool:
        """An S3 aws-chunked payload (``STREAMING-...``): signed chunk by chunk, if at all
        (``chain``), so ``check_hash`` checks the headers' signature only."""
        return (self.declared_payload or "").startswith("STREAMING-")

    def chain(self) -> SignatureChain:
        """Verifies the chunk and trailer signatures of a streaming payload, each
        chained to the one before, starting from this request's."""
        return SignatureChain(self._key, self._timestamp, self._scope, self._signature)

    def check(self, body: bytes) -> Caller:
        return self.check_hash(hashlib.sha256(body).hexdigest())

    def check_hash(self, body_sha256: str) -> Caller:
        """Finish with the body's SHA-256 (hex); raise unless the signature matches."""
        payload = self.declared_payload
        if payload is None:
            payload = body_sha256
        elif (
            payload != UNSIGNED_PAYLOAD
            and not self.streaming
            and not hmac.compare_digest(payload, body_sha256)
        ):
            raise InvalidSignature(
                "The provided 'x-amz-content-sha256' header does not match what was "
                "computed from the request body."
            )
        for prefix in self._prefixes:
            expected = signature_of(
                self._key, string_to_sign(self._timestamp, self._scope, prefix + payload)
            )
            if hmac.compare_digest(expected, self._signature):
                return self.caller
        raise InvalidSignature(MISMATCH)


@dataclass(frozen=True)
class _Claim:
    access_key: str
    date: str
    region: str
    service: str
    terminator: str
    signed_headers: str
    signature: str
    timestamp: str
    expires: int | None  # presigned only


# API Gateway's REST APIs (apigatewayv2's /v2/..., apigateway's keys and usage plans):
# boto3 signs their paths for service "apigateway", Lambda's for "lambda".
_APIGATEWAY_PATHS = ("/v2/", "/apikeys", "/usageplans")


def control_plane_service(path: str) -> str:
    """The service name a client signs a nimbus control-plane request for."""
    return "apigateway" if path.startswith(_APIGATEWAY_PATHS) else "lambda"


def verify(
    method: str,
    raw_path: str | bytes,
    raw_query: str | bytes,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    credentials: Credentials | Keyring,
    *,
    region: str,
    service: str,
    now: float | None = None,
) -> Caller:
    """Check a request's SigV4 signature; return who signed it or raise (403).

    ``raw_path`` and ``raw_query`` are the request target exactly as received (ASGI
    ``scope["raw_path"]`` and ``scope["query_string"]``): the client signed what it sent.
    """
    pending = authenticate(
        method, raw_path, raw_query, headers, credentials, region=region, service=service, now=now
    )
    return pending.check(body)


def authenticate(
    method: str,
    raw_path: str | bytes,
    raw_query: str | bytes,
    headers: Iterable[tuple[str, str]],
    credentials: Credentials | Keyring,
    *,
    region: str,
    service: str,
    now: float | None = None,
    s3: bool = False,
) -> Pending:
    """Everything ``verify`` checks except the payload: key, time, scope, signed headers.

    ``s3``: S3's rules, which differ from every other service's: the path is signed as
    sent (not normalised nor encoded again), a presigned request's payload is
    ``UNSIGNED-PAYLOAD``, and aws-chunked payloads (``STREAMING-...``) are allowed."""
    found = header_map(headers)
    query = as_bytes(raw_query)
    claim = _claim(found, query)
    credentials = _signer(credentials, claim.access_key)
    _check_time(claim, time() if now is None else now)
    _check_scope(claim, region, service)
    signed = claim.signed_headers.split(";")
    if "host" not in signed:
        raise IncompleteSignature(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
        )
    uri = (as_bytes(raw_path).decode("latin-1") or "/") if s3 else canonical_uri(raw_path)
    head = canonical_headers(found, signed)
    presigned = claim.expires is not None
    prefixes = []
    for form in (
        canonical_query(query, drop_signature=presigned),
        verbatim_query(query, drop_signature=presigned),
    ):
        prefix = canonical_request(method, uri, form, head, claim.signed_headers, "")
        if prefix not in prefixes:
            prefixes.append(prefix)
    declared = found.get("x-amz-content-sha256", [None])[0]
    if s3 and presigned and declared is None:
        declared = UNSIGNED_PAYLOAD
    elif s3 and declared is None:
        # S3 wants it with header auth; without it the signature could be checked only
        # after the whole body was stored, which lets an unsigned upload fill the disk.
        raise IncompleteSignature(
            "Missing required header for this request: x-amz-content-sha256 (the body's "
            "hex SHA-256, UNSIGNED-PAYLOAD or a STREAMING-... value, as S3 requires)."
        )
    if declared is not None and declared.startswith("STREAMING-"):
        if not s3 or declared not in STREAMING_PAYLOADS:
            raise IncompleteSignature(
                f"nimbus does not accept streaming (aws-chunked) payload signatures "
                f"('{declared}'): sign the whole payload, or send UNSIGNED-PAYLOAD."
            )
    elif declared is not None and declared != UNSIGNED_PAYLOAD and not _is_sha256(declared):
        raise IncompleteSignature(
            "x-amz-content-sha256 must be UNSIGNED-PAYLOAD or the hex SHA-256 of the body, "
            f"not '{declared}'."
        )
    return Pending(
        caller=Caller(
            claim.access_key, credentials.account_id, credentials.user_arn, credentials.user_id
        ),
        declared_payload=declared,
        _key=signing_key(credentials.secret_access_key, claim.date, claim.region, claim.service),
        _timestamp=claim.timestamp,
        _scope=f"{claim.date}/{claim.region}/{claim.service}/{claim.terminator}",
        _prefixes=tuple(prefixes),
        _signature=claim.signature,
    )


def _signer(credentials: Credentials | Keyring, access_key: str) -> Credentials:
    """The pair whose access key signed the request (``UnrecognizedClient``: none)."""
    if isinstance(credentials, Keyring):
        found = credentials.find(access_key)
        if found is not None:
            return found
    elif hmac.compare_digest(access_key.encode(), credentials.access_key_id.encode()):
        return credentials
    raise UnrecognizedClient(UNKNOWN_KEY)


def _is_sha256(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _query_params(query: bytes) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in query.split(b"&"):
        name, _, value = pair.partition(b"=")
        if name.startswith(b"X-Amz-"):
            params[name.decode("latin-1")] = unquote_to_bytes(value.replace(b"+", b" ")).decode(
                "utf-8", "replace"
            )
    return params


def _claim(headers: Mapping[str, list[str]], query: bytes) -> _Claim:
    params = _query_params(query) if b"X-Amz-" in query else {}
    authorization = headers.get("authorization")
    presigned = "X-Amz-Signature" in params or "X-Amz-Algorithm" in params
    if authorization and presigned:
        raise IncompleteSignature(
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter or "
            "the Authorization header should be specified."
        )
    if authorization:
        return _header_claim(authorization[0], headers)
    if presigned:
        return _query_claim(params)
    raise MissingAuthenticationToken("Missing Authentication Token")


def _header_claim(authorization: str, headers: Mapping[str, list[str]]) -> _Claim:
    algorithm, _, rest = authorization.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise IncompleteSignature(
            f"Unsupported Authorization scheme '{algorithm}': sign the request with AWS "
            f"Signature Version 4 ('{ALGORITHM} Credential=..., SignedHeaders=..., "
            "Signature=...')."
        )
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, equals, value = part.strip().partition("=")
        if not equals:
            raise IncompleteSignature(
                f"'{part.strip()}' not a valid key=value pair (missing equal-sign) in "
                f"Authorization header: '{authorization}'."
            )
        fields[name] = value
    problems = [
        f"Authorization header requires '{p}' parameter." for p in _AUTH_PARAMS if not fields.get(p)
    ]
    if "x-amz-date" in headers:
        timestamp = headers["x-amz-date"][0].strip()
    elif "date" in headers:
        timestamp = _from_http_date(headers["date"][0])
    else:
        timestamp = ""
        problems.append(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
        )
    if problems:
        raise IncompleteSignature(" ".join([*problems, f"Authorization={authorization}"]))
    return _scoped(
        fields["Credential"], fields["SignedHeaders"], fields["Signature"], timestamp, None
    )


def _query_claim(params: Mapping[str, str]) -> _Claim:
    missing = [
        name
        for name in (
            "X-Amz-Algorithm",
            "X-Amz-Credential",
            "X-Amz-Date",
            "X-Amz-Expires",
            "X-Amz-SignedHeaders",
            "X-Amz-Signature",
        )
        if not params.get(name)
    ]
    if missing:
        raise IncompleteSignature(
            f"A presigned request needs the query parameters {', '.join(missing)}."
        )
    if params["X-Amz-Algorithm"] != ALGORITHM:
        raise IncompleteSignature(
            f"X-Amz-Algorithm must be {ALGORITHM}, not '{params['X-Amz-Algorithm']}'."
        )
    expires = params["X-Amz-Expires"]
    if not expires.isdigit() or not 1 <= int(expires) <= MAX_PRESIGN_SECONDS:
        raise IncompleteSignature(
            f"X-Amz-Expires must be a number of seconds from 1 to {MAX_PRESIGN_SECONDS} "
            f"(7 days), not '{expires}'."
        )
    return _scoped(
        params["X-Amz-Credential"],
        params["X-Amz-SignedHeaders"],
        params["X-Amz-Signature"],
        params["X-Amz-Date"],
        int(expires),
    )


def _scoped(
    credential: str, signed_headers: str, signature: str, timestamp: str, expires: int | None
) -> _Claim:
    parts = credential.split("/")
    if len(parts) != 5 or not all(parts):
        raise IncompleteSignature(
            f"Credential '{credential}' is not of the form "
            "<AccessKeyId>/<YYYYMMDD>/<region>/<service>/aws4_request."
        )
    key_id, date, region, service, terminator = parts
    return _Claim(
        key_id, date, region, service, terminator, signed_headers, signature.strip(),
        timestamp, expires,
    )


def _from_http_date(value: str) -> str:
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError) as exc:
        raise IncompleteSignature(
            f"The Date header '{value}' is not an HTTP date; send X-Amz-Date instead."
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def _check_time(claim: _Claim, now: float) -> None:
    try:
        signed_at = datetime.strptime(claim.timestamp, TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError as exc:
        raise IncompleteSignature(
            "Date must be in ISO-8601 'basic format' (YYYYMMDD'T'HHMMSS'Z'), got "
            f"'{claim.timestamp}'."
        ) from exc
    at = signed_at.timestamp()
    if at > now + MAX_SKEW_SECONDS:
        raise InvalidSignature(
            f"Signature not yet current: {claim.timestamp} is still later than "
            f"{amz_date(now + MAX_SKEW_SECONDS)} ({amz_date(now)} + 5 min.)"
        )
    if claim.expires is None and at < now - MAX_SKEW_SECONDS:
        raise InvalidSignature(
            f"Signature expired: {claim.timestamp} is now earlier than "
            f"{amz_date(now - MAX_SKEW_SECONDS)} ({amz_date(now)} - 5 min.)"
        )
    if claim.expires is not None and at + claim.expires < now:
        raise InvalidSignature(
            f"Signature expired: the presigned request signed at {claim.timestamp} was valid "
            f"for {claim.expires} s, until {amz_date(at + claim.expires)}; it is now "
            f"{amz_date(now)}. Presign it again."
        )
    if claim.date != claim.timestamp[:8]:
        raise InvalidSignature(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{claim.date}' != '{claim.timestamp[:8]}', from '{claim.timestamp}'."
        )


def _check_scope(claim: _Claim, region: str, service: str) -> None:
    if claim.region != region:
        raise InvalidSignature(
            f"Credential should be scoped to a valid region, not '{claim.region}'. This "
            f"nimbus serves region '{region}': sign with that region (AWS_DEFAULT_REGION)."
        )
    if claim.service != service:
        raise InvalidSignature(
            f"Credential should be scoped to correct service: '{service}', not '{claim.service}'."
        )
    if claim.terminator != TERMINATOR:
        raise InvalidSignature(
            f"Credential should be scoped with a valid terminator: '{TERMINATOR}', not "
            f"'{claim.terminator}'."
        )
