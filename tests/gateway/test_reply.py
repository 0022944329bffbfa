"""reply_from_result and the gateway's own replies."""

from __future__ import annotations

import base64
import json

import pytest

from nimbus.gateway.reply import (
    HTTP_API_CONTENT_TYPE,
    HttpReply,
    InvalidFunctionResponse,
    forbidden_reply,
    function_error_reply,
    invalid_response_reply,
    not_found_reply,
    plain_reply,
    reply_from_result,
    throttled_reply,
)


def result(value: object) -> bytes:
    return json.dumps(value).encode()


def test_custom_response() -> None:
    reply = reply_from_result(
        result(
            {
                "statusCode": 201,
                "headers": {"Content-Type": "text/html", "My-Custom-Header": "Custom Value"},
                "body": "<p>hi</p>",
                "isBase64Encoded": False,
            }
        )
    )
    assert reply.status == 201
    assert reply.headers == [("Content-Type", "text/html"), ("My-Custom-Header", "Custom Value")]
    assert reply.body == b"<p>hi</p>"


def test_status_without_content_type_gets_the_default() -> None:
    reply = reply_from_result(result({"statusCode": 200, "body": "body123"}))
    assert reply.header("content-type") == "application/json"
    assert reply.body == b"body123"
    api = reply_from_result(
        result({"statusCode": 200, "body": "x"}), default_content_type=HTTP_API_CONTENT_TYPE
    )
    assert api.header("content-type") == "text/plain; charset=utf-8"


def test_header_values_are_stringified_and_null_drops_the_header() -> None:
    reply = reply_from_result(
        result(
            {
                "statusCode": "404",
                "headers": {"X-Count": 3, "X-Ratio": 0.5, "X-On": True, "Content-Type": None},
            }
        )
    )
    assert reply.status == 404
    assert reply.headers == [
        ("X-Count", "3"),
        ("X-Ratio", "0.5"),
        ("X-On", "true"),
        ("content-type", "application/json"),
    ]
    assert reply.body == b""


def test_framing_headers_from_the_function_are_dropped() -> None:
    reply = reply_from_result(
        result({"statusCode": 200, "headers": {"Content-Length": "999"}, "body": "ab"})
    )
    assert reply.header("content-length") is None


def test_cookies_become_repeated_set_cookie_headers() -> None:
    reply = reply_from_result(
        result(
            {
                "statusCode": 201,
                "headers": {"Content-Type": "application/json"},
                "body": "{}",
                "cookies": [
                    "Cookie_1=Value1; Expires=21 Oct 2021 07:48 GMT",
                    "Cookie_2=Value2; Max-Age=78000",
                ],
            }
        )
    )
    assert [v for k, v in reply.headers if k == "set-cookie"] == [
        "Cookie_1=Value1; Expires=21 Oct 2021 07:48 GMT",
        "Cookie_2=Value2; Max-Age=78000",
    ]


def test_base64_body_is_decoded() -> None:
    data = bytes(range(256))
    reply = reply_from_result(
        result(
            {
                "statusCode": 200,
                "headers": {"content-type": "image/png"},
                "body": base64.b64encode(data).decode(),
                "isBase64Encoded": True,
            }
        )
    )
    assert reply.body == data
    assert reply.headers == [("content-type", "image/png")]


def test_unicode_body_is_utf8() -> None:
    assert reply_from_result(result({"statusCode": 200, "body": "é✓"})).body == "é✓".encode()


@pytest.mark.parametrize(
    "payload",
    [
        b'{"message": "Hello, world!"}',
        b'"Hello, world!"',
        b'["hello", 3, true]',
        b"3",
        b"3.1",
        b"true",
        b"null",
        b'{"body": "no status code here"}',
    ],
)
def test_any_other_json_is_the_body_as_is(payload: bytes) -> None:
    reply = reply_from_result(payload)
    assert reply.status == 200
    assert reply.headers == [("content-type", "application/json")]
    assert reply.body == payload


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (b"not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (result({"statusCode": 99}), "statusCode 99"),
        (result({"statusCode": 600}), "statusCode 600"),
        (result({"statusCode": "abc"}), "statusCode"),
        (result({"statusCode": True}), "statusCode true"),
        (result({"statusCode": None}), "statusCode null"),
        (result({"statusCode": 200, "body": {"a": 1}}), "body must be a string, not an object"),
        (result({"statusCode": 200, "body": 5}), "body must be a string, not a number"),
        (result({"statusCode": 200, "body": "!!", "isBase64Encoded": True}), "not valid base64"),
        (result({"statusCode": 200, "isBase64Encoded": "yes"}), "isBase64Encoded"),
        (result({"statusCode": 200, "headers": ["a"]}), "headers must be an object"),
        (result({"statusCode": 200, "headers": {"X": ["a", "b"]}}), "header 'X'"),
        (result({"statusCode": 200, "headers": {"X": "a\r\nInjected: 1"}}), "line break"),
        (result({"statusCode": 200, "headers": {"X": "a\x01b"}}), "control character"),
        (result({"statusCode": 200, "headers": {"bad name": "x"}}), "not an HTTP token"),
        (result({"statusCode": 200, "headers": {"": "x"}}), "not an HTTP token"),
        (result({"statusCode": 200, "cookies": ["a=1\x7f"]}), "control character"),
        (result({"statusCode": 200, "cookies": "a=1"}), "cookies must be a list"),
        (result({"statusCode": 200, "cookies": [1]}), "cookies must be a list"),
    ],
)
def test_unmappable_results_raise_with_a_clear_message(payload: bytes, words: str) -> None:
    with pytest.raises(InvalidFunctionResponse, match=words.replace("(", r"\(")):
        reply_from_result(payload)


def error_body(reply: HttpReply) -> dict[str, object]:
    assert reply.header("content-type") == "application/json"
    return json.loads(reply.body)


def test_function_errors() -> None:
    url = function_error_reply(function_url=True)
    assert url.status == 502
    assert error_body(url) == {"message": "Internal Server Error"}
    assert url.header("x-amzn-ErrorType") == "InternalServerErrorException"
    api = function_error_reply(function_url=False)
    assert api.status == 500
    assert error_body(api) == {"message": "Internal Server Error"}
    assert invalid_response_reply(function_url=True).status == 502
    assert invalid_response_reply(function_url=False).status == 500


def test_gateway_refusals() -> None:
    throttled = throttled_reply(retry_after=2)
    assert throttled.status == 429
    assert error_body(throttled) == {"message": "Too Many Requests"}
    assert throttled.header("x-amzn-ErrorType") == "TooManyRequestsException"
    assert throttled.header("retry-after") == "2"
    assert throttled_reply().header("retry-after") is None

    forbidden = forbidden_reply()
    assert (forbidden.status, error_body(forbidden)) == (403, {"message": "Forbidden"})
    assert forbidden.header("x-amzn-ErrorType") == "ForbiddenException"
    assert forbidden_reply(function_url=True).header("x-amzn-ErrorType") == (
        "AccessDeniedException"
    )

    missing = not_found_reply()
    assert (missing.status, error_body(missing)) == (404, {"message": "Not Found"})
    assert missing.header("x-amzn-ErrorType") == "NotFoundException"

    big = plain_reply(413, "Request Entity Too Large", "RequestTooLarge")
    assert big.status == 413
    assert error_body(big) == {"message": "Request Entity Too Large"}
