"""build_event_v1: the payload format 1.0 (REST API style) event of an HTTP API route."""

from __future__ import annotations

import base64

from nimbus.gateway.event import HttpRequest, Trigger, build_event_v1, query_parameters_v1

ROUTE = Trigger(
    api_id="a1b2c3d4e5",
    domain_name="a1b2c3d4e5.execute-api.localhost",
    account_id="000000000000",
    route_key="GET /hello",
    stage="Prod",
)


def request(**overrides: object) -> HttpRequest:
    fields: dict[str, object] = {
        "method": "GET",
        "raw_path": "/Prod/hello",
        "raw_query": "",
        "headers": [("host", "localhost:9000"), ("user-agent", "curl/8.0")],
        "body": b"",
        "source_ip": "203.0.113.7",
        "request_id": "Bdd2ngt5iGYEMIg=",
        "time_epoch_ms": 1583348638390,
    }
    fields.update(overrides)
    return HttpRequest(**fields)


def test_minimal_get_has_exactly_the_documented_fields() -> None:
    event = build_event_v1(request(server_port=9000), ROUTE)
    assert event == {
        "version": "1.0",
        "resource": "/hello",
        "path": "/Prod/hello",  # HTTP APIs keep a named stage in the path
        "httpMethod": "GET",
        "headers": {
            "host": "localhost:9000",
            "user-agent": "curl/8.0",
            "X-Forwarded-For": "203.0.113.7",
            "X-Forwarded-Proto": "http",
            "X-Forwarded-Port": "9000",
        },
        "multiValueHeaders": {
            "host": ["localhost:9000"],
            "user-agent": ["curl/8.0"],
            "X-Forwarded-For": ["203.0.113.7"],
            "X-Forwarded-Proto": ["http"],
            "X-Forwarded-Port": ["9000"],
        },
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "a1b2c3d4e5",
            "domainName": "a1b2c3d4e5.execute-api.localhost",
            "domainPrefix": "a1b2c3d4e5",
            "extendedRequestId": "Bdd2ngt5iGYEMIg=",
            "httpMethod": "GET",
            "identity": {
                "accessKey": None,
                "accountId": None,
                "caller": None,
                "cognitoAmr": None,
                "cognitoAuthenticationProvider": None,
                "cognitoAuthenticationType": None,
                "cognitoIdentityId": None,
                "cognitoIdentityPoolId": None,
                "principalOrgId": None,
                "sourceIp": "203.0.113.7",
                "user": None,
                "userAgent": "curl/8.0",
                "userArn": None,
            },
            "path": "/Prod/hello",
            "protocol": "HTTP/1.1",
            "requestId": "Bdd2ngt5iGYEMIg=",
            "requestTime": "04/Mar/2020:19:03:58 +0000",
            "requestTimeEpoch": 1583348638390,
            "resourceId": "GET /hello",
            "resourcePath": "/hello",
            "stage": "Prod",
        },
        "pathParameters": None,
        "stageVariables": None,
        "body": None,
        "isBase64Encoded": False,
    }


def test_repeated_headers_and_query_keys_last_value_and_every_value() -> None:
    event = build_event_v1(
        request(
            raw_query="a=1&a=2&b=x+y&c=%C3%A9",
            headers=[("accept", "text/html"), ("accept", "*/*"), ("cookie", "s=1; t=2")],
        ),
        ROUTE,
    )
    assert event["headers"]["accept"] == "*/*"
    assert event["multiValueHeaders"]["accept"] == ["text/html", "*/*"]
    assert event["headers"]["cookie"] == "s=1; t=2"  # no cookies field in 1.0
    assert "cookies" not in event
    assert event["queryStringParameters"] == {"a": "2", "b": "x y", "c": "é"}
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"], "b": ["x y"], "c": ["é"]}
    assert query_parameters_v1("") == ({}, {})


def test_gateway_headers_replace_the_clients_and_forwarded_for_is_extended() -> None:
    event = build_event_v1(
        request(
            headers=[("x-forwarded-for", "198.51.100.1"), ("x-forwarded-proto", "ftp"),
                     ("x-amzn-trace-id", "forged")],
            scheme="https",
            trace_id="Root=1-5e7fe714-fee6909429159440eb352c40",
        ),
        ROUTE,
    )  # fmt: skip
    assert event["headers"]["X-Forwarded-For"] == "198.51.100.1, 203.0.113.7"
    assert event["headers"]["X-Forwarded-Proto"] == "https"
    assert event["multiValueHeaders"]["X-Amzn-Trace-Id"] == [
        "Root=1-5e7fe714-fee6909429159440eb352c40"
    ]
    assert not {"x-forwarded-for", "x-forwarded-proto", "x-amzn-trace-id"} & set(event["headers"])


def test_path_parameters_stage_variables_default_route_and_bodies() -> None:
    trigger = Trigger(
        api_id="a1b2c3d4e5", domain_name="h", account_id="000000000000",
        route_key="ANY /files/{proxy+}", stage="$default",
        path_parameters={"proxy": "a/b c"}, stage_variables={"env": "test"},
    )  # fmt: skip
    text = build_event_v1(
        request(method="POST", raw_path="/files/a/b%20c", body=b'{"k": 1}',
                headers=[("content-type", "application/json")]),
        trigger,
    )  # fmt: skip
    assert text["resource"] == "/files/{proxy+}"
    assert text["requestContext"]["resourceId"] == "ANY /files/{proxy+}"
    assert text["path"] == "/files/a/b%20c"
    assert text["pathParameters"] == {"proxy": "a/b c"}
    assert text["stageVariables"] == {"env": "test"}
    assert (text["body"], text["isBase64Encoded"]) == ('{"k": 1}', False)
    assert text["requestContext"]["identity"]["userAgent"] is None  # none was sent
    binary = build_event_v1(request(body=b"\x00\xff"), Trigger("a", "h", "0", "$default"))
    assert binary["resource"] == binary["requestContext"]["resourcePath"] == "$default"
    assert binary["isBase64Encoded"] is True
    assert base64.b64decode(binary["body"]) == b"\x00\xff"


def test_iam_caller_fills_the_identity() -> None:
    iam = {"accessKey": "AKIA1", "accountId": "000000000000", "callerId": "AIDA1",
           "cognitoIdentity": None, "principalOrgId": None,
           "userArn": "arn:aws:iam::000000000000:user/me", "userId": "AIDA1"}  # fmt: skip
    trigger = Trigger("a", "h", "000000000000", "GET /x", authorizer={"iam": iam})
    identity = build_event_v1(request(), trigger)["requestContext"]["identity"]
    assert identity["accessKey"] == "AKIA1"
    assert identity["accountId"] == "000000000000"
    assert identity["caller"] == identity["user"] == "AIDA1"
    assert identity["userArn"] == "arn:aws:iam::000000000000:user/me"
