"""Which registered service a request is for (``Router.claim``/``resolve``)."""

from __future__ import annotations

from nimbus.protocol.messages import HttpRequest
from nimbus.protocol.router import Router
from nimbus.protocol.service import AwsService

SQS = AwsService("sqs")
SCHEDULER = AwsService("scheduler")
ROUTER = Router([SQS, SCHEDULER])
SIGNED = (
    "AWS4-HMAC-SHA256 Credential=AK/20240101/us-east-1/{}/aws4_request, "
    "SignedHeaders=host, Signature=x"
)
FORM = {"content-type": "application/x-www-form-urlencoded; charset=utf-8"}


def test_target_header_names_a_json_service() -> None:
    found = ROUTER.claim("POST", "/", {"x-amz-target": "AmazonSQS.SendMessage"}, "")
    assert found is not None and found.service is SQS and found.protocol == "json"
    assert ROUTER.claim("POST", "/", {"x-amz-target": "DynamoDB_20120810.GetItem"}, "") is None


def test_credential_scope_names_the_service() -> None:
    found = ROUTER.claim(
        "POST", "/000000000000/q1", {"authorization": SIGNED.format("sqs"), **FORM}, ""
    )
    assert found is not None and found.service is SQS and found.protocol == "query"
    rest = ROUTER.claim("GET", "/schedules/s1", {"authorization": SIGNED.format("scheduler")}, "")
    assert rest is not None and rest.service is SCHEDULER and rest.protocol == "rest-json"
    # Lambda's own paths and services nimbus does not speak are not claimed.
    assert (
        ROUTER.claim("GET", "/2015-03-31/functions", {"authorization": SIGNED.format("lambda")}, "")
        is None
    )
    assert ROUTER.claim("POST", "/", {"authorization": SIGNED.format("sns"), **FORM}, "") is None
    assert (
        ROUTER.claim("POST", "/a/b/c", {"authorization": SIGNED.format("sqs"), **FORM}, "") is None
    )


def test_unsigned_query_request_is_resolved_by_its_action() -> None:
    found = ROUTER.claim("POST", "/", FORM, "")
    assert found is not None and found.service is None
    body = b"Action=GetQueueUrl&QueueName=q"
    resolved = ROUTER.resolve(found, HttpRequest("POST", "/", "", FORM, body))
    assert resolved is not None and resolved[0] is SQS
    assert ROUTER.resolve(found, HttpRequest("POST", "/", "", FORM, b"Action=Invoke")) is None
    assert ROUTER.claim("GET", "/", {}, "Action=ListQueues") is not None
    assert ROUTER.claim("POST", "/", {"content-type": "application/json"}, "") is None


def test_unsigned_rest_request_matches_the_request_uri_templates() -> None:
    found = ROUTER.claim(
        "DELETE", "/tags/arn%3Aaws%3Ascheduler%3Aus-east-1%3A0%3Aschedule%2Fg%2Fs", {}, "TagKeys=a"
    )
    assert found is not None and found.service is SCHEDULER
    assert ROUTER.claim("PATCH", "/schedules/s1", {}, "") is None
    assert not Router([]) and Router([]).claim("POST", "/", FORM, "") is None
