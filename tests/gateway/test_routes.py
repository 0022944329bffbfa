"""Route keys and matching: API Gateway's precedence, stages, path variables."""

from __future__ import annotations

import pytest

from nimbus.errors import BadRequest
from nimbus.gateway.routes import RouteTable
from nimbus.models import ApiIntegration, ApiRoute, ApiStage, HttpApi, HttpApiDefinition
from nimbus.route_keys import parse_route_key

NOW = "2026-01-01T00:00:00Z"


def table(keys: list[str], stages: tuple[str, ...] = ("$default",)) -> RouteTable:
    api = HttpApi(api_id="a1b2c3d4e5", name="t", created_date=NOW)
    integrations = [
        ApiIntegration(
            api_id=api.api_id,
            integration_id=f"i{n}",
            integration_uri=f"arn:aws:lambda:us-east-1:000000000000:function:f{n}",
            function_name=f"f{n}",
            qualifier=None,
        )
        for n in range(len(keys))
    ]
    routes = [
        ApiRoute(api_id=api.api_id, route_id=f"r{n}", route_key=key, target=f"integrations/i{n}")
        for n, key in enumerate(keys)
    ]
    stage_list = [ApiStage(api.api_id, name, NOW, NOW) for name in stages]
    return RouteTable(HttpApiDefinition(api, routes, integrations, stage_list))


def key(t: RouteTable, method: str, path: str) -> str | None:
    match = t.match(method, path)
    return None if match is None else match.route.route_key


def test_aws_documented_precedence() -> None:
    # The example of "Routing API requests" in the HTTP API developer guide.
    t = table(["GET /pets/dog/1", "GET /pets/dog/{id}", "GET /pets/{proxy+}", "ANY /{proxy+}"])
    assert key(t, "GET", "/pets/dog/1") == "GET /pets/dog/1"
    assert key(t, "GET", "/pets/dog/2") == "GET /pets/dog/{id}"
    assert key(t, "GET", "/pets/cat/1") == "GET /pets/{proxy+}"
    assert key(t, "POST", "/pets/cat/1") == "ANY /{proxy+}"
    assert key(t, "GET", "/pets") == "ANY /{proxy+}"  # {proxy+} needs a segment
    assert key(t, "GET", "/") is None


def test_literal_beats_variable_segment_by_segment() -> None:
    t = table(["GET /a/{x}/c", "GET /a/b/{y}", "GET /{p}/b/c"])
    assert key(t, "GET", "/a/b/c") == "GET /a/b/{y}"
    assert key(t, "GET", "/a/z/c") == "GET /a/{x}/c"
    assert key(t, "GET", "/q/b/c") == "GET /{p}/b/c"


def test_non_greedy_beats_greedy_and_longer_greedy_prefix_wins() -> None:
    t = table(["GET /{a}/{b}", "GET /x/{proxy+}", "GET /x/y/{rest+}"])
    assert key(t, "GET", "/x/z") == "GET /{a}/{b}"
    assert key(t, "GET", "/x/y/z") == "GET /x/y/{rest+}"
    assert key(t, "GET", "/x/q/z") == "GET /x/{proxy+}"


def test_specific_method_beats_any_and_any_catches_the_rest() -> None:
    t = table(["ANY /items", "GET /items", "ANY /items/{id}", "DELETE /items/{id}"])
    assert key(t, "GET", "/items") == "GET /items"
    assert key(t, "PUT", "/items") == "ANY /items"
    assert key(t, "DELETE", "/items/3") == "DELETE /items/{id}"
    assert key(t, "PATCH", "/items/3") == "ANY /items/{id}"
    # The path decides first: an exact path with ANY beats a variable with the method.
    t = table(["ANY /items/new", "GET /items/{id}"])
    assert key(t, "GET", "/items/new") == "ANY /items/new"


def test_default_route_catches_what_nothing_else_matches() -> None:
    t = table(["GET /pets", "$default"])
    assert key(t, "GET", "/pets") == "GET /pets"
    assert key(t, "POST", "/pets") == "$default"
    assert key(t, "GET", "/anything/else") == "$default"
    assert key(t, "GET", "/") == "$default"
    match = t.match("GET", "/x")
    assert match is not None and match.path_parameters is None


def test_no_match_without_default_route() -> None:
    t = table(["GET /pets"])
    assert t.match("POST", "/pets") is None
    assert t.match("GET", "/pets/1") is None
    assert t.match("GET", "/") is None


def test_root_route() -> None:
    t = table(["GET /", "GET /{p}"])
    assert key(t, "GET", "/") == "GET /"
    assert key(t, "GET", "") == "GET /"
    assert key(t, "GET", "/x") == "GET /{p}"


def test_path_parameters_are_decoded() -> None:
    t = table(["GET /users/{id}/files/{path+}"])
    match = t.match("GET", "/users/a%20b/files/dir%2Fx/r%C3%A9sum%C3%A9.pdf")
    assert match is not None
    assert match.path_parameters == {"id": "a b", "path": "dir/x/résumé.pdf"}
    assert match.integration is not None and match.integration.function_name == "f0"


def test_encoded_slash_stays_inside_a_segment() -> None:
    t = table(["GET /files/{name}"])
    match = t.match("GET", "/files/a%2Fb")
    assert match is not None and match.path_parameters == {"name": "a/b"}


def test_literals_match_decoded_segments() -> None:
    t = table(["GET /caf@"])
    assert key(t, "GET", "/caf%40") == "GET /caf@"


def test_trailing_slash_matches_the_same_route() -> None:
    t = table(["GET /pets", "GET /pets/{id}", "GET /files/{p+}"])
    assert key(t, "GET", "/pets/") == "GET /pets"
    match = t.match("GET", "/pets/7/")
    assert match is not None and match.path_parameters == {"id": "7"}
    match = t.match("GET", "/files/a/b/")
    assert match is not None and match.path_parameters == {"p": "a/b/"}
    assert t.match("GET", "/pets//") is None


def test_empty_segments_do_not_match_variables() -> None:
    t = table(["GET /a/{x}/b"])
    assert t.match("GET", "/a//b") is None


def test_named_stage_is_stripped_and_default_stage_takes_the_rest() -> None:
    t = table(["GET /pets", "GET /prod"], stages=("$default", "prod"))
    match = t.match("GET", "/prod/pets")
    assert match is not None and match.stage.stage_name == "prod"
    assert match.route.route_key == "GET /pets"
    # "/prod" alone addresses the prod stage's root, not the route GET /prod.
    assert t.match("GET", "/prod") is None
    match = t.match("GET", "/pets")
    assert match is not None and match.stage.stage_name == "$default"
    # An unknown first segment is a path on the $default stage.
    assert t.match("GET", "/dev/pets") is None


def test_named_stage_without_default_stage() -> None:
    t = table(["GET /pets"], stages=("prod",))
    assert key(t, "GET", "/prod/pets") == "GET /pets"
    assert t.match("GET", "/pets") is None
    assert t.match("GET", "/other/pets") is None


def test_no_stage_no_match() -> None:
    t = table(["$default"], stages=())
    assert t.match("GET", "/x") is None


def test_route_without_target_matches_with_no_integration() -> None:
    api = HttpApi(api_id="a1b2c3d4e5", name="t", created_date=NOW)
    route = ApiRoute(api_id=api.api_id, route_id="r", route_key="GET /x")
    stage = ApiStage(api.api_id, "$default", NOW, NOW)
    t = RouteTable(HttpApiDefinition(api, [route], [], [stage]))
    match = t.match("GET", "/x")
    assert match is not None and match.integration is None


def test_route_match_carries_route_settings() -> None:
    api = HttpApi(api_id="a1b2c3d4e5", name="t", created_date=NOW)
    route = ApiRoute(
        api_id=api.api_id,
        route_id="r",
        route_key="POST /x",
        api_key_required=True,
        authorization_type="AWS_IAM",
    )
    stage = ApiStage(api.api_id, "$default", NOW, NOW)
    t = RouteTable(HttpApiDefinition(api, [route], [], [stage]))
    match = t.match("POST", "/x")
    assert match is not None
    assert match.route.api_key_required and match.route.authorization_type == "AWS_IAM"
    assert t.api is api


@pytest.mark.parametrize(
    ("route_key", "problem"),
    [
        ("GET", "separated by one space"),
        ("get /pets", "the method must be one of"),
        ("FETCH /pets", "the method must be one of"),
        ("GET pets", "must start with '/'"),
        ("GET /pets/", "must not end with '/'"),
        ("GET /a//b", "empty segment"),
        ("GET /{proxy+}/x", "must be the last segment"),
        ("GET /a{b}", "must be a whole segment"),
        ("GET /{}", "needs a name"),
        ("GET /{a}/{a}", "appears twice"),
        ("GET /a b", "not allowed"),
        ("GET /a%20b", "not allowed"),
        ("$DEFAULT", "separated by one space"),
    ],
)
def test_bad_route_keys(route_key: str, problem: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_route_key(route_key)
    assert problem in info.value.message
    assert route_key in info.value.message


def test_route_key_shapes() -> None:
    assert parse_route_key("GET /pets/{id}").shape == parse_route_key("GET /pets/{name}").shape
    assert parse_route_key("GET /p/{id}").shape != parse_route_key("GET /p/{id+}").shape
    assert parse_route_key("$default").shape == "$default"
    assert parse_route_key("ANY /").shape == "ANY /"
