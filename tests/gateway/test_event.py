"""build_event: the payload format 2.0 event a handler sees for an HTTP request."""

from __future__ import annotations

import base64

from nimbus.gateway.event import (
    HttpRequest,
    Trigger,
    build_event,
    encode_body,
    format_time,
    is_text,
    query_parameters,
)

URL = Trigger(
    api_id="abcdefghij0123456789abcdefghij01",
    domain_name="abcdefghij0123456789abcdefghij01.lambda-url.us-east-1.on.aws",
    account_id="anonymous",
)


def request(**overrides: object) -> HttpRequest:
    fields: dict[str, object] = {
        "method": "GET",
        "raw_path": "/my/path",
        "raw_query": "",
        "headers": [("Host", "localhost:9000"), ("User-Agent", "curl/8.0")],
        "body": b"",
        "source_ip": "203.0.113.7",
        "request_id": "11111111-2222-4333-8444-555555555555",
        "time_epoch_ms": 1583348638390,
    }
    fields.update(overrides)
    return HttpRequest(**fields)


def test_minimal_get_has_exactly_the_documented_fields() -> None:
    event = build_event(request(server_port=9000), URL)
    assert event == {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/my/path",
        "rawQueryString": "",
        "headers": {
            "host": "localhost:9000",
            "user-agent": "curl/8.0",
            "x-forwarded-for": "203.0.113.7",
            "x-forwarded-proto": "http",
            "x-forwarded-port": "9000",
        },
        "requestContext": {
            "accountId": "anonymous",
            "apiId": URL.api_id,
            "domainName": URL.domain_name,
            "domainPrefix": URL.api_id,
            "http": {
                "method": "GET",
                "path": "/my/path",
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "curl/8.0",
            },
            "requestId": "11111111-2222-4333-8444-555555555555",
            "routeKey": "$default",
            "stage": "$default",
            "time": "04/Mar/2020:19:03:58 +0000",
            "timeEpoch": 1583348638390,
        },
        "isBase64Encoded": False,
    }
    # the documented key order, for handlers that print the event
    assert list(event) == [
        "version",
        "routeKey",
        "rawPath",
        "rawQueryString",
        "headers",
        "requestContext",
        "isBase64Encoded",
    ]


def test_cookies_split_out_of_headers() -> None:
    event = build_event(
        request(headers=[("Cookie", "a=1; b=2"), ("cookie", "c=3"), ("Accept", "*/*")]), URL
    )
    assert event["cookies"] == ["a=1", "b=2", "c=3"]
    assert "cookie" not in event["headers"]
    assert event["headers"]["accept"] == "*/*"
    assert list(event).index("cookies") == list(event).index("headers") - 1


def test_no_cookie_header_means_no_cookies_field() -> None:
    assert "cookies" not in build_event(request(), URL)


def test_repeated_headers_joined_with_comma_names_lowercased() -> None:
    event = build_event(
        request(headers=[("X-Thing", "one"), ("x-thing", "two"), ("X-THING", "three")]), URL
    )
    assert event["headers"]["x-thing"] == "one,two,three"
    assert event["requestContext"]["http"]["userAgent"] == ""


def test_client_forwarded_for_is_extended_and_gateway_headers_replaced() -> None:
    event = build_event(
        request(
            headers=[
                ("X-Forwarded-For", "198.51.100.1"),
                ("X-Forwarded-Proto", "gopher"),
                ("X-Amzn-Trace-Id", "forged"),
            ],
            scheme="https",
            trace_id="Root=1-5e5f1c3e-abc;Sampled=0",
        ),
        URL,
    )
    headers = event["headers"]
    assert headers["x-forwarded-for"] == "198.51.100.1, 203.0.113.7"
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-amzn-trace-id"] == "Root=1-5e5f1c3e-abc;Sampled=0"
    assert "x-forwarded-port" not in headers


def test_utf8_header_bytes_decoded_by_asgi_as_latin1_are_shown_as_utf8() -> None:
    value = "café".encode().decode("latin-1")
    event = build_event(request(headers=[("X-Name", value)]), URL)
    assert event["headers"]["x-name"] == "café"


def test_query_repeated_keys_joined_and_values_decoded() -> None:
    raw = "parameter1=value1&parameter1=value2&parameter2=a%20b+c&empty=&flag"
    event = build_event(request(raw_query=raw), URL)
    assert event["rawQueryString"] == raw
    assert event["queryStringParameters"] == {
        "parameter1": "value1,value2",
        "parameter2": "a b c",
        "empty": "",
        "flag": "",
    }


def test_query_parameters_helper_decodes_utf8() -> None:
    assert query_parameters("q=%E2%9C%93&k%20x=1") == {"q": "✓", "k x": "1"}


def test_percent_encoded_path_kept_as_received() -> None:
    event = build_event(request(raw_path="/a%20b/c%2Fd/%C3%A9"), URL)
    assert event["rawPath"] == "/a%20b/c%2Fd/%C3%A9"
    assert event["requestContext"]["http"]["path"] == "/a%20b/c%2Fd/%C3%A9"


def test_text_body_is_a_string() -> None:
    body = '{"key": "välue"}'.encode()
    event = build_event(
        request(
            method="POST",
            body=body,
            headers=[("Content-Type", "application/json; charset=utf-8")],
        ),
        URL,
    )
    assert event["body"] == '{"key": "välue"}'
    assert event["isBase64Encoded"] is False
    assert event["requestContext"]["http"]["method"] == "POST"


def test_binary_body_is_base64() -> None:
    body = bytes(range(256))
    event = build_event(
        request(method="PUT", body=body, headers=[("Content-Type", "image/png")]), URL
    )
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == body


def test_form_posts_and_bodies_without_type_are_base64() -> None:
    form = build_event(
        request(
            method="POST",
            body=b"a=1&b=2",
            headers=[("Content-Type", "application/x-www-form-urlencoded")],
        ),
        URL,
    )
    assert form["isBase64Encoded"] is True
    assert base64.b64decode(form["body"]) == b"a=1&b=2"
    untyped = build_event(request(method="POST", body=b"hello"), URL)
    assert untyped["isBase64Encoded"] is True
    assert untyped["body"] == "aGVsbG8="


def test_text_type_with_bytes_that_are_not_utf8_is_base64() -> None:
    event = build_event(
        request(method="POST", body=b"\xff\xfe", headers=[("Content-Type", "text/plain")]),
        URL,
    )
    assert event["isBase64Encoded"] is True
    assert event["body"] == "//4="


def test_empty_body_is_omitted() -> None:
    event = build_event(
        request(method="POST", body=b"", headers=[("Content-Type", "application/json")]), URL
    )
    assert "body" not in event
    assert event["isBase64Encoded"] is False


def test_text_media_types() -> None:
    for text in (
        "text/plain",
        "text/html; charset=utf-8",
        "application/json",
        "APPLICATION/JSON",
        "application/xml",
        "application/javascript",
        "application/ld+json",
        "application/atom+xml",
        "application/problem+json; charset=utf-8",
    ):
        assert is_text(text), text
    for binary in (
        None,
        "",
        "application/octet-stream",
        "image/png",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "application/pdf",
    ):
        assert not is_text(binary), binary
    assert encode_body(b"x", "text/csv") == ("x", False)


def test_http_api_route_with_path_parameters_stage_variables_and_authorizer() -> None:
    trigger = Trigger(
        api_id="a1b2c3d4e5",
        domain_name="a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
        account_id="000000000000",
        route_key="GET /pets/{petId}",
        stage="prod",
        path_parameters={"petId": "42"},
        stage_variables={"table": "pets"},
        authorizer={"iam": {"accessKey": "AKIDEXAMPLE", "accountId": "000000000000"}},
    )
    event = build_event(request(raw_path="/prod/pets/42"), trigger)
    assert event["routeKey"] == "GET /pets/{petId}"
    assert event["pathParameters"] == {"petId": "42"}
    assert event["stageVariables"] == {"table": "pets"}
    ctx = event["requestContext"]
    assert ctx["routeKey"] == "GET /pets/{petId}"
    assert ctx["stage"] == "prod"
    assert ctx["accountId"] == "000000000000"
    assert ctx["domainPrefix"] == "a1b2c3d4e5"
    assert ctx["authorizer"] == {"iam": {"accessKey": "AKIDEXAMPLE", "accountId": "000000000000"}}
    assert list(event)[-3:] == ["pathParameters", "isBase64Encoded", "stageVariables"]


def test_function_url_omits_path_parameters_stage_variables_authorizer() -> None:
    event = build_event(request(), URL)
    assert "pathParameters" not in event
    assert "stageVariables" not in event
    assert "authorizer" not in event["requestContext"]
    assert "queryStringParameters" not in event


def test_time_format_is_utc_with_english_month() -> None:
    assert format_time(0) == "01/Jan/1970:00:00:00 +0000"
    assert format_time(1583348638390) == "04/Mar/2020:19:03:58 +0000"


def test_defaults_give_an_id_and_a_time() -> None:
    req = HttpRequest("GET", "/", "", [], b"", "127.0.0.1")
    event = build_event(req, URL)
    assert len(event["requestContext"]["requestId"]) == 36
    assert event["requestContext"]["timeEpoch"] > 1_700_000_000_000
