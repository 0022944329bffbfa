"""A user's whole journey through the control plane with boto3, on each backend,
surviving a restart of the server."""

from __future__ import annotations

import base64
import hashlib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import HELLO, ROLE, live_server, make_zip
from tests.nimbus_process import NimbusProcess
from tests.shared_database import shared_database_env


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[NimbusProcess]:
    """A server of the test's own on each backend."""
    shared = not database_url.startswith("sqlite")
    env = shared_database_env(database_url, tmp_path / "keys") if shared else {}
    with live_server(tmp_path / "data", env) as proc:
        yield proc


def test_function_lifecycle_survives_restart(server: NimbusProcess) -> None:
    lam = server.client()
    created = lam.create_function(
        FunctionName="orders",
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": HELLO},
        Description="first",
        Timeout=10,
        MemorySize=256,
        Environment={"Variables": {"STAGE": "dev"}},
        Tags={"team": "payments"},
        EphemeralStorage={"Size": 1024},
    )
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    sha_b64 = base64.b64encode(hashlib.sha256(HELLO).digest()).decode()
    assert created["CodeSha256"] == sha_b64 and created["CodeSize"] == len(HELLO)
    assert created["FunctionArn"] == "arn:aws:lambda:us-east-1:000000000000:function:orders"
    assert created["State"] == "Active" and created["Version"] == "$LATEST"
    assert created["LastModified"].endswith("+0000") and len(created["LastModified"]) == 28

    got = lam.get_function(FunctionName="orders")
    assert got["Tags"] == {"team": "payments"}
    downloaded = urllib.request.urlopen(got["Code"]["Location"]).read()
    assert base64.b64encode(hashlib.sha256(downloaded).digest()).decode() == sha_b64

    for i in range(4):
        lam.create_function(
            FunctionName=f"extra-{i}",
            Runtime="python3.12",
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": HELLO},
        )
    pages = list(lam.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 2}))
    assert len(pages) == 3
    assert sorted(f["FunctionName"] for p in pages for f in p["Functions"]) == sorted(
        ["orders", *[f"extra-{i}" for i in range(4)]]
    )

    v1 = lam.publish_version(FunctionName="orders", Description="v1")
    assert v1["Version"] == "1" and v1["FunctionArn"].endswith(":orders:1")
    new_code = make_zip({"app.py": "def handler(e, c):\n    return 2\n"})
    updated = lam.update_function_code(FunctionName="orders", ZipFile=new_code)
    assert updated["CodeSha256"] != sha_b64
    conf = lam.update_function_configuration(
        FunctionName="orders",
        Timeout=30,
        RevisionId=updated["RevisionId"],
        Environment={"Variables": {"STAGE": "prod"}},
    )
    assert conf["Timeout"] == 30 and conf["Environment"]["Variables"] == {"STAGE": "prod"}
    assert conf["MemorySize"] == 256  # untouched settings are kept
    v2 = lam.publish_version(FunctionName="orders")
    assert v2["Version"] == "2" and v2["Timeout"] == 30
    assert lam.get_function_configuration(FunctionName="orders", Qualifier="1")["Timeout"] == 10

    alias = lam.create_alias(
        FunctionName="orders",
        Name="live",
        FunctionVersion="1",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.1}},
    )
    assert alias["AliasArn"].endswith(":orders:live")
    by_alias = lam.get_function_configuration(FunctionName="orders:live")
    assert by_alias["Version"] == "1" and by_alias["FunctionArn"].endswith(":orders:live")

    lam.put_function_concurrency(FunctionName="orders", ReservedConcurrentExecutions=7)
    lam.tag_resource(Resource=created["FunctionArn"], Tags={"cost-center": "42"})
    lam.untag_resource(Resource=created["FunctionArn"], TagKeys=["team"])
    lam.delete_function(FunctionName="extra-0")

    server.restart()
    lam = server.client()
    assert lam.get_function_concurrency(FunctionName="orders")["ReservedConcurrentExecutions"] == 7
    assert lam.list_tags(Resource=created["FunctionArn"])["Tags"] == {"cost-center": "42"}
    versions = lam.list_versions_by_function(FunctionName="orders")["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1", "2"]
    alias = lam.get_alias(FunctionName="orders", Name="live")
    assert alias["RoutingConfig"]["AdditionalVersionWeights"] == {"2": 0.1}
    got = lam.get_function(FunctionName="orders", Qualifier="2")
    assert got["Concurrency"]["ReservedConcurrentExecutions"] == 7
    downloaded = urllib.request.urlopen(got["Code"]["Location"]).read()
    assert downloaded == new_code
    names = {f["FunctionName"] for f in lam.list_functions()["Functions"]}
    assert names == {"orders", "extra-1", "extra-2", "extra-3"}
    settings = lam.get_account_settings()
    assert settings["AccountUsage"]["FunctionCount"] == 4
    assert settings["AccountLimit"]["UnreservedConcurrentExecutions"] == 993

    lam.delete_alias(FunctionName="orders", Name="live")
    lam.delete_function(FunctionName="orders", Qualifier="1")
    versions = lam.list_versions_by_function(FunctionName="orders")["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "2"]
    lam.delete_function_concurrency(FunctionName="orders")
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName="orders")
    lam.delete_function(FunctionName="orders")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName="orders")


@pytest.mark.postgres
def test_health_follows_the_store(postgres_admin: sa.Engine, tmp_path: Path) -> None:
    """/health says ok only while the store answers with nimbus' schema."""
    import httpx

    from tests.conftest import postgres_schema_url

    urls = postgres_schema_url(postgres_admin)
    url = next(urls)
    try:
        with live_server(tmp_path / "data", shared_database_env(url, tmp_path)) as proc:
            ok = httpx.get(f"{proc.endpoint}/health")
            assert ok.status_code == 200 and ok.json() == {"status": "ok", "store": "postgresql"}
            schema = url.rsplit("search_path%3D", 1)[1]
            with postgres_admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
            down = httpx.get(f"{proc.endpoint}/health")
            assert down.status_code == 503 and down.json()["status"] == "unavailable"
            with postgres_admin.begin() as conn:  # let the fixture's cleanup drop it again
                conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    finally:
        next(urls, None)
