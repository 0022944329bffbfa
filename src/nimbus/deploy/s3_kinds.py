"""S3 buckets (``AWS::S3::Bucket``) with their ``NotificationConfiguration``, deployed with
boto3's ``s3`` client against nimbus' own buckets. SAM's ``S3`` event on a function
expands into the bucket's ``LambdaConfigurations`` entry and a permission, deployed as any
other.

CloudFormation's notification shape (``LambdaConfigurations[].Function``, ``Event``,
``Filter.S3Key.Rules``) is turned into S3's (``LambdaFunctionConfigurations[]
.LambdaFunctionArn``, ``Events``, ``Filter.Key.FilterRules``); ``QueueConfigurations``
and ``TopicConfigurations`` (SNS topics of this nimbus) likewise. A bucket that still
holds objects when the stack deletes it is kept (CloudFormation's delete would fail on
it), with a note saying how to remove it."""

from __future__ import annotations

from typing import Any

from nimbus.deploy.kinds import Context, Kept, Kind, Made, register

# CloudFormation's configuration list -> (S3's list, S3's ARN member, CloudFormation's member)
_CONFIGURATIONS = {
    "LambdaConfigurations": ("LambdaFunctionConfigurations", "LambdaFunctionArn", "Function"),
    "QueueConfigurations": ("QueueConfigurations", "QueueArn", "Queue"),
    "TopicConfigurations": ("TopicConfigurations", "TopicArn", "Topic"),
}
_NOTIFICATION_KEYS = frozenset(_CONFIGURATIONS)
_ITEM_KEYS = {"Event", "Filter"}


def _s3(ctx: Context) -> Any:
    return ctx.client("s3")


def _problems(props: dict[str, Any]) -> list[tuple[str | None, str]]:
    notification = props.get("NotificationConfiguration")
    if notification is None:
        return []
    if not isinstance(notification, dict):
        return [("NotificationConfiguration", "must be a mapping")]
    problems: list[tuple[str | None, str]] = []
    for key, items in notification.items():
        where = f"NotificationConfiguration.{key}"
        if key not in _NOTIFICATION_KEYS:
            problems.append((where, f"{where} is not supported (supported: "
                             f"{', '.join(sorted(_NOTIFICATION_KEYS))})"))  # fmt: skip
            continue
        if not isinstance(items, list):
            problems.append((where, f"{where} must be a list"))
            continue
        arn_key = _CONFIGURATIONS[key][2]
        for index, item in enumerate(items):
            if not isinstance(item, dict) or not {"Event", arn_key} <= set(item):
                problems.append((where, f"{where}[{index}] needs Event and {arn_key}"))
                continue
            extra = set(item) - _ITEM_KEYS - {arn_key}
            if extra:
                problems.append((where, f"{where}[{index}]: "
                                 f"{', '.join(sorted(extra))} not supported"))  # fmt: skip
            rules = item.get("Filter") or {}
            if not isinstance(rules, dict) or set(rules) - {"S3Key"}:
                problems.append((where, f"{where}[{index}].Filter: only S3Key rules are supported"))
    # The line of NotificationConfiguration: CloudFormation's nested paths have none of their own.
    return [("NotificationConfiguration", message) for _, message in problems]


def s3_notification(notification: dict[str, Any] | None) -> dict[str, Any]:
    """CloudFormation's NotificationConfiguration as S3's PutBucketNotificationConfiguration
    takes it (resolved: ARNs are strings here)."""
    out: dict[str, Any] = {}
    for key, items in (notification or {}).items():
        s3_list, s3_arn, cfn_arn = _CONFIGURATIONS[key]
        converted = []
        for item in items:
            entry: dict[str, Any] = {s3_arn: item[cfn_arn], "Events": [item["Event"]]}
            rules = ((item.get("Filter") or {}).get("S3Key") or {}).get("Rules")
            if rules:
                entry["Filter"] = {"Key": {"FilterRules": [
                    {"Name": str(r["Name"]), "Value": str(r["Value"])} for r in rules
                ]}}  # fmt: skip
            converted.append(entry)
        out.setdefault(s3_list, []).extend(converted)
    return out


def _attributes(ctx: Context, name: str) -> dict[str, Any]:
    host = f"{name}.s3.{ctx.region}.amazonaws.com"
    return {
        "Arn": f"arn:aws:s3:::{name}",
        "BucketName": name,
        "DomainName": f"{name}.s3.amazonaws.com",
        "RegionalDomainName": host,
    }


@register
class Bucket(Kind):
    type_name = "AWS::S3::Bucket"
    properties = frozenset({"BucketName", "NotificationConfiguration"})
    replace_on = frozenset({"BucketName"})

    def check(self, props: dict[str, Any]) -> list[tuple[str | None, str]]:
        return _problems(props)

    def _name(self, ctx: Context, logical_id: str, props: dict[str, Any]) -> str:
        if props.get("BucketName"):
            return str(props["BucketName"])
        # Bucket names are lower case, 3-63 characters: CloudFormation lowers the stack's.
        return ctx.name(logical_id, 63).lower().replace("_", "-")

    def create(self, ctx: Context, logical_id: str, props: dict[str, Any]) -> Made:
        s3 = _s3(ctx)
        name = self._name(ctx, logical_id, props)
        s3.create_bucket(Bucket=name)
        self._notify(ctx, name, props)
        return Made(name, _attributes(ctx, name))

    def _notify(self, ctx: Context, name: str, props: dict[str, Any]) -> None:
        configuration = s3_notification(props.get("NotificationConfiguration"))
        _s3(ctx).put_bucket_notification_configuration(
            Bucket=name, NotificationConfiguration=configuration
        )

    def update(
        self, ctx: Context, logical_id: str, made: Made, props: dict[str, Any],
        old: dict[str, Any],
    ) -> Made:  # fmt: skip
        if props.get("NotificationConfiguration") != old.get("NotificationConfiguration"):
            self._notify(ctx, made.physical_id, props)
        return made

    def delete(self, ctx: Context, made: Made) -> None:
        from botocore.exceptions import ClientError

        try:
            _s3(ctx).delete_bucket(Bucket=made.physical_id)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "NoSuchBucket":
                return
            if code != "BucketNotEmpty":
                raise
            raise Kept(f"bucket {made.physical_id} still holds objects: kept (empty it and "
                       f"remove it with `aws s3 rb s3://{made.physical_id} --force`)") from exc
