"""Fixtures for test modules that share one server: import them into the module
(``from tests.api.module_server import error, fn, lam, server``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.conftest import HELLO, ROLE
from tests.nimbus_process import NimbusProcess


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NimbusProcess]:
    """One server for the module: every test works on functions of its own."""
    name = request.module.__name__.rsplit(".", 1)[-1]
    proc = NimbusProcess(Path(tmp_path_factory.mktemp(name)) / "data").start()
    yield proc
    proc.stop()


@pytest.fixture
def lam(server: NimbusProcess):  # type: ignore[no-untyped-def]
    return server.client()


@pytest.fixture
def fn(lam) -> str:  # type: ignore[no-untyped-def]
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
