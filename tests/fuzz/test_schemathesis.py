"""schemathesis against a live nimbus, from the OpenAPI document nimbus serves about itself
(``GET /_nimbus/openapi.json``): every Lambda operation and nimbus endpoint, with valid and
invalid inputs derived from botocore's Lambda model.

The properties are the house rules: no request gets a 5xx, and every error answer is one
botocore can read (Lambda's shape: a JSON body with a message, its type in
``X-Amzn-ErrorType``), so an SDK raises a modeled ClientError instead of choking.

The run is bounded (a fixed number of examples per operation and mode) and derandomized:
the same code sends the same requests, so a failure reproduces with the same command.
Each operation is one test: its inputs in three modes, positive (fitting the model),
negative (breaking it), and positive against resources that exist (function ``fuzz``, its
alias ``live``, layer ``fuzz`` version 1), so requests also reach past "not found".
Every failing request is collected and reported, not shrunk: shrinking against a live
server is slow, and the list says more than one minimal example.

schemathesis is driven through its Python API (``APIOperation.as_strategy``) under
hypothesis' own ``@given``: its pytest plugin does not work with pytest 9.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import botocore.session
import httpx
import pytest
import schemathesis
from botocore.parsers import create_parser
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from nimbus import api
from nimbus.api.openapi import describe
from tests.conftest import HELLO, ROLE, live_server
from tests.nimbus_process import NimbusProcess

# Examples per operation and mode: ~70 operations x 3 modes stay within a couple of minutes.
# NIMBUS_FUZZ_EXAMPLES=200 digs deeper (still derandomized: the same number, the same run).
EXAMPLES = int(os.environ.get("NIMBUS_FUZZ_EXAMPLES", "10"))
# Path parameters naming what exists.
EXISTING = {"name": "fuzz", "alias": "live", "version": "1"}

LAMBDA = botocore.session.get_session().get_service_model("lambda")
REST_JSON = create_parser("rest-json")

# The operations, known without a server: the document is generated from the routes (the
# server's are the API's and /health).
OPERATIONS = [
    pytest.param(path, method, id=operation["operationId"])
    for path, operations in describe(api.routes)["paths"].items()
    for method, operation in operations.items()
] + [pytest.param("/health", "get", id="get_health")]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NimbusProcess]:
    with live_server(tmp_path_factory.mktemp("schemathesis") / "data") as proc:
        lam = proc.client()
        lam.create_function(
            FunctionName="fuzz",
            Runtime="python3.12",
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": HELLO},
            Publish=True,
        )
        lam.create_alias(FunctionName="fuzz", Name="live", FunctionVersion="1")
        lam.publish_layer_version(LayerName="fuzz", Content={"ZipFile": HELLO})
        yield proc


@pytest.fixture(scope="module")
def document(server: NimbusProcess) -> dict[str, Any]:
    answer = httpx.get(f"{server.endpoint}/_nimbus/openapi.json", timeout=30)
    assert answer.status_code == 200, answer.text
    doc: dict[str, Any] = answer.json()
    return doc


@pytest.fixture(scope="module")
def api_schema(server: NimbusProcess, document: dict[str, Any]) -> Any:
    schema = schemathesis.openapi.from_dict(document)
    schema.config.update(base_url=server.endpoint)
    return schema


def botocore_cannot_read(operation_id: str, status: int, headers: Any, body: bytes) -> str | None:
    """Why botocore could not read this error answer, or None if it can: it parses a code
    from it, and a Lambda operation's is in Lambda's shape (JSON with a message, its type
    in X-Amzn-ErrorType)."""
    flat = {k.lower(): v for k, v in headers.items()}
    shape = None
    # 431 comes from the HTTP layer, before any route is known (an over-long URL, which
    # negative cases make): in no service's shape, but botocore reads it (code "431").
    if operation_id in LAMBDA.operation_names and status != 431:
        if "x-amzn-errortype" not in flat:
            return "no X-Amzn-ErrorType header"
        try:
            parsed_body = json.loads(body)
        except ValueError:
            return "the body is not JSON"
        if not isinstance(parsed_body, dict):
            return "the body is not a JSON object"
        # Lambda's own 403 for another account's ARN carries "Message": null (recorded).
        message = parsed_body.get("message", parsed_body.get("Message", ""))
        if message is not None and (not isinstance(message, str) or not message):
            return "no message in the body"
        shape = LAMBDA.operation_model(operation_id).output_shape
    parsed = REST_JSON.parse({"status_code": status, "headers": flat, "body": body}, shape)
    if not parsed.get("Error", {}).get("Code"):
        return "botocore reads no error code"
    return None


def modes(operation: Any) -> list[tuple[GenerationMode, dict[str, str] | None]]:
    """(mode, fixed path parameters) to run ``operation`` in. Deletes never run against
    the shared resources: the other operations need them."""
    found: list[tuple[GenerationMode, dict[str, str] | None]] = [
        (GenerationMode.POSITIVE, None),
        (GenerationMode.NEGATIVE, None),
    ]
    names = {p.name for p in operation.path_parameters}
    if names and names <= EXISTING.keys() and operation.method.upper() != "DELETE":
        found.append((GenerationMode.POSITIVE, {n: EXISTING[n] for n in names}))
    return found


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_no_5xx_and_every_error_is_one_botocore_reads(
    api_schema: Any, server: NimbusProcess, path: str, method: str
) -> None:
    operation = api_schema[path][method.upper()]
    operation_id = operation.definition.raw["operationId"]
    failures: list[str] = []

    def check(case: Any) -> None:
        response = case.call(timeout=60)
        status = response.status_code
        problem = None
        if status >= 500:
            problem = f"{status}"
        elif status >= 400:
            problem = botocore_cannot_read(operation_id, status, response.headers, response.content)
        if problem:
            failures.append(
                f"{problem}: {case.as_curl_command()}\n  -> {status} {response.content[:300]!r}"
            )

    for mode, fixed in modes(operation):
        strategy = operation.as_strategy(generation_mode=mode, path_parameters=fixed)

        @given(case=strategy)
        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            check(case)

        try:
            run()
        except Unsatisfiable:
            if mode is GenerationMode.POSITIVE:
                raise
            # Nothing to break: the operation takes no input a negative case could spoil.
    assert not failures, f"{len(failures)} bad answers:\n" + "\n".join(failures[:10])


def test_the_document_describes_lambda_from_its_model(document: dict[str, Any]) -> None:
    create = document["paths"]["/2015-03-31/functions"]["post"]
    assert create["operationId"] == "CreateFunction"
    body = create["requestBody"]["content"]["application/json"]["schema"]
    assert {"FunctionName", "Role", "Code"} <= set(body["required"])
    invoke = document["paths"]["/2015-03-31/functions/{name}/invocations"]["post"]
    where = {(p["in"], p["name"]) for p in invoke["parameters"]}
    assert {("path", "name"), ("header", "X-Amz-Invocation-Type"), ("query", "Qualifier")} <= where
    assert "application/octet-stream" in invoke["requestBody"]["content"]
    assert "get" in document["paths"]["/_nimbus/dead-letters"]
    assert "get" in document["paths"]["/health"]
    assert not any(p.startswith(("/v2/apis", "/s3", "/usageplans")) for p in document["paths"])


def test_the_check_tells_readable_errors_from_unreadable_ones() -> None:
    lambda_error = {"X-Amzn-ErrorType": "ResourceNotFoundException"}
    body = b'{"Type": "User", "Message": "Function not found: x"}'
    assert botocore_cannot_read("GetFunction", 404, lambda_error, body) is None
    assert botocore_cannot_read("GetFunction", 404, {}, body) == "no X-Amzn-ErrorType header"
    assert botocore_cannot_read("GetFunction", 400, lambda_error, b"oops") == (
        "the body is not JSON"
    )
    assert botocore_cannot_read("GetFunction", 400, lambda_error, b"{}") == (
        "no message in the body"
    )
    # nimbus's own endpoints: whatever botocore reads a code from.
    assert botocore_cannot_read("get_nimbus_queue", 400, lambda_error, body) is None
