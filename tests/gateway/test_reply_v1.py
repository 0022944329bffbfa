"""reply_from_result_v1: a payload format 1.0 integration's result as the HTTP response."""

from __future__ import annotations

import base64
import json

import pytest

from nimbus.gateway.reply import (
    HTTP_API_CONTENT_TYPE,
    InvalidFunctionResponse,
    reply_from_result_v1,
)


def v1(result: object) -> bytes:
    return json.dumps(result).encode()


def test_sam_hello_world_response() -> None:
    reply = reply_from_result_v1(
        v1({"statusCode": 200, "body": json.dumps({"message": "hello world"})})
    )
    assert reply.status == 200
    assert json.loads(reply.body) == {"message": "hello world"}
    assert reply.headers == [("content-type", HTTP_API_CONTENT_TYPE)]


def test_headers_and_multi_value_headers_merge_a_pair_in_both_sent_once() -> None:
    reply = reply_from_result_v1(
        v1({
            "statusCode": "201",
            "headers": {"Content-Type": "application/json", "X-One": "a", "X-Both": "same"},
            "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"], "x-both": ["same", "other"]},
            "body": "{}",
        })
    )  # fmt: skip
    assert reply.status == 201
    assert reply.headers == [
        ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("x-both", "same"), ("x-both", "other"),
        ("Content-Type", "application/json"), ("X-One", "a"),
    ]  # fmt: skip


def test_base64_body_and_no_body() -> None:
    png = b"\x89PNG\r\n"
    reply = reply_from_result_v1(
        v1({"statusCode": 200, "isBase64Encoded": True,
            "body": base64.b64encode(png).decode(), "headers": {"content-type": "image/png"}})
    )  # fmt: skip
    assert reply.body == png
    assert reply_from_result_v1(v1({"statusCode": 204})).body == b""


@pytest.mark.parametrize(
    ("result", "words"),
    [
        ({"message": "hello"}, "without statusCode"),  # fine in 2.0, malformed in 1.0
        (["a"], "a list without statusCode"),
        ("hello", "a string without statusCode"),
        ({"statusCode": 200, "multiValueHeaders": {"a": "b"}}, "must be a list"),
        ({"statusCode": 200, "multiValueHeaders": ["a"]}, "multiValueHeaders must be an object"),
        ({"statusCode": 200, "headers": {"a": ["b"]}}, "multiValueHeaders"),
        ({"statusCode": 200, "body": {"a": 1}}, "body must be a string"),
        ({"statusCode": 99}, "not a final HTTP status"),
    ],
)
def test_malformed_responses_raise_with_what_to_fix(result: object, words: str) -> None:
    with pytest.raises(InvalidFunctionResponse, match=words):
        reply_from_result_v1(v1(result))


def test_not_json_is_malformed() -> None:
    with pytest.raises(InvalidFunctionResponse, match="not valid JSON"):
        reply_from_result_v1(b"{nope")
