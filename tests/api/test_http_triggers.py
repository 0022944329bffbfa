"""HTTP triggers end to end, as a user drives them: a real ``nimbus up``, functions that
really run in the sandbox, boto3 for the control planes (``lambda`` function URL
configs, ``apigatewayv2`` HTTP APIs) and httpx for the requests a browser or client
would send to a function URL (``/lambda-url/<url-id>/...``) or an HTTP API
(``/execute-api/<api-id>/[<stage>/]...``)."""

from __future__ import annotations

import base64
import re
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import (
    ROLE,
    make_zip,
    powertools_package,
    python_runtime,
)
from tests.nimbus_process import NimbusProcess

# The module's server (tests/api/conftest.py) is shared: each test uses functions, URLs and
# APIs of its own or ones that no other test changes.
pytestmark = pytest.mark.sandbox

RUNTIME = python_runtime()
TIME_FORMAT = re.compile(
    r"\d{2}/(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/\d{4}:"
    r"\d{2}:\d{2}:\d{2} \+0000"
)

# One function that does what the last path segment says (everything else: echo the
# event as JSON), and counts its calls in ``x-calls`` (sequential requests reuse one warm
# environment, so the count shows whether a request reached the function).
MIRROR = """
import base64, json

calls = 0

def handler(event, context):
    global calls
    calls += 1
    action = event["rawPath"].rstrip("/").rsplit("/", 1)[-1]
    if action == "sleep":
        import time
        time.sleep(3)
    if action == "fail":
        raise RuntimeError("the function failed")
    if action == "malformed":
        return {"statusCode": "teapot", "body": "no status code"}
    if action == "unavailable":
        return {"statusCode": 503, "body": "down for maintenance"}
    if action == "cookies":
        return {
            "statusCode": 201,
            "headers": {"X-Custom": "yes", "Content-Type": "text/plain", "X-Number": 7},
            "cookies": ["a=1; Path=/", "b=2; HttpOnly"],
            "body": "cookies set",
        }
    if action == "binary":
        return {
            "statusCode": 200,
            "headers": {"content-type": "application/octet-stream"},
            "isBase64Encoded": True,
            "body": base64.b64encode(bytes(range(256))).decode(),
        }
    if action == "no-content":
        return {"statusCode": 204, "body": "a body a 204 cannot carry"}
    if action == "interim":
        return {"statusCode": 100, "body": "not a final status"}
    if action == "no-type":
        return {"statusCode": 200, "body": "plain"}
    if action == "dict":
        return {"hello": "world", "n": 1}
    if action == "list":
        return [1, "two", None]
    if action == "string":
        return "just a string"
    if action == "echo-body":
        body = event.get("body", "")
        return {"statusCode": 200, "headers": {"content-type": "text/plain"}, "body": body}
    if action == "marker":
        return {
            "statusCode": 200,
            "headers": {"x-calls": str(calls), "Access-Control-Allow-Origin": "https://evil"},
            "body": "FUNCTION-RAN",
        }
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json", "x-calls": str(calls)},
        "body": json.dumps(event),
    }
"""

POWERTOOLS_APP = """
import json

from aws_lambda_powertools.event_handler import {resolver}, Response
from aws_lambda_powertools.shared.cookies import Cookie

app = {resolver}()


@app.get("/pets/<pet_id>")
def get_pet(pet_id):
    event = app.current_event
    return {{"petId": pet_id, "verbose": event.get_query_string_value("verbose"),
            "resolver": "{resolver}"}}


@app.post("/pets")
def create_pet():
    pet = app.current_event.json_body
    return Response(
        status_code=201,
        content_type="application/json",
        body=json.dumps({{"created": pet}}),
        headers={{"X-Pet-Id": str(pet["id"]), "X-Tags": ["a", "b"]}},
        cookies=[Cookie(name="last", value=str(pet["id"]))],
    )


@app.get("/search")
def search():
    event = app.current_event
    return {{
        "q": event.get_query_string_value("q"),
        "tag": event.query_string_parameters.get("tag"),
        "raw": event.raw_query_string,
    }}


@app.get("/teapot")
def teapot():
    return Response(status_code=418, content_type="text/plain", body="I'm a teapot",
                    headers={{"X-Brew": "earl-grey"}})


def handler(event, context):
    return app.resolve(event, context)
"""


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=120) as client:
        yield client


def create_function(lam, code: bytes, handler: str = "app.handler") -> tuple[str, str]:
    """A new function: (name, ARN)."""
    name = f"fn-{uuid.uuid4().hex[:8]}"
    made = lam.create_function(
        FunctionName=name,
        Runtime=RUNTIME,
        Role=ROLE,
        Handler=handler,
        Code={"ZipFile": code},
        Timeout=30,
    )
    return name, made["FunctionArn"]


def function_url(lam, name: str, **kwargs: Any) -> str:
    """The function's new URL (AuthType NONE unless given), without the trailing slash."""
    made = lam.create_function_url_config(FunctionName=name, AuthType="NONE", **kwargs)
    return made["FunctionUrl"].rstrip("/")


def url_id(url: str) -> str:
    return url.rsplit("/lambda-url/", 1)[1].split("/")[0]


def invoked_request_ids(server: NimbusProcess, name: str) -> set[str]:
    """The request ids of the function's invocations, from its logs."""
    got = httpx.get(f"{server.endpoint}/_nimbus/functions/{name}/logs", params={"Limit": 1000})
    got.raise_for_status()
    return {record["request_id"] for record in got.json()["Logs"]}


@pytest.fixture(scope="module")
def mirror(server: NimbusProcess) -> tuple[str, str]:
    return create_function(server.client(), make_zip({"app.py": MIRROR}))


@pytest.fixture(scope="module")
def mirror_url(server: NimbusProcess, mirror: tuple[str, str]) -> str:
    return function_url(server.client(), mirror[0])


@pytest.fixture(scope="module")
def powertools(server: NimbusProcess) -> dict[str, tuple[str, str]]:
    """Two functions from one zip: a powertools app on APIGatewayHttpResolver ("http")
    and one on LambdaFunctionUrlResolver ("url")."""
    lam = server.client()
    code = powertools_package(
        {
            "http_app.py": POWERTOOLS_APP.format(resolver="APIGatewayHttpResolver"),
            "url_app.py": POWERTOOLS_APP.format(resolver="LambdaFunctionUrlResolver"),
        }
    )
    return {
        "http": create_function(lam, code, "http_app.handler"),
        "url": create_function(lam, code, "url_app.handler"),
    }


def proxy_api(gw, function_arn: str) -> str:
    """An HTTP API with ``ANY /{proxy+}`` to the function, stages $default and prod: its
    endpoint."""
    api = gw.create_api(Name=f"proxy-{uuid.uuid4().hex[:6]}", ProtocolType="HTTP")
    integration = gw.create_integration(
        ApiId=api["ApiId"],
        IntegrationType="AWS_PROXY",
        IntegrationUri=function_arn,
        PayloadFormatVersion="2.0",
    )["IntegrationId"]
    gw.create_route(
        ApiId=api["ApiId"], RouteKey="ANY /{proxy+}", Target=f"integrations/{integration}"
    )
    gw.create_stage(ApiId=api["ApiId"], StageName="$default")
    gw.create_stage(ApiId=api["ApiId"], StageName="prod")
    return api["ApiEndpoint"]


# -- 1. powertools apps, unchanged ---------------------------------------------------------


@pytest.fixture(scope="module")
def powertools_bases(
    server: NimbusProcess, powertools: dict[str, tuple[str, str]]
) -> dict[str, str]:
    lam, gw = server.client(), server.client("apigatewayv2")
    bases = {}
    for kind, (name, arn) in powertools.items():
        bases[f"{kind}-url"] = function_url(lam, name)
        endpoint = proxy_api(gw, arn)
        bases[f"{kind}-api"] = endpoint
        bases[f"{kind}-api-prod"] = endpoint + "/prod"
    return bases


@pytest.mark.parametrize("resolver", ["http", "url"])
@pytest.mark.parametrize("via", ["url", "api", "api-prod"])
def test_powertools_app_serves_its_routes(
    http: httpx.Client, powertools_bases: dict[str, str], resolver: str, via: str
) -> None:
    base = powertools_bases[f"{resolver}-{via}"]
    name = {"http": "APIGatewayHttpResolver", "url": "LambdaFunctionUrlResolver"}[resolver]

    got = http.get(f"{base}/pets/42", params={"verbose": "yes"})
    assert got.status_code == 200, got.text
    assert got.headers["content-type"] == "application/json"
    assert got.json() == {"petId": "42", "verbose": "yes", "resolver": name}

    made = http.post(f"{base}/pets", json={"id": 7, "name": "Rex"})
    assert made.status_code == 201, made.text
    assert made.json() == {"created": {"id": 7, "name": "Rex"}}
    assert made.headers["x-pet-id"] == "7"
    assert made.headers["x-tags"] == "a, b"
    cookies = made.headers.get_list("set-cookie")
    assert len(cookies) == 1 and cookies[0].startswith("last=7")

    found = http.get(f"{base}/search?q=red+fish&tag=a&tag=b")
    assert found.status_code == 200, found.text
    assert found.json() == {"q": "red fish", "tag": "a,b", "raw": "q=red+fish&tag=a&tag=b"}

    missing = http.get(f"{base}/nowhere")
    assert missing.status_code == 404
    # The resolver's own 404, not the gateway's: the request reached the function.
    assert missing.json() == {"statusCode": 404, "message": "Not found"}
    assert "x-amzn-errortype" not in missing.headers

    teapot = http.get(f"{base}/teapot")
    assert teapot.status_code == 418
    assert teapot.text == "I'm a teapot"
    assert teapot.headers["content-type"] == "text/plain"
    assert teapot.headers["x-brew"] == "earl-grey"


# -- 2. function URL event and response mapping ----------------------------------------------


def test_function_url_event(http: httpx.Client, server: NimbusProcess, mirror_url: str) -> None:
    uid = url_id(mirror_url)
    before = int(time.time() * 1000)
    got = http.get(
        f"{mirror_url}/some/path%20here?a=1&a=2&b=hello%20world&empty=",
        headers=[
            ("Cookie", "session=abc; theme=dark"),
            ("X-Multi", "one"),
            ("X-Multi", "two"),
            ("X-Mixed-CASE", "Value Kept"),
            ("User-Agent", "nimbus-test/1.0"),
        ],
    )
    after = int(time.time() * 1000)
    assert got.status_code == 200, got.text
    event = got.json()

    assert event["version"] == "2.0"
    assert event["routeKey"] == "$default"
    assert event["rawPath"] == "/some/path%20here"
    assert event["rawQueryString"] == "a=1&a=2&b=hello%20world&empty="
    assert event["queryStringParameters"] == {"a": "1,2", "b": "hello world", "empty": ""}
    assert event["cookies"] == ["session=abc", "theme=dark"]
    headers = event["headers"]
    assert "cookie" not in headers
    assert all(name == name.lower() for name in headers)
    assert headers["x-multi"] == "one,two"
    assert headers["x-mixed-case"] == "Value Kept"
    assert headers["user-agent"] == "nimbus-test/1.0"
    assert headers["host"] == f"127.0.0.1:{server.port}"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-port"] == str(server.port)
    assert "body" not in event
    assert event["isBase64Encoded"] is False
    assert "pathParameters" not in event and "stageVariables" not in event

    context = event["requestContext"]
    assert context["accountId"] == "anonymous"
    assert context["apiId"] == uid
    assert context["domainName"] == "127.0.0.1"  # the host the request came to
    assert context["domainPrefix"] == uid
    assert context["http"] == {
        "method": "GET",
        "path": "/some/path%20here",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "nimbus-test/1.0",
    }
    assert context["routeKey"] == "$default" and context["stage"] == "$default"
    assert context["requestId"] == got.headers["x-amzn-requestid"]
    assert "authorizer" not in context
    assert before <= context["timeEpoch"] <= after
    assert TIME_FORMAT.fullmatch(context["time"]), context["time"]
    assert time.strftime("%d/", time.gmtime(context["timeEpoch"] / 1000)) in context["time"]

    # A client cannot choose its sourceIp: X-Forwarded-For is passed on, with the peer added.
    spoofed = http.get(f"{mirror_url}/", headers={"X-Forwarded-For": "203.0.113.9"}).json()
    assert spoofed["requestContext"]["http"]["sourceIp"] == "127.0.0.1"
    assert spoofed["headers"]["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"

    # A second request is a different request.
    again = http.get(f"{mirror_url}/")
    assert again.json()["requestContext"]["requestId"] != context["requestId"]
    assert again.json()["rawPath"] == "/"
    assert again.json()["rawQueryString"] == ""
    assert "queryStringParameters" not in again.json() and "cookies" not in again.json()


def test_function_url_by_host_name(
    http: httpx.Client, server: NimbusProcess, mirror_url: str
) -> None:
    """The browser form: http://<url-id>.lambda-url.localhost:PORT/ (browsers resolve any
    name under .localhost to loopback); the function sees the path and host as sent."""
    uid = url_id(mirror_url)
    host = f"{uid}.lambda-url.localhost:{server.port}"
    got = http.get(f"{server.endpoint}/a/b?x=1", headers={"Host": host})
    assert got.status_code == 200, got.text
    event = got.json()
    assert event["rawPath"] == "/a/b" and event["rawQueryString"] == "x=1"
    assert event["headers"]["host"] == host
    context = event["requestContext"]
    assert context["domainName"] == f"{uid}.lambda-url.localhost"
    assert context["domainPrefix"] == uid and context["http"]["path"] == "/a/b"


@pytest.mark.parametrize(
    ("content_type", "body", "expected", "encoded"),
    [
        ("text/plain; charset=utf-8", "héllo wörld".encode(), "héllo wörld", False),
        ("application/json", b'{"a": [1, 2]}', '{"a": [1, 2]}', False),
        ("application/octet-stream", bytes(range(256)), base64.b64encode(bytes(range(256))), True),
    ],
)
def test_function_url_request_body(
    http: httpx.Client,
    mirror_url: str,
    content_type: str,
    body: bytes,
    expected: str | bytes,
    encoded: bool,
) -> None:
    got = http.post(f"{mirror_url}/echo", content=body, headers={"Content-Type": content_type})
    assert got.status_code == 200, got.text
    event = got.json()
    want = expected.decode() if isinstance(expected, bytes) else expected
    assert event["body"] == want
    assert event["isBase64Encoded"] is encoded
    assert event["requestContext"]["http"]["method"] == "POST"
    assert event["headers"]["content-type"] == content_type


def test_function_url_response_mapping(http: httpx.Client, mirror_url: str) -> None:
    cookies = http.get(f"{mirror_url}/cookies")
    assert cookies.status_code == 201
    assert cookies.text == "cookies set"
    assert cookies.headers["x-custom"] == "yes"
    assert cookies.headers["x-number"] == "7"
    assert cookies.headers["content-type"] == "text/plain"
    assert cookies.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; HttpOnly"]

    binary = http.get(f"{mirror_url}/binary")
    assert binary.status_code == 200
    assert binary.content == bytes(range(256))
    assert binary.headers["content-type"] == "application/octet-stream"

    # No content type from the function: function URLs send application/json.
    plain = http.get(f"{mirror_url}/no-type")
    assert (plain.status_code, plain.text) == (200, "plain")
    assert plain.headers["content-type"] == "application/json"

    # A 204 ends at its headers even when the function returned a body: the next
    # response on the same kept-alive connection is read intact.
    empty = http.get(f"{mirror_url}/no-content")
    assert (empty.status_code, empty.content) == (204, b"")
    assert "content-length" not in empty.headers
    after = http.get(f"{mirror_url}/string")
    assert (after.status_code, after.text) == (200, '"just a string"')

    for path, value in (("dict", {"hello": "world", "n": 1}), ("list", [1, "two", None])):
        bare = http.get(f"{mirror_url}/{path}")
        assert bare.status_code == 200
        assert bare.headers["content-type"] == "application/json"
        assert bare.json() == value
    text = http.get(f"{mirror_url}/string")
    assert (text.status_code, text.headers["content-type"]) == (200, "application/json")
    assert text.text == '"just a string"'


def test_function_url_failures(http: httpx.Client, mirror_url: str) -> None:
    failed = http.get(f"{mirror_url}/fail")
    assert failed.status_code == 502
    assert failed.headers["x-amzn-errortype"]
    assert "the function failed" not in failed.text  # no stack traces to the client
    assert failed.headers["x-amzn-requestid"]

    malformed = http.get(f"{mirror_url}/malformed")
    assert malformed.status_code == 502
    assert malformed.headers["x-amzn-errortype"]

    # A 1xx is not a final answer: malformed too (and the connection stays usable).
    interim = http.get(f"{mirror_url}/interim")
    assert interim.status_code == 502
    assert interim.headers["x-amzn-errortype"]

    # The function's own 5xx is passed on as it is, without the gateway's error header.
    own = http.get(f"{mirror_url}/unavailable")
    assert (own.status_code, own.text) == (503, "down for maintenance")
    assert "x-amzn-errortype" not in own.headers

    unknown = http.get(mirror_url.replace(url_id(mirror_url), "nosuchurlid0000") + "/")
    assert unknown.status_code == 404


def test_function_url_large_bodies(http: httpx.Client, mirror_url: str) -> None:
    big = ("0123456789abcdef" * (5 * 1024 * 1024 // 16)).encode()
    echoed = http.post(
        f"{mirror_url}/echo-body", content=big, headers={"Content-Type": "text/plain"}
    )
    assert echoed.status_code == 200, echoed.text[:200]
    assert echoed.content == big

    too_big = b"x" * (6 * 1024 * 1024 + 1)
    refused = http.post(
        f"{mirror_url}/echo-body", content=too_big, headers={"Content-Type": "text/plain"}
    )
    assert refused.status_code == 413
    assert refused.headers["x-amzn-errortype"]


def test_function_url_truncated_body_is_not_invoked(
    http: httpx.Client, server: NimbusProcess, mirror: tuple[str, str], mirror_url: str
) -> None:
    """A client that hangs up in the middle of its body gets no invocation on its behalf."""
    before = invoked_request_ids(server, mirror[0])
    path = mirror_url.split(str(server.port), 1)[1] + "/echo"
    with socket.create_connection(("127.0.0.1", server.port)) as raw:
        raw.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
            "Content-Length: 1000\r\n\r\nonly ten b".encode()
        )
    # Whatever the server made of the hang-up, it did so before this request is served.
    time.sleep(0.2)
    whole = http.post(
        f"{mirror_url}/echo", content=b"whole", headers={"Content-Type": "text/plain"}
    )
    assert whole.json()["body"] == "whole"
    ran = invoked_request_ids(server, mirror[0]) - before
    assert ran == {whole.headers["x-amzn-requestid"]}


# -- 3. CORS on a function URL ------------------------------------------------------------


def test_function_url_cors(lam, http: httpx.Client, server: NimbusProcess) -> None:
    name, _ = create_function(lam, make_zip({"app.py": MIRROR}))
    url = function_url(
        lam,
        name,
        Cors={
            "AllowOrigins": ["https://app.example.com"],
            "AllowMethods": ["GET", "POST"],
            "AllowHeaders": ["x-token", "content-type"],
            "ExposeHeaders": ["x-calls"],
            "MaxAge": 600,
        },
    )
    first = http.get(f"{url}/marker", headers={"Origin": "https://app.example.com"})
    assert (first.status_code, first.text) == (200, "FUNCTION-RAN")
    assert first.headers["x-calls"] == "1"
    # The configured CORS headers replace the function's own.
    assert first.headers["access-control-allow-origin"] == "https://app.example.com"
    assert first.headers["access-control-expose-headers"] == "x-calls"

    preflight = http.options(
        f"{url}/marker",
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "X-Token",
        },
    )
    assert preflight.status_code in (200, 204)
    assert "FUNCTION-RAN" not in preflight.text
    assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
    allowed_methods = {
        m.strip() for m in preflight.headers["access-control-allow-methods"].split(",")
    }
    assert {"GET", "POST"} <= allowed_methods
    allowed_headers = preflight.headers["access-control-allow-headers"].lower()
    assert "x-token" in {h.strip() for h in allowed_headers.split(",")}
    assert preflight.headers["access-control-max-age"] == "600"

    # The preflight did not reach the function: this is its second call, not its third.
    second = http.get(f"{url}/marker", headers={"Origin": "https://other.example.com"})
    assert (second.status_code, second.text) == (200, "FUNCTION-RAN")
    assert second.headers["x-calls"] == "2"
    assert "access-control-allow-origin" not in second.headers

    # A disallowed origin's preflight gets no permission either.
    refused = http.options(
        f"{url}/marker",
        headers={"Origin": "https://other.example.com", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in refused.headers
    assert "FUNCTION-RAN" not in refused.text

    # An OPTIONS request that is not a preflight is the function's to answer.
    plain_options = http.options(f"{url}/marker")
    assert (plain_options.status_code, plain_options.text) == (200, "FUNCTION-RAN")
    assert plain_options.headers["x-calls"] == "3"
    # The invocation log agrees: the gateway's request id is the invocation's.
    ran = invoked_request_ids(server, name)
    for response in (first, second, plain_options):
        assert response.headers["x-amzn-requestid"] in ran
    for response in (preflight, refused):
        assert response.headers["x-amzn-requestid"] not in ran
    assert len(ran) == 3


# -- 4. HTTP API routes and stages -------------------------------------------------------


@pytest.fixture(scope="module")
def routed(server: NimbusProcess, mirror: tuple[str, str]) -> dict[str, str]:
    """An HTTP API with GET /pets/{petId}, GET /pets/dog, ANY /files/{proxy+} (no $default
    route yet), stages $default and prod (with stage variables)."""
    gw = server.client("apigatewayv2")
    api = gw.create_api(Name=f"pets-{uuid.uuid4().hex[:6]}", ProtocolType="HTTP")
    api_id = api["ApiId"]
    integration = gw.create_integration(
        ApiId=api_id,
        IntegrationType="AWS_PROXY",
        IntegrationUri=mirror[1],
        PayloadFormatVersion="2.0",
    )["IntegrationId"]
    for key in ("GET /pets/{petId}", "GET /pets/dog", "ANY /files/{proxy+}"):
        gw.create_route(ApiId=api_id, RouteKey=key, Target=f"integrations/{integration}")
    impatient = gw.create_integration(
        ApiId=api_id,
        IntegrationType="AWS_PROXY",
        IntegrationUri=mirror[1],
        PayloadFormatVersion="2.0",
        TimeoutInMillis=1000,
    )["IntegrationId"]
    gw.create_route(ApiId=api_id, RouteKey="GET /slow/{x}", Target=f"integrations/{impatient}")
    gw.create_stage(ApiId=api_id, StageName="$default")
    gw.create_stage(ApiId=api_id, StageName="prod", StageVariables={"table": "pets-prod"})
    return {"id": api_id, "endpoint": api["ApiEndpoint"], "integration": integration}


def test_http_api_routes_and_stages(
    gw, http: httpx.Client, routed: dict[str, str], server: NimbusProcess
) -> None:
    endpoint, api_id = routed["endpoint"], routed["id"]
    assert endpoint == f"{server.endpoint}/execute-api/{api_id}"

    pet = http.get(f"{endpoint}/pets/42?x=1")
    assert pet.status_code == 200, pet.text
    event = pet.json()
    assert event["routeKey"] == "GET /pets/{petId}"
    assert event["pathParameters"] == {"petId": "42"}
    assert event["rawPath"] == "/pets/42"
    assert event["queryStringParameters"] == {"x": "1"}
    context = event["requestContext"]
    assert context["stage"] == "$default" and context["routeKey"] == "GET /pets/{petId}"
    assert context["apiId"] == api_id
    assert context["domainName"] == "127.0.0.1"
    assert context["domainPrefix"] == api_id
    assert context["accountId"] == "000000000000"
    assert context["requestId"] == pet.headers["x-amzn-requestid"]
    assert "stageVariables" not in event

    # Path variables are decoded; the raw path is as sent.
    spaced = http.get(f"{endpoint}/pets/big%20dog").json()
    assert spaced["pathParameters"] == {"petId": "big dog"}
    assert spaced["rawPath"] == "/pets/big%20dog"

    # A literal route beats a variable one.
    dog = http.get(f"{endpoint}/pets/dog").json()
    assert dog["routeKey"] == "GET /pets/dog"
    assert "pathParameters" not in dog

    # Greedy: any method, several segments.
    files = http.delete(f"{endpoint}/files/a/b/c.txt")
    assert files.status_code == 200
    assert files.json()["routeKey"] == "ANY /files/{proxy+}"
    assert files.json()["pathParameters"] == {"proxy": "a/b/c.txt"}
    assert files.json()["requestContext"]["http"]["method"] == "DELETE"

    # The named stage: in the path, the event and stageVariables.
    prod = http.get(f"{endpoint}/prod/pets/7")
    assert prod.status_code == 200, prod.text
    prod_event = prod.json()
    assert prod_event["rawPath"] == "/prod/pets/7"
    assert prod_event["requestContext"]["http"]["path"] == "/prod/pets/7"
    assert prod_event["requestContext"]["stage"] == "prod"
    assert prod_event["routeKey"] == "GET /pets/{petId}"
    assert prod_event["pathParameters"] == {"petId": "7"}
    assert prod_event["stageVariables"] == {"table": "pets-prod"}

    # No route and no $default route: the gateway's 404, the function never runs.
    for method, path in (("GET", "/nothing/here"), ("POST", "/pets/42"), ("GET", "/prod/cats")):
        missing = http.request(method, f"{endpoint}{path}")
        assert missing.status_code == 404, (method, path)
        assert missing.json() == {"message": "Not Found"}
        assert missing.headers["x-amzn-errortype"] == "NotFoundException"

    # A $default route takes what no other route matches.
    gw.create_route(
        ApiId=api_id, RouteKey="$default", Target=f"integrations/{routed['integration']}"
    )
    caught = http.get(f"{endpoint}/nothing/here")
    assert caught.status_code == 200, caught.text
    assert caught.json()["routeKey"] == "$default"
    assert "pathParameters" not in caught.json()
    post = http.post(f"{endpoint}/pets/42", json={"a": 1}).json()
    assert post["routeKey"] == "$default" and post["body"] == '{"a":1}'


def test_http_api_function_errors_vs_own_5xx(http: httpx.Client, routed: dict[str, str]) -> None:
    endpoint = routed["endpoint"]
    failed = http.get(f"{endpoint}/files/x/fail")
    assert failed.status_code == 500
    assert failed.headers["x-amzn-errortype"] == "InternalServerErrorException"
    assert failed.json() == {"message": "Internal Server Error"}

    malformed = http.get(f"{endpoint}/files/x/malformed")
    assert malformed.status_code == 500
    assert malformed.headers["x-amzn-errortype"] == "InternalServerErrorException"

    own = http.get(f"{endpoint}/files/x/unavailable")
    assert (own.status_code, own.text) == (503, "down for maintenance")
    assert "x-amzn-errortype" not in own.headers
    # HTTP APIs default a missing content type to text/plain.
    assert own.headers["content-type"] == "text/plain; charset=utf-8"

    # The integration's timeout (1 s) is the gateway's to enforce: 504, not a wait of 3 s.
    started = time.monotonic()
    slow = http.get(f"{endpoint}/slow/sleep")
    assert slow.status_code == 504
    assert slow.headers["x-amzn-errortype"] == "IntegrationTimeoutException"
    assert time.monotonic() - started < 2.5


def test_http_api_quick_create(gw, http: httpx.Client, mirror: tuple[str, str]) -> None:
    api = gw.create_api(Name="quick", ProtocolType="HTTP", Target=mirror[1])
    got = http.post(
        f"{api['ApiEndpoint']}/any/path?k=v", content=b"hi", headers={"Content-Type": "text/plain"}
    )
    assert got.status_code == 200, got.text
    event = got.json()
    assert event["routeKey"] == "$default"
    assert event["requestContext"]["stage"] == "$default"
    assert event["requestContext"]["apiId"] == api["ApiId"]
    assert event["rawPath"] == "/any/path"
    assert event["body"] == "hi" and event["isBase64Encoded"] is False


def test_http_api_cors(gw, http: httpx.Client, mirror: tuple[str, str]) -> None:
    api = gw.create_api(
        Name="cors",
        ProtocolType="HTTP",
        Target=mirror[1],
        CorsConfiguration={
            "AllowOrigins": ["https://app.example.com"],
            "AllowMethods": ["GET", "PUT"],
            "AllowHeaders": ["x-token"],
            "MaxAge": 300,
        },
    )
    endpoint = api["ApiEndpoint"]
    preflight = http.options(
        f"{endpoint}/things/marker",
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "x-token",
        },
    )
    assert preflight.status_code in (200, 204)
    assert "FUNCTION-RAN" not in preflight.text
    assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "PUT" in preflight.headers["access-control-allow-methods"]
    assert "x-token" in preflight.headers["access-control-allow-headers"].lower()
    assert preflight.headers["access-control-max-age"] == "300"

    allowed = http.get(f"{endpoint}/things/marker", headers={"Origin": "https://app.example.com"})
    assert (allowed.status_code, allowed.text) == (200, "FUNCTION-RAN")
    # The API's CORS headers, not the function's ("https://evil").
    assert allowed.headers.get_list("access-control-allow-origin") == ["https://app.example.com"]
    other = http.get(f"{endpoint}/things/marker", headers={"Origin": "https://evil"})
    assert other.status_code == 200
    assert "access-control-allow-origin" not in other.headers
