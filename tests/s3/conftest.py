"""Fixtures of the S3 tests: the store over a freshly migrated database (each backend),
and a live server per module (``SERVER_ENV`` as in tests/api) with boto3 clients."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig

from nimbus.s3.store import S3Store
from nimbus.store.database import Database
from tests.conftest import live_server
from tests.nimbus_process import NimbusProcess


@pytest.fixture
def store(database_url: str, tmp_path: Path) -> Iterator[S3Store]:
    db = Database(database_url)
    db.migrate()
    yield S3Store.open(db, tmp_path / "data", "us-east-1")
    db.dispose()


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NimbusProcess]:
    name = request.module.__name__.rsplit(".", 1)[-1]
    env = {"NIMBUS_ASYNC_WORKERS": "0", **getattr(request.module, "SERVER_ENV", {})}
    with live_server(tmp_path_factory.mktemp(name) / "data", env) as proc:
        yield proc


def s3_client(server: NimbusProcess, **config: Any) -> Any:
    """An S3 client of ``server`` (path style: its endpoint is an IP address)."""
    key, secret = config.pop("keys", ("test", "test"))
    return boto3.client(
        "s3",
        endpoint_url=config.pop("endpoint", server.endpoint),
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=BotoConfig(retries={"max_attempts": 0}, read_timeout=120, **config),
    )


@pytest.fixture
def s3(server: NimbusProcess) -> Any:
    return s3_client(server)


@pytest.fixture
def bucket(s3: Any) -> str:
    """A new, empty bucket of the test's own."""
    name = f"b-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name
