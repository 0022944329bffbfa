"""Nodes sharing a PostgreSQL database share the key environment variables are sealed
with: without ``env_key_file`` each node would generate a key of its own and could not
read what another node stored, so nimbus refuses to start; with it, a function's
variables set through one node read the same through another."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import HELLO, ROLE, live_server, postgres_schema_url
from tests.nimbus_process import NimbusProcess
from tests.shared_database import shared_database_env

pytestmark = pytest.mark.postgres


def test_a_shared_database_without_a_configured_key_refuses_to_start(
    postgres_admin: sa.Engine, tmp_path: Path
) -> None:
    urls = postgres_schema_url(postgres_admin)
    try:
        server = NimbusProcess(tmp_path / "data", env={"NIMBUS_DATABASE_URL": next(urls)})
        with pytest.raises(RuntimeError, match="nimbus did not start") as exc:
            server.start()
        said = " ".join(str(exc.value).split())
        assert "set env_key_file (NIMBUS_ENV_KEY_FILE)" in said
        assert "the same on every node" in said
        assert not (tmp_path / "data" / "env.key").exists()  # no per-node key was made
    finally:
        next(urls, None)


def test_nodes_sharing_the_key_read_each_others_variables(
    postgres_admin: sa.Engine, tmp_path: Path
) -> None:
    urls = postgres_schema_url(postgres_admin)
    try:
        url = next(urls)
        keys = tmp_path / "keys"
        with (
            live_server(tmp_path / "one", shared_database_env(url, keys)) as one,
            live_server(tmp_path / "two", shared_database_env(url, keys)) as two,
        ):
            one.client().create_function(
                FunctionName="shared", Runtime="python3.12", Role=ROLE,
                Handler="app.handler", Code={"ZipFile": HELLO},
                Environment={"Variables": {"SECRET": "s3cr3t"}},
            )  # fmt: skip
            got = two.client().get_function_configuration(FunctionName="shared")
            assert got["Environment"]["Variables"] == {"SECRET": "s3cr3t"}
    finally:
        next(urls, None)
