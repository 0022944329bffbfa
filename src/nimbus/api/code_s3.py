"""Deployment packages named by an S3 location: ``Code.S3Bucket/S3Key/S3ObjectVersion``
(CreateFunction), ``S3Bucket/S3Key/S3ObjectVersion`` (UpdateFunctionCode) and
``Content.S3Bucket/S3Key/S3ObjectVersion`` (PublishLayerVersion), read from nimbus' own
buckets (``nimbus.s3``).

The object is copied into the code store in chunks, never held in memory whole, and then
checked exactly as an inline ``ZipFile`` is (``nimbus.store.archive``). As on Lambda, a
package from S3 is not bound by the 50 MB of an inline upload, only by the unzipped limit.
A missing bucket or key is Lambda's ``InvalidParameterValueException`` quoting S3's error.

nimbus reads the object with its own rights, so the caller's are checked first, as Lambda
does with the caller's credentials: a principal other than the admin needs
``s3:GetObject`` on ``arn:aws:s3:::<bucket>/<key>`` (``s3_read_access``, asked by the
auth middleware), else AccessDeniedException in Lambda's words.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from nimbus.errors import AccessDenied, CodeStorageExceeded, InvalidParameterValue, NimbusError
from nimbus.iam.decision import Access
from nimbus.protocol.errors import AwsError
from nimbus.s3.store import S3Store
from nimbus.store.code import CodeStore, StoredCode

MEMBERS = ("S3Bucket", "S3Key", "S3ObjectVersion")
# The Lambda service model's S3Bucket, S3Key and S3ObjectVersion constraints.
_BUCKET = re.compile(r"[0-9A-Za-z\.\-_]*(?<!\.)")


@dataclass(frozen=True)
class S3Location:
    """Where a package is: a bucket, a key and (buckets being unversioned) "null" or None."""

    bucket: str
    key: str
    version_id: str | None = None


def s3_location(code: dict[str, Any], where: str) -> S3Location | None:
    """The S3 location ``code`` names, None when it names none; InvalidParameterValue when
    it is incomplete or given beside an inline ZipFile."""
    if not any(code.get(member) is not None for member in MEMBERS):
        return None
    if code.get("ZipFile"):
        raise InvalidParameterValue(
            f"Pass either {where}ZipFile or {where}S3Bucket and {where}S3Key, not both."
        )
    bucket, key, version = (code.get(member) for member in MEMBERS)
    if not isinstance(bucket, str) or not isinstance(key, str) or not bucket or not key:
        raise InvalidParameterValue(
            f"{where}S3Bucket and {where}S3Key are both required to load code from S3 "
            f"(given: S3Bucket={bucket!r}, S3Key={key!r})."
        )
    if not 3 <= len(bucket) <= 63 or not _BUCKET.fullmatch(bucket):
        raise InvalidParameterValue(
            f"{where}S3Bucket '{bucket}' is not a bucket name: 3 to 63 letters, digits, "
            "'.', '-' or '_', not ending in '.'."
        )
    if len(key) > 1024:
        raise InvalidParameterValue(f"{where}S3Key must be at most 1024 characters.")
    if version is not None and (not isinstance(version, str) or not 1 <= len(version) <= 1024):
        raise InvalidParameterValue(
            f"{where}S3ObjectVersion must be a version id of 1 to 1024 characters."
        )
    return S3Location(bucket, key, version)


# Where each operation that takes code from S3 names it in its JSON body ("": top level).
_CODE_MEMBER = {
    "lambda:CreateFunction": "Code",
    "lambda:UpdateFunctionCode": "",
    "lambda:PublishLayerVersion": "Content",
}


def s3_read_access(action: str, body: bytes) -> Access | None:
    """The ``s3:GetObject`` a request with IAM action ``action`` needs to read its code
    from S3, None when it names no S3 location (or one the operation refuses: nothing
    is read then)."""
    member = _CODE_MEMBER.get(action)
    if member is None:
        return None
    try:
        document = json.loads(body)
    except ValueError:
        return None
    code = document.get(member) if member and isinstance(document, dict) else document
    if not isinstance(code, dict):
        return None
    try:
        location = s3_location(code, "")
    except NimbusError:
        return None
    if location is None:
        return None
    return Access("s3:GetObject", f"arn:aws:s3:::{location.bucket}/{location.key}")


def s3_denied(access: Access, refusal: AccessDenied) -> AccessDenied:
    """Lambda's refusal of code the caller may not read from S3."""
    where = access.resource.removeprefix("arn:aws:s3:::")
    return AccessDenied(
        "Your access has been denied by S3, please make sure your request credentials "
        f"have permission to GetObject for {where}. S3 Error Code: AccessDenied. "
        f"S3 Error Message: {refusal.message}"
    )


def store_from_s3(
    s3: S3Store, code: CodeStore, location: S3Location, max_unzipped: int, storage_left: int
) -> StoredCode:
    """Copy the object at ``location`` into the code store, validated (blocking)."""
    try:
        opened = s3.open_object(location.bucket, location.key, location.version_id)
    except AwsError as exc:
        raise InvalidParameterValue(
            f"Error occurred while GetObject. S3 Error Code: {exc.type_name}. "
            f"S3 Error Message: {exc}"
        ) from exc
    with opened:
        size = opened.info.size
        if size > storage_left:
            raise CodeStorageExceeded(
                f"Code storage limit exceeded: the package is {size} bytes and "
                f"{max(storage_left, 0)} bytes are left. Delete unused versions or functions."
            )
        if size > max_unzipped:  # no zip inflates to less than its own size, near enough
            raise InvalidParameterValue(f"Unzipped size must be smaller than {max_unzipped} bytes")
        return code.put_file(opened.file)
