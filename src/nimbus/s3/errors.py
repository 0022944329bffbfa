"""S3's errors, as ``AwsError`` by their S3 code, status and extra members (the
``<Error>`` document's ``BucketName``, ``Key``, ``UploadId``... as S3 sends them)."""

from __future__ import annotations

from nimbus.protocol.errors import AwsError


def no_such_bucket(bucket: str) -> AwsError:
    return AwsError(
        "NoSuchBucket", "The specified bucket does not exist", status=404, BucketName=bucket
    )


def no_such_key(key: str) -> AwsError:
    return AwsError("NoSuchKey", "The specified key does not exist.", status=404, Key=key)


def no_such_upload(upload_id: str) -> AwsError:
    return AwsError(
        "NoSuchUpload",
        "The specified upload does not exist. The upload ID may be invalid, or the upload "
        "may have been aborted or completed.",
        status=404,
        UploadId=upload_id,
    )


def bucket_exists(bucket: str) -> AwsError:
    return AwsError(
        "BucketAlreadyOwnedByYou",
        "Your previous request to create the named bucket succeeded and you already own it.",
        status=409,
        BucketName=bucket,
    )


def bucket_not_empty(bucket: str) -> AwsError:
    return AwsError(
        "BucketNotEmpty",
        "The bucket you tried to delete is not empty. You must delete all versions in the bucket.",
        status=409,
        BucketName=bucket,
    )


def invalid_bucket_name(bucket: str, why: str) -> AwsError:
    return AwsError(
        "InvalidBucketName",
        f"The specified bucket is not valid: {why}",
        status=400,
        BucketName=bucket,
    )


def precondition_failed(condition: str) -> AwsError:
    return AwsError(
        "PreconditionFailed",
        "At least one of the pre-conditions you specified did not hold",
        status=412,
        Condition=condition,
    )


def invalid_argument(message: str, name: str | None = None, value: str | None = None) -> AwsError:
    return AwsError("InvalidArgument", message, status=400, ArgumentName=name, ArgumentValue=value)


def invalid_request(message: str) -> AwsError:
    return AwsError("InvalidRequest", message, status=400)


def not_implemented(what: str, header: str | None = None) -> AwsError:
    """A feature of S3 nimbus does not have: refused, never silently ignored."""
    return AwsError(
        "NotImplemented",
        f"A header or parameter you provided implies functionality that nimbus does not "
        f"implement: {what}",
        status=501,
        Header=header,
    )


def invalid_version(version_id: str) -> AwsError:
    return invalid_argument("Invalid version id specified", "versionId", version_id)


def bad_digest(what: str) -> AwsError:
    return AwsError("BadDigest", f"The {what} you specified did not match the calculated checksum.")


def entity_too_large(size: int, limit: int) -> AwsError:
    return AwsError(
        "EntityTooLarge",
        "Your proposed upload exceeds the maximum allowed size",
        status=400,
        ProposedSize=str(size),
        MaxSizeAllowed=str(limit),
    )
