"""Who may call the S3 API: SigV4 with S3's rules (``authenticate(..., s3=True)``) when
the control plane requires signatures (``api_auth = "sigv4"``), answered with S3's
error codes; with auth off, anyone, but a presigned URL still expires. SigV2 presigned
URLs (boto3's default for ``generate_presigned_url``) are verified too.

S3 requests skip the control plane's auth middleware (it buffers bodies; S3's are
streamed), so this is where they are checked: the headers before any of the body is
read, the payload's hash or chunk signatures as it streams (``s3_payload``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from datetime import UTC, datetime
from time import time
from urllib.parse import parse_qsl, unquote

from nimbus.errors import (
    IncompleteSignature,
    InvalidSignature,
    MissingAuthenticationToken,
    NimbusError,
    UnrecognizedClient,
)
from nimbus.protocol.errors import AwsError
from nimbus.sigv4.canonical import TIMESTAMP_FORMAT
from nimbus.sigv4.credentials import Credentials
from nimbus.sigv4.verification import MAX_PRESIGN_SECONDS, Pending, authenticate


def is_presigned(query: bytes) -> bool:
    return b"X-Amz-Signature=" in query or b"X-Amz-Credential=" in query


def is_presigned_v2(query: bytes) -> bool:
    """A SigV2 presigned URL (``AWSAccessKeyId``, ``Signature``, ``Expires``): what
    boto3's ``generate_presigned_url`` makes unless told ``signature_version="s3v4"``."""
    return b"AWSAccessKeyId=" in query and b"Signature=" in query


def authorize(
    method: str,
    raw_path: bytes,
    query: bytes,
    headers: Sequence[tuple[str, str]],
    *,
    credentials: Credentials | None,
    region: str,
    virtual_bucket: str | None = None,
) -> Pending | None:
    """Check the request's signature as far as its headers allow (the payload's hash,
    when it is not declared, is checked at the end of the body with the returned
    ``Pending``); None: nothing more to check. ``credentials`` None: auth is off, only a
    presigned URL's expiry is checked. Raises S3's errors."""
    presigned = is_presigned(query)
    if is_presigned_v2(query) and not presigned:
        _check_v2(method, raw_path, query, headers, credentials, virtual_bucket)
        return None
    if credentials is None:
        if presigned:
            _check_expiry(query)
        return None
    try:
        pending = authenticate(
            method, raw_path, query, headers, credentials, region=region, service="s3", s3=True
        )
        declared = pending.declared_payload
        if declared is not None:
            # The signature covers the declared payload hash, not the body: it can be
            # checked now, before any of the body is read (which is compared to it later).
            pending.check_hash(declared if pending.needs_body_hash else "")
    except NimbusError as exc:
        raise s3_error(exc, presigned) from None
    return pending


def check_body_hash(pending: Pending, body_sha256: str) -> None:
    """The signature of a request that did not declare its payload hash, now that the
    body has been hashed."""
    try:
        pending.check_hash(body_sha256)
    except NimbusError as exc:
        raise s3_error(exc, False) from None


# Sub-resources a SigV2 signature covers (as botocore's HmacV1Auth signs them).
_V2_SUBRESOURCES = frozenset(
    {
        "accelerate",
        "acl",
        "cors",
        "defaultObjectAcl",
        "location",
        "logging",
        "partNumber",
        "policy",
        "requestPayment",
        "torrent",
        "versioning",
        "versionId",
        "versions",
        "website",
        "uploads",
        "uploadId",
        "response-content-type",
        "response-content-language",
        "response-expires",
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
        "delete",
        "lifecycle",
        "tagging",
        "restore",
        "storageClass",
        "notification",
        "replication",
        "analytics",
        "metrics",
        "inventory",
        "select",
        "select-type",
        "object-lock",
    }
)


def _check_v2(
    method: str,
    raw_path: bytes,
    query: bytes,
    headers: Sequence[tuple[str, str]],
    credentials: Credentials | None,
    virtual_bucket: str | None,
) -> None:
    pairs = [pair.partition("=") for pair in query.decode("latin-1").split("&") if pair]
    params = {name: unquote(value) for name, _, value in pairs}
    key, signature, expires = (
        params.get("AWSAccessKeyId", ""),
        params.get("Signature", ""),
        params.get("Expires", ""),
    )
    if not (key and signature and expires.isascii() and expires.isdigit()):
        raise AwsError(
            "AccessDenied",
            "Query-string authentication requires the Signature, Expires and AWSAccessKeyId "
            "parameters",
            status=403,
        )
    if int(expires) < time():
        refused = AwsError("AccessDenied", "Request has expired", status=403)
        refused.extra["Expires"] = expires
        raise refused
    if credentials is None:
        return
    if not hmac.compare_digest(key.encode(), credentials.access_key_id.encode()):
        raise s3_error(UnrecognizedClient(""), True)
    found = {name.lower(): value.strip() for name, value in headers}
    amz = {k: v for k, v in params.items() if k.lower().startswith("x-amz-")}
    amz.update({k: v for k, v in found.items() if k.startswith("x-amz-") and k not in amz})
    resource = raw_path.decode("latin-1") or "/"
    if virtual_bucket is not None:
        resource = f"/{virtual_bucket}{resource}"
    subresources = sorted(
        (name, unquote(value) if equals else None)
        for name, equals, value in pairs
        if name in _V2_SUBRESOURCES
    )
    if subresources:
        resource += "?" + "&".join(n if v is None else f"{n}={v}" for n, v in subresources)
    to_sign = (
        f"{method}\n{found.get('content-md5', params.get('content-md5', ''))}\n"
        f"{found.get('content-type', params.get('content-type', ''))}\n{expires}\n"
        + "".join(f"{k.lower()}:{v}\n" for k, v in sorted(amz.items()))
        + resource
    )
    expected = base64.b64encode(
        hmac.new(credentials.secret_access_key.encode(), to_sign.encode(), hashlib.sha1).digest()
    ).decode()
    if not hmac.compare_digest(expected, signature):
        raise AwsError(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. "
            "Check your key and signing method.",
            status=403,
        )


def s3_error(exc: NimbusError, presigned: bool) -> AwsError:
    """A SigV4 refusal in S3's terms."""
    message = exc.message
    if isinstance(exc, UnrecognizedClient):
        return AwsError(
            "InvalidAccessKeyId",
            "The AWS Access Key Id you provided does not exist in our records.",
            status=403,
        )
    if isinstance(exc, MissingAuthenticationToken):
        return AwsError("AccessDenied", "Access Denied: the request is not signed.", status=403)
    if isinstance(exc, IncompleteSignature):
        code = "AuthorizationQueryParametersError" if presigned else "AuthorizationHeaderMalformed"
        return AwsError(code, message, status=400)
    if isinstance(exc, InvalidSignature):
        if presigned and "expired" in message:
            return AwsError("AccessDenied", f"Request has expired. {message}", status=403)
        if "not yet current" in message or "expired" in message:
            return AwsError("RequestTimeTooSkewed", message, status=403)
        if "scoped" in message:
            return AwsError("AuthorizationHeaderMalformed", message, status=400)
        if "x-amz-content-sha256" in message:
            return AwsError("XAmzContentSHA256Mismatch", message, status=400)
        return AwsError("SignatureDoesNotMatch", message, status=403)
    return AwsError("AccessDenied", message, status=403)


def _check_expiry(query: bytes) -> None:
    params = dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True))
    date, expires = params.get("X-Amz-Date", ""), params.get("X-Amz-Expires", "")
    try:
        signed_at = datetime.strptime(date, TIMESTAMP_FORMAT).replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise AwsError(
            "AuthorizationQueryParametersError",
            f"X-Amz-Date must be in ISO-8601 basic format (YYYYMMDD'T'HHMMSS'Z'), not '{date}'.",
        ) from None
    if not (expires.isascii() and expires.isdigit()) or not (
        1 <= int(expires) <= MAX_PRESIGN_SECONDS
    ):
        raise AwsError(
            "AuthorizationQueryParametersError",
            f"X-Amz-Expires must be a number of seconds from 1 to {MAX_PRESIGN_SECONDS}, "
            f"not '{expires}'.",
        )
    if signed_at + int(expires) < time():
        refused = AwsError("AccessDenied", "Request has expired", status=403)
        refused.extra["X-Amz-Expires"] = expires
        raise refused
