"""S3 bucket operations: Create/Delete/Head/List buckets, GetBucketLocation,
GetBucketVersioning (never enabled here), and the notification configuration."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from nimbus.api.s3_call import Handler, S3Call
from nimbus.api.s3_wire import Reply, spec, timestamp
from nimbus.config import FUNCTION_ARN
from nimbus.errors import ResourceNotFound
from nimbus.protocol.errors import AwsError
from nimbus.s3 import notifications
from nimbus.s3.errors import invalid_argument, not_implemented
from nimbus.sns.notifications import Publication
from nimbus.threads import blocking

_PRIVATE_ACLS = ("private", "bucket-owner-full-control")


async def create_bucket(call: S3Call) -> Reply:
    params = call.params
    acl = params.get("ACL")
    if acl is not None and acl not in _PRIVATE_ACLS:
        raise not_implemented(f"ACL '{acl}' (nimbus has one owner and no ACLs)", "x-amz-acl")
    if params.get("ObjectLockEnabledForBucket"):
        raise not_implemented("object lock", "x-amz-bucket-object-lock-enabled")
    constraint = (params.get("CreateBucketConfiguration") or {}).get("LocationConstraint")
    region = call.region
    if region == "us-east-1":
        if constraint is not None and constraint != "":
            raise AwsError(
                "InvalidLocationConstraint",
                f"The specified location-constraint is not valid: in us-east-1, create a "
                f"bucket without one (not '{constraint}').",
                LocationConstraint=constraint,
            )
    elif constraint != region:
        if constraint is None:
            raise AwsError(
                "IllegalLocationConstraintException",
                "The unspecified location constraint is incompatible for the region specific "
                f"endpoint this request was sent to: name LocationConstraint '{region}'.",
            )
        raise AwsError(
            "IllegalLocationConstraintException",
            f"The {constraint} location constraint is incompatible for the region specific "
            f"endpoint this request was sent to ({region}).",
        )
    await blocking(call.store.buckets.create, call.bucket, region)
    return call.reply({"Location": f"/{call.bucket}"})


async def delete_bucket(call: S3Call) -> Reply:
    await blocking(call.store.buckets.delete, call.bucket)
    return call.reply()


async def head_bucket(call: S3Call) -> Reply:
    info = await blocking(call.store.buckets.get, call.bucket)
    return call.reply({"BucketRegion": info.region, "AccessPointAlias": False})


async def list_buckets(call: S3Call) -> Reply:
    params = call.params
    prefix = params.get("Prefix") or ""
    limit = params.get("MaxBuckets")
    if limit is not None and not 1 <= limit <= 10000:
        raise invalid_argument("MaxBuckets must be from 1 to 10000", "max-buckets", str(limit))
    after = params.get("ContinuationToken")
    found = await blocking(call.store.buckets.list, prefix)
    if after:
        found = [b for b in found if b.name > after]
    token = None
    if limit is not None and len(found) > limit:
        found = found[:limit]
        token = found[-1].name
    output: dict[str, Any] = {
        "Buckets": [
            {"Name": b.name, "CreationDate": timestamp(b.created_ms), "BucketRegion": b.region}
            for b in found
        ],
        "Owner": call.owner(),
    }
    if prefix:
        output["Prefix"] = prefix
    if token:
        output["ContinuationToken"] = token
    return call.reply(output)


async def get_bucket_location(call: S3Call) -> Reply:
    info = await blocking(call.store.buckets.get, call.bucket)
    # botocore reads this answer's root element's text (no output wrapper): written here.
    namespace = spec().model.metadata.get("xmlNamespace", "http://s3.amazonaws.com/doc/2006-03-01/")
    inner = "" if info.region == "us-east-1" else info.region
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>'
        f'<LocationConstraint xmlns="{namespace}">{inner}</LocationConstraint>'
    ).encode()
    return Reply(200, {"Content-Type": "application/xml"}, body)


async def get_bucket_versioning(call: S3Call) -> Reply:
    await blocking(call.store.buckets.get, call.bucket)
    return call.reply({})  # never enabled: no Status, as S3 answers for such a bucket


async def put_bucket_versioning(call: S3Call) -> Reply:
    raise not_implemented("bucket versioning")


async def get_notification(call: S3Call) -> Reply:
    stored = await blocking(call.store.buckets.notification, call.bucket)
    return call.reply(stored)


async def put_notification(call: S3Call) -> Reply:
    await blocking(call.store.buckets.get, call.bucket)
    configuration = notifications.normalise(call.params.get("NotificationConfiguration") or {})
    if not call.params.get("SkipDestinationValidation"):
        await _check_destinations(call, configuration)
    await blocking(call.store.buckets.set_notification, call.bucket, configuration)
    if not call.params.get("SkipDestinationValidation"):
        await _test_events(call, configuration)
    return call.reply()


async def _test_events(call: S3Call, configuration: dict[str, Any]) -> None:
    """S3's ``s3:TestEvent``, sent to each queue and topic a configuration names (as S3
    does when it validates one), so a consumer sees the destination is wired."""
    sqs = call.services.engine.sqs
    moment = datetime.now(UTC)
    body = json.dumps(
        {
            "Service": "Amazon S3",
            "Event": "s3:TestEvent",
            "Time": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
            "Bucket": call.bucket,
            "RequestId": call.request_id,
            "HostId": call.request_id,
        },
        separators=(",", ":"),
    )
    for kind, arn in notifications.destinations(configuration):
        if kind == notifications.TOPIC:  # published as S3 publishes its events
            await call.services.engine.sns.publish(
                arn, [Publication(body, subject=notifications.SNS_SUBJECT)]
            )
            continue
        name = sqs.name_of_arn(arn) if kind == notifications.QUEUE else None
        if name is not None:
            await sqs.send(name, body)


async def _check_destinations(call: S3Call, configuration: dict[str, Any]) -> None:
    """Every function and queue named must exist here; S3's answer lists those that do
    not (``ArgumentName<n>`` / ``ArgumentValue<n>``)."""
    services = call.services
    config = services.config
    missing: list[tuple[str, str]] = []
    for kind, arn in notifications.destinations(configuration):
        if kind == notifications.TOPIC:
            try:
                found = await services.engine.sns.exists(arn)
            except AwsError as exc:  # not an ARN of this nimbus' topics
                raise invalid_argument("The ARN could not be parsed", "Topic", arn) from exc
            if not found:
                missing.append((arn, "The destination topic does not exist"))
            continue
        if kind == notifications.QUEUE:
            name = services.engine.sqs.name_of_arn(arn)
            if name is None:
                raise invalid_argument("The ARN could not be parsed", "Queue", arn)
            if name.endswith(".fifo"):
                raise invalid_argument("S3 notifications cannot go to a FIFO queue.", "Queue", arn)
            if not await services.engine.sqs.exists(name):
                missing.append((arn, "The destination queue does not exist"))
            continue
        match = FUNCTION_ARN.fullmatch(arn)
        if match is None:
            raise invalid_argument("The ARN could not be parsed", "CloudFunction", arn)
        if match["region"] != config.region or match["account"] != config.account_id:
            missing.append((f"{arn}, null", f"Not authorized to invoke function [{arn}]"))
            continue
        try:
            await services.engine.invoker.targets.resolve(match["name"], match["qualifier"])
        except ResourceNotFound:
            missing.append((f"{arn}, null", f"Not authorized to invoke function [{arn}]"))
    if missing:
        refused = AwsError(
            "InvalidArgument", "Unable to validate the following destination configurations"
        )
        for number, (name, value) in enumerate(missing, start=1):
            refused.extra[f"ArgumentName{number}"] = name
            refused.extra[f"ArgumentValue{number}"] = value
        raise refused


BUCKET_HANDLERS: dict[str, Handler] = {
    "CreateBucket": create_bucket,
    "DeleteBucket": delete_bucket,
    "HeadBucket": head_bucket,
    "ListBuckets": list_buckets,
    "GetBucketLocation": get_bucket_location,
    "GetBucketVersioning": get_bucket_versioning,
    "PutBucketVersioning": put_bucket_versioning,
    "GetBucketNotificationConfiguration": get_notification,
    "PutBucketNotificationConfiguration": put_notification,
}
