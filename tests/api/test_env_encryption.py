"""Environment variables encrypted at rest, end to end: a live nimbus stores them sealed
(the database files never hold the plaintext), GetFunctionConfiguration and the function
itself see them as set, rows of an older nimbus are sealed at start, a configured key
file is used instead of the generated one, and a wrong key is refused in Lambda's words."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from botocore.exceptions import ClientError

from tests.conftest import ROLE, live_server, make_zip, only_embedded, python_runtime, store_url
from tests.nimbus_process import NimbusProcess

pytestmark = pytest.mark.sandbox

SECRET = "hunter2-do-not-store-" + base64.b32encode(os.urandom(10)).decode()
CODE = make_zip(
    {"app.py": "import os\ndef handler(event, context):\n    return os.environ['SECRET']\n"}
)


def create(lam: Any, name: str) -> None:
    lam.create_function(
        FunctionName=name,
        Runtime=python_runtime(),
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": CODE},
        Environment={"Variables": {"SECRET": SECRET, "STAGE": "prod"}},
    )
    lam.get_waiter("function_active_v2").wait(FunctionName=name)


# The stored rows, on whichever database the server keeps them (SQLite or PostgreSQL).
VERSIONS = sa.table("function_versions", sa.column("function_name"), sa.column("version"),
                    sa.column("environment", sa.JSON))


def stored_environment(server: NimbusProcess, name: str) -> list[Any]:
    query = sa.select(VERSIONS.c.environment).where(VERSIONS.c.function_name == name)
    engine = sa.create_engine(store_url(server))
    try:
        with engine.connect() as conn:
            return list(conn.scalars(query.order_by(VERSIONS.c.version)))
    finally:
        engine.dispose()


def database_bytes(data: Path) -> bytes:
    return b"".join(p.read_bytes() for p in data.glob("nimbus.db*"))


@only_embedded
def test_sealed_at_rest_plain_to_callers(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with live_server(data) as server:
        lam = server.client()
        create(lam, "vault")
        lam.publish_version(FunctionName="vault")
        config = lam.get_function_configuration(FunctionName="vault")
        assert config["Environment"]["Variables"] == {"SECRET": SECRET, "STAGE": "prod"}
        published = lam.get_function(FunctionName="vault", Qualifier="1")["Configuration"]
        assert published["Environment"]["Variables"]["SECRET"] == SECRET
        got = lam.invoke(FunctionName="vault", Qualifier="1")["Payload"].read()
        assert json.loads(got) == SECRET
        assert SECRET.encode() not in database_bytes(data)
        for environment in stored_environment(server, "vault"):
            assert list(environment) == ["nimbus:sealed"]
        key = data / "env.key"
        assert key.stat().st_mode & 0o777 == 0o600
        assert len(base64.b64decode(key.read_text())) == 32


def test_older_rows_are_sealed_at_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with live_server(data) as server:
        create(server.client(), "legacy")
    # What a nimbus before encryption at rest left: the variables in plaintext.
    engine = sa.create_engine(store_url(server))
    try:
        with engine.begin() as conn:
            conn.execute(sa.update(VERSIONS).where(VERSIONS.c.function_name == "legacy")
                         .values(environment={"SECRET": SECRET}))
    finally:
        engine.dispose()
    assert stored_environment(server, "legacy") == [{"SECRET": SECRET}]
    with live_server(data) as server:
        assert list(stored_environment(server, "legacy")[0]) == ["nimbus:sealed"]
        config = server.client().get_function_configuration(FunctionName="legacy")
        assert config["Environment"]["Variables"] == {"SECRET": SECRET}


def test_configured_key_and_wrong_key(tmp_path: Path) -> None:
    data = tmp_path / "data"
    key_file = tmp_path / "env-key"
    key_file.write_text(base64.b64encode(os.urandom(32)).decode())
    env = {"NIMBUS_ENV_KEY_FILE": str(key_file)}
    with live_server(data, env) as server:
        create(server.client(), "keyed")
        assert not (data / "env.key").exists()  # the configured key, none generated
    # The same database under another key: the variables cannot be opened.
    other = tmp_path / "other-key"
    other.write_text(base64.b64encode(os.urandom(32)).decode())
    with live_server(data, {"NIMBUS_ENV_KEY_FILE": str(other)}) as server:
        with pytest.raises(ClientError) as exc:
            server.client().get_function_configuration(FunctionName="keyed")
        error = exc.value.response
        assert error["Error"]["Code"] == "KMSAccessDeniedException"
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 502
        assert "Set env_key_file" in error["Error"]["Message"]
    with live_server(data, env) as server:  # the right key again: all there
        config = server.client().get_function_configuration(FunctionName="keyed")
        assert config["Environment"]["Variables"]["SECRET"] == SECRET


def test_bad_key_file_stops_the_server(tmp_path: Path) -> None:
    key_file = tmp_path / "env-key"
    key_file.write_text("not a key")
    env = {"NIMBUS_ENV_KEY_FILE": str(key_file)}
    with (
        pytest.raises(RuntimeError, match="must hold 32 random bytes"),
        live_server(tmp_path / "data", env),
    ):
        pass
