"""A live nimbus with api_auth = "sigv4": boto3, the AWS CLI and the nimbus CLI sign and
get in; unsigned, unknown-key and wrong-secret requests get Lambda's 403s."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from tests.conftest import ROLE, admin_keys, generates_credentials, live_server, make_zip
from tests.nimbus_process import NimbusProcess

SERVER_ENV = {"NIMBUS_API_AUTH": "sigv4"}
HELLO = make_zip({"app.py": "def handler(event, context):\n    return {'got': event}\n"})


def keys(server: NimbusProcess) -> tuple[str, str]:
    return admin_keys(server)


def configured(server: NimbusProcess) -> dict[str, str]:
    """The admin pair the server was configured with (none: it generated its own), as the
    nimbus configuration of a CLI on its host would hold it."""
    names = ("NIMBUS_ACCESS_KEY_ID", "NIMBUS_SECRET_ACCESS_KEY")
    return {name: server.env[name] for name in names if name in server.env}


def client(server: NimbusProcess, key: str, secret: str, region: str = "us-east-1") -> Any:
    return boto3.client(
        "lambda",
        endpoint_url=server.endpoint,
        region_name=region,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=BotoConfig(retries={"max_attempts": 0}, read_timeout=120),
    )


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any AWS or nimbus keys, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "NIMBUS_"))}
    return {**env, **extra}


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, env=env, cwd=cwd, timeout=120, check=False
    )


def test_signed_boto3_gets_in(server: NimbusProcess) -> None:
    lam = client(server, *keys(server))
    lam.create_function(
        FunctionName="signed",
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": HELLO},
    )
    names = [f["FunctionName"] for f in lam.list_functions()["Functions"]]
    assert "signed" in names


def test_large_body_is_replayed_whole(server: NimbusProcess) -> None:
    # ~3 MB of incompressible code: arrives in many chunks, hashed, then replayed.
    blob = random.Random(7).randbytes(3 * 1024 * 1024)
    code = make_zip({"app.py": "def handler(e, c):\n    return 1\n", "blob.bin": blob})
    lam = client(server, *keys(server))
    created = lam.create_function(
        FunctionName="big", Runtime="python3.12", Role=ROLE, Handler="app.handler",
        Code={"ZipFile": code},
    )  # fmt: skip
    assert created["CodeSize"] == len(code)


def test_wrong_secret_unknown_key_and_region(server: NimbusProcess) -> None:
    key, secret = keys(server)
    with pytest.raises(ClientError) as wrong:
        client(server, key, secret + "x").list_functions()
    assert wrong.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert wrong.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "signature we calculated does not match" in str(wrong.value)

    with pytest.raises(ClientError) as unknown:
        client(server, "AKIAUNKNOWN", secret).list_functions()
    assert unknown.value.response["Error"]["Code"] == "UnrecognizedClientException"
    assert "security token included in the request is invalid" in str(unknown.value)

    with pytest.raises(ClientError) as region:
        client(server, key, secret, region="eu-west-1").list_functions()
    assert region.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert "'us-east-1'" in str(region.value)

    # Failures of a request with a body (read and dropped) still answer cleanly.
    with pytest.raises(ClientError) as upload:
        client(server, key, "nope").create_function(
            FunctionName="x", Runtime="python3.12", Role=ROLE, Handler="app.handler",
            Code={"ZipFile": HELLO},
        )  # fmt: skip
    assert upload.value.response["Error"]["Code"] == "InvalidSignatureException"


def test_code_location_downloads_without_signing(server: NimbusProcess) -> None:
    """GetFunction's Code.Location is presigned, as Lambda's S3 link is: any HTTP client
    follows it; a link with a changed signature, or another /_nimbus path, is refused."""
    lam = client(server, *keys(server))
    lam.create_function(
        FunctionName="download",
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": HELLO},
    )
    location = lam.get_function(FunctionName="download")["Code"]["Location"]
    got = httpx.get(location)
    assert got.status_code == 200 and got.content == HELLO
    forged = httpx.get(location[:-4] + ("0000" if not location.endswith("0000") else "1111"))
    assert forged.status_code == 403
    assert forged.headers["x-amzn-errortype"] == "AccessDeniedException"
    other = httpx.get(f"{server.endpoint}/_nimbus/queue")
    assert other.headers["x-amzn-errortype"] == "MissingAuthenticationTokenException"


def test_unsigned_is_refused_but_health_is_open(server: NimbusProcess) -> None:
    answer = httpx.get(f"{server.endpoint}/2015-03-31/functions/")
    assert answer.status_code == 403
    assert answer.headers["x-amzn-errortype"] == "MissingAuthenticationTokenException"
    assert answer.json()["message"] == "Missing Authentication Token"
    # Unknown paths are refused too: nothing is revealed to an unsigned caller.
    assert httpx.post(f"{server.endpoint}/_nimbus/dead-letters/1/redrive").status_code == 403
    assert httpx.get(f"{server.endpoint}/nope").status_code == 403
    health = httpx.get(f"{server.endpoint}/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    # The data plane checks each function URL's own AuthType, not this middleware.
    url = httpx.get(f"{server.endpoint}/lambda-url/nosuchurlid/")
    assert url.headers.get("x-amzn-errortype") != "MissingAuthenticationTokenException"


@generates_credentials
def test_nimbus_credentials_prints_working_keys(server: NimbusProcess, tmp_path: Path) -> None:
    printed = run(
        [sys.executable, "-m", "nimbus", "credentials", "--data-dir", str(server.data_dir)],
        clean_env(),
        tmp_path,
    )
    assert printed.returncode == 0, printed.stderr
    exported = dict(
        line.removeprefix("export ").split("=", 1) for line in printed.stdout.splitlines()
    )
    assert set(exported) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"}
    assert (exported["AWS_ACCESS_KEY_ID"], exported["AWS_SECRET_ACCESS_KEY"]) == keys(server)

    # What `eval "$(nimbus credentials)"` gives a shell: the AWS CLI works with it.
    shell = f'eval "$({sys.executable} -m nimbus credentials --data-dir {server.data_dir})" && '
    shell += f"{Path(sys.executable).parent / 'aws'} lambda list-functions "
    shell += f"--endpoint-url {server.endpoint} --output json"
    listed = subprocess.run(
        ["sh", "-c", shell], capture_output=True, text=True, env=clean_env(), cwd=tmp_path,
        timeout=120, check=False,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert "Functions" in json.loads(listed.stdout)


@generates_credentials
def test_nimbus_cli_signs(server: NimbusProcess, tmp_path: Path) -> None:
    client(server, *keys(server)).create_function(
        FunctionName="for-cli", Runtime="python3.12", Role=ROLE, Handler="app.handler",
        Code={"ZipFile": HELLO},
    )  # fmt: skip
    ls = [sys.executable, "-m", "nimbus", "ls"]
    endpoint = {"NIMBUS_ENDPOINT": server.endpoint}

    # Keys from the server's data dir...
    by_dir = run(ls, clean_env(**endpoint, NIMBUS_DATA_DIR=str(server.data_dir)), tmp_path)
    assert by_dir.returncode == 0, by_dir.stderr
    assert "for-cli" in by_dir.stdout
    # ...or from the standard AWS variables...
    key, secret = keys(server)
    by_env = run(
        ls, clean_env(**endpoint, AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret), tmp_path
    )
    assert by_env.returncode == 0, by_env.stderr
    assert "for-cli" in by_env.stdout
    # ...and without any, a clear refusal.
    unsigned = run(ls, clean_env(**endpoint), tmp_path)
    assert unsigned.returncode == 2  # refused: the caller must sign (3 would be unreachable)
    assert "MissingAuthenticationTokenException" in unsigned.stderr
    assert "nimbus credentials" in unsigned.stderr


@pytest.mark.sandbox
def test_signed_invoke(server: NimbusProcess, tmp_path: Path) -> None:
    lam = client(server, *keys(server))
    lam.create_function(
        FunctionName="inv", Runtime="python3.12", Role=ROLE, Handler="app.handler",
        Code={"ZipFile": HELLO},
    )  # fmt: skip
    lam.get_waiter("function_active_v2").wait(FunctionName="inv")
    answer = lam.invoke(FunctionName="inv", Payload=json.dumps({"a": "ü" * 1000}).encode())
    assert json.loads(answer["Payload"].read()) == {"got": {"a": "ü" * 1000}}

    invoked = run(
        [sys.executable, "-m", "nimbus", "invoke", "inv", "-p", '{"b": 2}'],
        clean_env(NIMBUS_ENDPOINT=server.endpoint, NIMBUS_DATA_DIR=str(server.data_dir),
                  **configured(server)),
        tmp_path,
    )  # fmt: skip
    assert invoked.returncode == 0, invoked.stderr
    assert json.loads(invoked.stdout) == {"got": {"b": 2}}


def test_configured_keys(tmp_path: Path) -> None:
    env = {
        "NIMBUS_API_AUTH": "sigv4",
        "NIMBUS_ACCESS_KEY_ID": "AKIACONFIGURED",
        "NIMBUS_SECRET_ACCESS_KEY": "configured-secret",
    }
    with live_server(tmp_path / "data", env) as process:
        assert "configured-secret" not in "".join(process.output)
        listed = client(process, "AKIACONFIGURED", "configured-secret").list_functions()
        assert listed["Functions"] == []
        assert not (tmp_path / "data" / "credentials.json").exists()
        with pytest.raises(ClientError) as caught:
            client(process, "AKIACONFIGURED", "other").list_functions()
        assert caught.value.response["Error"]["Code"] == "InvalidSignatureException"
