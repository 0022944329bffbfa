"""[S zip escape] against a live nimbus, through boto3: the symlink chain that made the
root server write any file on the host is refused by every operation that stores code,
and packages with symlinks Lambda allows still deploy and run."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from pathlib import Path

import pytest

from tests.conftest import HELLO, ROLE, escape_chain, zip_of
from tests.nimbus_process import NimbusProcess

SERVER_PER_TEST = True  # lam talks to the test's own nimbus, whose stored trees it counts


def refused(lam):
    return pytest.raises(
        lam.exceptions.InvalidParameterValueException,
        match="inside 's', which the package makes a symlink",
    )


def stored_trees(nimbus: NimbusProcess) -> list[str]:
    return sorted(p.name for p in (nimbus.data_dir / "code" / "trees").iterdir())


def test_the_chain_is_refused_by_every_operation_that_stores_code(
    nimbus: NimbusProcess, lam, tmp_path: Path
) -> None:
    victim = tmp_path / "outside" / f"victim-{uuid.uuid4().hex[:8]}"
    victim.parent.mkdir()
    victim.write_text("untouched")
    attack = zip_of(escape_chain(str(victim)))
    with refused(lam):
        lam.create_function(FunctionName="f", Runtime="python3.12", Role=ROLE,
                            Handler="app.handler", Code={"ZipFile": attack})
    with refused(lam):
        lam.create_function(FunctionName="f", Runtime="python3.12", Role=ROLE,
                            Handler="app.handler", Code={"ZipFile": attack}, Publish=True)
    assert lam.list_functions()["Functions"] == []

    lam.create_function(FunctionName="g", Runtime="python3.12", Role=ROLE,
                        Handler="app.handler", Code={"ZipFile": HELLO})
    before = stored_trees(nimbus)
    for extra in ({}, {"Publish": True}, {"DryRun": True}):
        with refused(lam):
            lam.update_function_code(FunctionName="g", ZipFile=attack, **extra)
    sha = base64.b64encode(hashlib.sha256(HELLO).digest()).decode()
    assert lam.get_function_configuration(FunctionName="g")["CodeSha256"] == sha

    with refused(lam):
        lam.publish_layer_version(LayerName="l", Content={"ZipFile": attack})
    assert lam.list_layers()["Layers"] == []

    assert victim.read_text() == "untouched"
    assert stored_trees(nimbus) == before
    assert list((nimbus.data_dir / "code" / "tmp").iterdir()) == []


@pytest.mark.sandbox
def test_symlinks_lambda_allows_still_deploy_and_run(nimbus: NimbusProcess, lam) -> None:
    app = (
        "import os\n"
        "def handler(event, context):\n"
        "    return {'via_link': open('lib/current/data.txt').read(),\n"
        "            'tool': os.readlink('bin/tool'),\n"
        "            'layer': open('/opt/shared/current.txt').read()}\n"
    )
    code = zip_of([
        ("file", "app.py", app),
        ("file", "lib/v2/data.txt", "from v2"),
        ("link", "lib/current", "v2"),
        ("link", "bin/tool", "../lib/current/data.txt"),
    ])
    layer = zip_of(
        [("file", "shared/v1.txt", "layer v1"), ("link", "shared/current.txt", "v1.txt")]
    )
    arn = lam.publish_layer_version(LayerName="l", Content={"ZipFile": layer})["LayerVersionArn"]
    lam.create_function(FunctionName="links", Runtime="python3.12", Role=ROLE,
                        Handler="app.handler", Code={"ZipFile": code}, Layers=[arn])
    out = lam.invoke(FunctionName="links", Payload=b"{}")
    assert "FunctionError" not in out, out["Payload"].read()
    assert json.loads(out["Payload"].read()) == {
        "via_link": "from v2", "tool": "../lib/current/data.txt", "layer": "layer v1",
    }
