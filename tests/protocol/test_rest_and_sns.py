"""EventBridge Scheduler (rest-json), S3 (rest-xml) and SNS (query) through the protocol
layer, round-tripped through botocore's own serialisers and parsers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from nimbus.protocol.errors import AwsError
from nimbus.protocol.parser import parse
from nimbus.protocol.serializer import serialize_error, serialize_result
from tests.protocol.conftest import client_reads, client_request, load, model_op

SCHEDULER = load("scheduler")
S3 = load("s3")
SNS = load("sns")
WHEN = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
ARN = "arn:aws:scheduler:us-east-1:000000000000:schedule/default/s1"


def test_scheduler_create_schedule_nested_and_timestamps() -> None:
    params = {
        "Name": "s1",
        "GroupName": "default",
        "ScheduleExpression": "rate(5 minutes)",
        "StartDate": WHEN,
        "FlexibleTimeWindow": {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 5},
        "Target": {
            "Arn": "arn:aws:lambda:us-east-1:000000000000:function:f",
            "RoleArn": "arn:aws:iam::000000000000:role/r",
            "Input": '{"a": 1}',
            "RetryPolicy": {"MaximumRetryAttempts": 3},
        },
        "ClientToken": "tok",
    }
    request = client_request(SCHEDULER, "rest-json", "CreateSchedule", params)
    assert request.raw_path == "/schedules/s1"
    parsed = parse(SCHEDULER, "rest-json", request)
    assert parsed.operation.name == "CreateSchedule"
    assert parsed.params == params


def test_scheduler_uri_label_with_an_arn_and_query_members() -> None:
    request = client_request(
        SCHEDULER,
        "rest-json",
        "TagResource",
        {"ResourceArn": ARN, "Tags": [{"Key": "k", "Value": "v"}]},
    )
    assert "%2F" in request.raw_path  # botocore encodes the ARN's "/" inside the label
    assert parse(SCHEDULER, "rest-json", request).params == {
        "ResourceArn": ARN,
        "Tags": [{"Key": "k", "Value": "v"}],
    }
    listing = {"GroupName": "g", "NamePrefix": "s", "State": "ENABLED", "MaxResults": 10}
    request = client_request(SCHEDULER, "rest-json", "ListSchedules", listing)
    assert parse(SCHEDULER, "rest-json", request).params == listing


def test_scheduler_results_and_errors_read_by_botocore() -> None:
    result = {
        "Arn": ARN,
        "Name": "s1",
        "CreationDate": WHEN,
        "LastModificationDate": datetime(2030, 1, 2, 3, 4, 5, 123000, tzinfo=UTC),
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "Target": {"Arn": "a", "RoleArn": "r"},
        "State": "ENABLED",
    }
    op = model_op(SCHEDULER, "rest-json", "GetSchedule")
    parsed = client_reads(
        SCHEDULER,
        "rest-json",
        "GetSchedule",
        serialize_result(SCHEDULER, "rest-json", op, result, "r"),
    )
    parsed.pop("ResponseMetadata")
    assert parsed == result
    answer = serialize_error(
        SCHEDULER,
        "rest-json",
        AwsError("ResourceNotFoundException", "Schedule s1 does not exist."),
        "r",
    )
    assert answer.status == 404  # the model's httpStatusCode, not the exception's 400
    assert answer.headers["X-Amzn-ErrorType"] == "ResourceNotFoundException"
    error = client_reads(SCHEDULER, "rest-json", "GetSchedule", answer)["Error"]
    assert error == {"Code": "ResourceNotFoundException", "Message": "Schedule s1 does not exist."}


def test_scheduler_missing_required_member_is_a_validation_exception() -> None:
    request = client_request(
        SCHEDULER,
        "rest-json",
        "CreateSchedule",
        {
            "Name": "s1",
            "ScheduleExpression": "x",
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "Target": {"Arn": "a", "RoleArn": "r"},
        },
    )
    request.body = b'{"ScheduleExpression": "x", "Target": {"Arn": "a"}}'
    with pytest.raises(AwsError) as raised:
        parse(SCHEDULER, "rest-json", request)
    assert raised.value.type_name == "ValidationException"
    assert raised.value.message.startswith("2 validation errors detected: ")
    assert "Value null at 'target.roleArn'" in raised.value.message
    assert "Value null at 'flexibleTimeWindow'" in raised.value.message


def test_s3_put_object_headers_greedy_key_and_blob_payload() -> None:
    params = {
        "Bucket": "b1",
        "Key": "dir/sub dir/file+1.txt",
        "Body": b"\x00binary\xff",
        "ContentType": "text/plain",
        "Metadata": {"owner": "me"},
        "Expires": WHEN,
    }
    request = client_request(S3, "rest-xml", "PutObject", params)
    parsed = parse(S3, "rest-xml", request)
    assert parsed.operation.name == "PutObject"
    assert parsed.params == params


def test_s3_list_objects_v2_is_told_from_list_objects_by_its_query() -> None:
    request = client_request(
        S3, "rest-xml", "ListObjectsV2", {"Bucket": "b1", "Prefix": "dir/", "MaxKeys": 5}
    )
    parsed = parse(S3, "rest-xml", request)
    assert parsed.operation.name == "ListObjectsV2"
    assert parsed.params == {"Bucket": "b1", "Prefix": "dir/", "MaxKeys": 5}
    assert (
        parse(
            S3, "rest-xml", client_request(S3, "rest-xml", "ListObjects", {"Bucket": "b1"})
        ).operation.name
        == "ListObjects"
    )
    result = {
        "IsTruncated": False,
        "Contents": [
            {
                "Key": "dir/a",
                "LastModified": WHEN,
                "ETag": '"e1"',
                "Size": 3,
                "StorageClass": "STANDARD",
            },
            {
                "Key": "dir/b & <c>",
                "LastModified": WHEN,
                "ETag": '"e2"',
                "Size": 0,
                "StorageClass": "STANDARD",
            },
        ],
        "Name": "b1",
        "Prefix": "dir/",
        "MaxKeys": 5,
        "CommonPrefixes": [{"Prefix": "dir/x/"}],
        "KeyCount": 2,
    }
    op = model_op(S3, "rest-xml", "ListObjectsV2")
    parsed_result = client_reads(
        S3, "rest-xml", "ListObjectsV2", serialize_result(S3, "rest-xml", op, result, "r")
    )
    parsed_result.pop("ResponseMetadata")
    assert parsed_result == result


def test_s3_get_object_result_and_error() -> None:
    result = {
        "Body": b"payload\x00",
        "ContentLength": 8,
        "ContentType": "application/octet-stream",
        "LastModified": WHEN,
        "ETag": '"abc"',
        "Metadata": {"owner": "me"},
    }
    op = model_op(S3, "rest-xml", "GetObject")
    answer = serialize_result(S3, "rest-xml", op, result, "r")
    assert answer.body == b"payload\x00"
    parsed = client_reads(S3, "rest-xml", "GetObject", answer)
    parsed.pop("ResponseMetadata")
    assert parsed.pop("Body") in (result.pop("Body"), "payload\x00")  # the raw stream
    assert parsed == result
    error = serialize_error(
        S3, "rest-xml", AwsError("NoSuchKey", "The specified key does not exist.", status=404), "r"
    )
    assert error.status == 404
    assert client_reads(S3, "rest-xml", "GetObject", error)["Error"]["Code"] == "NoSuchKey"


def test_sns_query_maps_lists_and_results() -> None:
    params = {
        "Name": "t1",
        "Attributes": {"DisplayName": "x", "FifoTopic": "false"},
        "Tags": [{"Key": "k", "Value": "v"}],
    }
    request = client_request(SNS, "query", "CreateTopic", params)
    assert b"Attributes.entry.1.key=DisplayName" in request.body
    assert b"Tags.member.1.Key=k" in request.body
    assert parse(SNS, "query", request).params == params
    publish = {
        "TopicArn": "arn:aws:sns:us-east-1:000000000000:t1",
        "Message": "hi",
        "MessageAttributes": {"n": {"DataType": "Binary", "BinaryValue": b"\x01"}},
    }
    assert parse(SNS, "query", client_request(SNS, "query", "Publish", publish)).params == publish
    op = model_op(SNS, "query", "ListTopics")
    result = {"Topics": [{"TopicArn": "a1"}, {"TopicArn": "a2"}], "NextToken": "n"}
    parsed = client_reads(
        SNS, "query", "ListTopics", serialize_result(SNS, "query", op, result, "rid")
    )
    assert parsed.pop("ResponseMetadata")["RequestId"] == "rid"
    assert parsed == result
    error = serialize_error(
        SNS, "query", AwsError("NotFoundException", "Topic does not exist"), "r"
    )
    assert error.status == 404  # SNS's model: NotFoundException is a 404 with code NotFound
    assert client_reads(SNS, "query", "Publish", error)["Error"] == {
        "Type": "Sender",
        "Code": "NotFound",
        "Message": "Topic does not exist",
    }
