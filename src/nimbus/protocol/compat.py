"""What botocore's JSON model of a query-compatible service lost from its query days.

SQS moved from the query protocol to JSON (botocore 1.31.81) with ``awsQueryCompatible``:
its JSON model no longer carries the XML names (``locationName``) that query clients
(older SDKs, ``Attribute.1.Name=...``) and query XML answers use, nor the error codes
(``AWS.SimpleQueueService.NonExistentQueue``), statuses and fault sides that both the
query answers and the ``x-amzn-query-error`` header of JSON answers carry. This table
restores them, taken from the last query-protocol SQS model botocore shipped
(sqs/2012-11-05/service-2.json of botocore 1.34.x); ``models.py`` applies it to a copy of
the model used for the query protocol only (in JSON those names would be wrong).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class QueryError:
    """An error shape's query-era identity: its code, HTTP status and fault side."""

    code: str
    status: int
    sender: bool = True


@dataclass(frozen=True)
class QueryCompat:
    """The query-protocol facts a JSON model of a query-compatible service lacks."""

    xml_namespace: str
    # shape -> {"": shape-level locationName, "member"|"key"|"value": locationName of that
    # part, ".Member": locationName of a structure member}
    names: dict[str, dict[str, str]]
    errors: dict[str, QueryError]
    # Codes of unmodeled errors whose query-era code differs (JSON name -> query code).
    renamed: dict[str, str]
    # Query clients post to a resource's URL rather than "/" (SQS: the queue URL) and may
    # leave the member that names it out of the body: (path pattern, member to fill).
    resource_path: re.Pattern[str] | None = None
    resource_member: str | None = None


_SQS_PREFIX = "AWS.SimpleQueueService."

SQS = QueryCompat(
    xml_namespace="http://queue.amazonaws.com/doc/2012-11-05/",
    names={
        "AWSAccountIdList": {"member": "AWSAccountId"},
        "ActionNameList": {"member": "ActionName"},
        "AttributeNameList": {"member": "AttributeName"},
        "BatchResultErrorEntryList": {"member": "BatchResultErrorEntry"},
        "BinaryList": {"member": "BinaryListValue"},
        "ChangeMessageVisibilityBatchRequestEntryList": {
            "member": "ChangeMessageVisibilityBatchRequestEntry"
        },
        "ChangeMessageVisibilityBatchResultEntryList": {
            "member": "ChangeMessageVisibilityBatchResultEntry"
        },
        "CreateQueueRequest": {".Attributes": "Attribute", ".tags": "Tag"},
        "DeleteMessageBatchRequestEntryList": {"member": "DeleteMessageBatchRequestEntry"},
        "DeleteMessageBatchResultEntryList": {"member": "DeleteMessageBatchResultEntry"},
        "GetQueueAttributesResult": {".Attributes": "Attribute"},
        "ListMessageMoveTasksResultEntryList": {"member": "ListMessageMoveTasksResultEntry"},
        "ListQueueTagsResult": {".Tags": "Tag"},
        "Message": {".Attributes": "Attribute", ".MessageAttributes": "MessageAttribute"},
        "MessageAttributeNameList": {"member": "MessageAttributeName"},
        "MessageAttributeValue": {
            ".StringListValues": "StringListValue",
            ".BinaryListValues": "BinaryListValue",
        },
        "MessageBodyAttributeMap": {"key": "Name", "value": "Value"},
        "MessageBodySystemAttributeMap": {"key": "Name", "value": "Value"},
        "MessageList": {"member": "Message"},
        "MessageSystemAttributeMap": {"": "Attribute", "key": "Name", "value": "Value"},
        "MessageSystemAttributeValue": {
            ".StringListValues": "StringListValue",
            ".BinaryListValues": "BinaryListValue",
        },
        "QueueAttributeMap": {"": "Attribute", "key": "Name", "value": "Value"},
        "QueueUrlList": {"member": "QueueUrl"},
        "SendMessageBatchRequestEntry": {
            ".MessageAttributes": "MessageAttribute",
            ".MessageSystemAttributes": "MessageSystemAttribute",
        },
        "SendMessageBatchRequestEntryList": {"member": "SendMessageBatchRequestEntry"},
        "SendMessageBatchResultEntryList": {"member": "SendMessageBatchResultEntry"},
        "SendMessageRequest": {
            ".MessageAttributes": "MessageAttribute",
            ".MessageSystemAttributes": "MessageSystemAttribute",
        },
        "SetQueueAttributesRequest": {".Attributes": "Attribute"},
        "StringList": {"member": "StringListValue"},
        "TagKeyList": {"member": "TagKey"},
        "TagMap": {"": "Tag", "key": "Key", "value": "Value"},
    },
    errors={
        **{
            name: QueryError(_SQS_PREFIX + name, 400)
            for name in (
                "BatchEntryIdsNotDistinct",
                "BatchRequestTooLong",
                "EmptyBatchRequest",
                "InvalidBatchEntryId",
                "MessageNotInflight",
                "QueueDeletedRecently",
                "TooManyEntriesInBatchRequest",
                "UnsupportedOperation",
            )
        },
        "PurgeQueueInProgress": QueryError(_SQS_PREFIX + "PurgeQueueInProgress", 403),
        "QueueDoesNotExist": QueryError(_SQS_PREFIX + "NonExistentQueue", 400),
        "QueueNameExists": QueryError("QueueAlreadyExists", 400),
        "OverLimit": QueryError("OverLimit", 403),
        "ResourceNotFoundException": QueryError("ResourceNotFoundException", 404),
    },
    renamed={
        "InvalidParameterValueException": "InvalidParameterValue",
        "MissingRequiredParameterException": "MissingParameter",
        "AccessDeniedException": "AccessDenied",
    },
    resource_path=re.compile(r"/\d{12}/[^/]+"),
    resource_member="QueueUrl",
)

BY_SERVICE: dict[str, QueryCompat] = {"sqs": SQS}
