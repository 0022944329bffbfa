"""CORS: preflight answers, response headers, and configuration checks."""

from __future__ import annotations

import pytest

from nimbus.api.cors import validate_cors
from nimbus.errors import BadRequest, InvalidParameterValue, ValidationError
from nimbus.gateway.cors import Cors
from nimbus.gateway.reply import HttpReply

SITE = "https://www.example.com"


def preflight_headers(
    origin: str = SITE, method: str = "POST", headers: str | None = None
) -> list[tuple[str, str]]:
    out = [("Origin", origin), ("Access-Control-Request-Method", method)]
    if headers is not None:
        out.append(("Access-Control-Request-Headers", headers))
    return out


def cors(**config: object) -> Cors:
    made = Cors.from_config(config)
    assert made is not None
    return made


def test_from_config_none_and_both_spellings() -> None:
    assert Cors.from_config(None) is None
    lam = cors(AllowOrigins=[SITE], AllowMethods=["get"], MaxAge=300, AllowCredentials=True)
    v2 = cors(allowOrigins=[SITE], allowMethods=["GET"], maxAge=300, allowCredentials=True)
    assert lam == v2
    assert lam.allow_methods == ["GET"]
    assert cors(maxAge=-1).max_age is None


def test_preflight_allowed() -> None:
    c = cors(
        AllowOrigins=[SITE],
        AllowMethods=["GET", "POST"],
        AllowHeaders=["X-Custom-Header", "Content-Type"],
        MaxAge=300,
    )
    reply = c.preflight("OPTIONS", preflight_headers(headers="content-type, x-custom-header"))
    assert reply is not None
    assert reply.status == 204
    assert reply.body == b""
    assert reply.headers == [
        ("Access-Control-Allow-Origin", SITE),
        ("Access-Control-Allow-Methods", "GET, POST"),
        ("Access-Control-Allow-Headers", "X-Custom-Header, Content-Type"),
        ("Access-Control-Max-Age", "300"),
        ("Vary", "Origin"),
    ]


def test_preflight_wildcards() -> None:
    c = cors(AllowOrigins=["*"], AllowMethods=["*"], AllowHeaders=["*"])
    reply = c.preflight("OPTIONS", preflight_headers(method="DELETE", headers="X-A,X-B"))
    assert reply is not None
    assert reply.header("Access-Control-Allow-Origin") == "*"
    assert reply.header("Access-Control-Allow-Methods") == "DELETE"
    assert reply.header("Access-Control-Allow-Headers") == "X-A, X-B"
    assert reply.header("Vary") is None
    assert reply.header("Access-Control-Max-Age") is None


def test_preflight_wildcard_origin_with_credentials_echoes_the_origin() -> None:
    c = cors(AllowOrigins=["*"], AllowMethods=["*"], AllowCredentials=True)
    reply = c.preflight("OPTIONS", preflight_headers())
    assert reply is not None
    assert reply.header("Access-Control-Allow-Origin") == SITE
    assert reply.header("Access-Control-Allow-Credentials") == "true"
    assert reply.header("Vary") == "Origin"


@pytest.mark.parametrize(
    "headers",
    [
        preflight_headers(origin="https://evil.example"),
        preflight_headers(method="DELETE"),
        preflight_headers(headers="X-Not-Allowed"),
    ],
    ids=["origin", "method", "header"],
)
def test_preflight_denied_has_no_permission_headers(headers: list[tuple[str, str]]) -> None:
    c = cors(AllowOrigins=[SITE], AllowMethods=["GET", "POST"], AllowHeaders=["X-Ok"])
    reply = c.preflight("OPTIONS", headers)
    assert reply is not None
    assert reply.status == 204
    assert not any(k.lower().startswith("access-control-") for k, _ in reply.headers)


def test_not_a_preflight() -> None:
    c = cors(AllowOrigins=["*"], AllowMethods=["*"])
    assert c.preflight("GET", preflight_headers()) is None
    assert c.preflight("OPTIONS", [("Origin", SITE)]) is None
    assert c.preflight("OPTIONS", [("Access-Control-Request-Method", "GET")]) is None


def test_matching_is_case_insensitive_for_headers_methods_and_origin() -> None:
    c = cors(AllowOrigins=["HTTPS://WWW.EXAMPLE.COM"], AllowMethods=["post"], AllowHeaders=["x-a"])
    reply = c.preflight("options", preflight_headers(method="post", headers="X-A"))
    assert reply is not None
    assert reply.header("Access-Control-Allow-Origin") == SITE


def test_apply_replaces_function_cors_headers() -> None:
    c = cors(AllowOrigins=[SITE], AllowCredentials=True, ExposeHeaders=["X-Total", "Date"])
    function_reply = HttpReply(
        200,
        [
            ("content-type", "application/json"),
            ("Access-Control-Allow-Origin", "*"),
            ("access-control-expose-headers", "X-Secret"),
            ("Vary", "Accept-Encoding"),
        ],
        b"{}",
    )
    reply = c.apply([("Origin", SITE)], function_reply)
    assert reply.headers == [
        ("content-type", "application/json"),
        ("Vary", "Accept-Encoding, Origin"),
        ("Access-Control-Allow-Origin", SITE),
        ("Access-Control-Allow-Credentials", "true"),
        ("Access-Control-Expose-Headers", "X-Total, Date"),
    ]
    assert reply.body == b"{}"
    assert reply.status == 200


def test_apply_wildcard_origin() -> None:
    reply = cors(AllowOrigins=["*"]).apply([("origin", SITE)], HttpReply(200, [], b""))
    assert reply.headers == [("Access-Control-Allow-Origin", "*")]


def test_apply_origin_not_allowed_or_absent() -> None:
    c = cors(AllowOrigins=[SITE])
    denied = c.apply(
        [("Origin", "https://evil.example")],
        HttpReply(200, [("Access-Control-Allow-Origin", "*")], b""),
    )
    assert denied.headers == [("Vary", "Origin")]
    no_origin = c.apply([], HttpReply(200, [("Access-Control-Allow-Origin", "*")], b""))
    assert no_origin.headers == []


def test_validate_lambda_cors() -> None:
    config = {
        "AllowOrigins": [SITE],
        "AllowMethods": ["GET", "*"],
        "MaxAge": 86400,
        "ExposeHeaders": None,
    }
    assert validate_cors(config) == {
        "AllowOrigins": [SITE],
        "AllowMethods": ["GET", "*"],
        "MaxAge": 86400,
    }
    assert validate_cors(None) is None
    assert validate_cors({}) == {}


@pytest.mark.parametrize(
    ("config", "words"),
    [
        (
            {"MaxAge": 86401},
            "cors.maxAge' failed to satisfy constraint: Member must have value less",
        ),
        ({"MaxAge": -1}, "greater than or equal to 0"),
        ({"AllowOrigins": ["x"] * 101}, "cors.allowOrigins"),
        ({"AllowOrigins": [""]}, "length greater than or equal to 1"),
        ({"AllowOrigins": ["a" * 254]}, "length less than or equal to 253"),
        ({"AllowMethods": ["OPTIONS"]}, "length less than or equal to 6"),
        ({"AllowMethods": ["GET"] * 7}, "cors.allowMethods"),
        ({"AllowHeaders": "X-A"}, "be a list"),
        ({"AllowCredentials": "yes"}, "be a boolean"),
    ],
)
def test_validate_lambda_cors_model_constraints(config: dict[str, object], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        validate_cors(config)


def test_validate_lambda_cors_meaning() -> None:
    with pytest.raises(InvalidParameterValue, match="AllowMethods has TRACE"):
        validate_cors({"AllowMethods": ["TRACE"]})
    with pytest.raises(InvalidParameterValue, match="Unknown Cors member"):
        validate_cors({"AllowOrigin": ["*"]})
    with pytest.raises(InvalidParameterValue, match="Cors must be an object"):
        validate_cors(["*"])


def test_validate_http_api_cors() -> None:
    config = {"allowOrigins": [SITE], "allowMethods": ["OPTIONS", "GET"], "maxAge": -1}
    assert validate_cors(config, api="apigatewayv2") == config
    for bad, words in [
        ({"maxAge": 86401}, "maxAge"),
        ({"allowMethods": ["FETCH"]}, "allowMethods has FETCH|AllowMethods has FETCH"),
        ({"allowOrigins": "*"}, "allowOrigins must be a list"),
        ({"allowOrigins": ["*"], "allowCredentials": True}, "allowCredentials"),
        ({"allowCredentials": 1}, "allowCredentials must be a boolean"),
    ]:
        with pytest.raises(BadRequest, match=words):
            validate_cors(bad, api="apigatewayv2")
