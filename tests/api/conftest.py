"""Fixtures of the control-plane tests, which drive a live server with boto3 as a user would.

A module's tests share one server, ``server``, started with the module's ``SERVER_ENV``
(NIMBUS_* settings; none if it has none): each test works on functions and APIs of its own.
A module whose tests need a server each (they reuse names, or change what the server holds
as a whole) sets ``SERVER_PER_TEST = True``: its clients (``lam``, ``gw``, ``apigw``) then
talk to ``nimbus``, a fresh server of the test's own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import HELLO, ROLE, live_server
from tests.nimbus_process import NimbusProcess


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NimbusProcess]:
    """The module's server, shared by its tests, with the module's ``SERVER_ENV``."""
    name = request.module.__name__.rsplit(".", 1)[-1]
    env = getattr(request.module, "SERVER_ENV", {})
    with live_server(tmp_path_factory.mktemp(name) / "data", env) as proc:
        yield proc


def server_of(request: pytest.FixtureRequest) -> NimbusProcess:
    """The test's server: its own ``nimbus`` if its module asks for a server per test, else
    the module's ``server``."""
    per_test = getattr(request.module, "SERVER_PER_TEST", False)
    return request.getfixturevalue("nimbus" if per_test else "server")


@pytest.fixture
def lam(request: pytest.FixtureRequest) -> Any:
    """A Lambda client of the test's server."""
    return server_of(request).client()


@pytest.fixture
def gw(request: pytest.FixtureRequest) -> Any:
    """An API Gateway v2 (HTTP APIs) client of the test's server."""
    return server_of(request).client("apigatewayv2")


@pytest.fixture
def apigw(request: pytest.FixtureRequest) -> Any:
    """An API Gateway (v1: API keys and usage plans) client of the test's server."""
    return server_of(request).client("apigateway")


@pytest.fixture
def fn(lam: Any) -> str:
    """A new function with version 1 and alias ``live`` pointing at it."""
    name = f"fn-{uuid.uuid4().hex[:8]}"
    lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": HELLO},
        Publish=True,
    )
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    return name


def error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    """(code, HTTP status, message) of a botocore ClientError."""
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Message"]
