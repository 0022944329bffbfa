"""Layers through boto3 and the AWS CLI against a live server: publish, read, list,
delete, and functions that import from them."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from typing import Any

import httpx
import pytest

from tests.conftest import ROLE, aws_json, live_server, make_zip

SERVER_PER_TEST = True  # lam talks to the test's own nimbus: the tests reuse names
SHARED_A = make_zip({"python/shared.py": "WHO = 'a'\n", "python/only_a.py": "X = 1\n"})
SHARED_B = make_zip({"python/shared.py": "WHO = 'b'\n"})
APP = "import shared, only_a\ndef handler(event, context):\n    return shared.WHO\n"


def publish(lam: Any, name: str, zip_bytes: bytes, **extra: Any) -> dict[str, Any]:
    return lam.publish_layer_version(LayerName=name, Content={"ZipFile": zip_bytes}, **extra)


def test_publish_read_list_and_delete(lam) -> None:
    v1 = publish(lam, "shared", SHARED_A, Description="first", CompatibleRuntimes=["python3.12"],
                 LicenseInfo="MIT")
    arn = "arn:aws:lambda:us-east-1:000000000000:layer:shared"
    assert (v1["LayerArn"], v1["LayerVersionArn"], v1["Version"]) == (arn, arn + ":1", 1)
    assert v1["Content"]["CodeSha256"] == base64.b64encode(
        hashlib.sha256(SHARED_A).digest()
    ).decode()
    assert v1["Content"]["CodeSize"] == len(SHARED_A)
    assert httpx.get(v1["Content"]["Location"]).content == SHARED_A  # as Lambda's S3 link
    assert (v1["Description"], v1["LicenseInfo"]) == ("first", "MIT")
    v2 = publish(lam, "shared", SHARED_B, CompatibleRuntimes=["python3.11"],
                 CompatibleArchitectures=["x86_64"])
    assert v2["Version"] == 2

    got = lam.get_layer_version(LayerName="shared", VersionNumber=1)
    assert got["LayerVersionArn"] == arn + ":1" and got["CompatibleRuntimes"] == ["python3.12"]
    by_arn = lam.get_layer_version_by_arn(Arn=arn + ":2")
    assert by_arn["Content"]["CodeSize"] == len(SHARED_B)
    assert lam.get_layer_version(LayerName=arn, VersionNumber=2)["Version"] == 2

    versions = lam.list_layer_versions(LayerName="shared")["LayerVersions"]
    assert [v["Version"] for v in versions] == [2, 1]
    page = lam.list_layer_versions(LayerName="shared", MaxItems=1)
    rest = lam.list_layer_versions(LayerName="shared", Marker=page["NextMarker"])
    assert [v["Version"] for v in page["LayerVersions"] + rest["LayerVersions"]] == [2, 1]
    py312 = lam.list_layer_versions(LayerName="shared", CompatibleRuntime="python3.12")
    assert [v["Version"] for v in py312["LayerVersions"]] == [1]

    publish(lam, "other", SHARED_B)
    listed = lam.list_layers()["Layers"]
    assert [(x["LayerName"], x["LatestMatchingVersion"]["Version"]) for x in listed] == [
        ("other", 1),
        ("shared", 2),
    ]
    matching = lam.list_layers(CompatibleRuntime="python3.12")["Layers"]
    assert [(x["LayerName"], x["LatestMatchingVersion"]["Version"]) for x in matching] == [
        ("shared", 1)
    ]
    first = lam.list_layers(MaxItems=1)
    assert [x["LayerName"] for x in first["Layers"]] == ["other"]
    assert [x["LayerName"] for x in lam.list_layers(Marker=first["NextMarker"])["Layers"]] == [
        "shared"
    ]

    lam.delete_layer_version(LayerName="shared", VersionNumber=2)
    lam.delete_layer_version(LayerName="shared", VersionNumber=2)  # gone already: fine
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_layer_version(LayerName="shared", VersionNumber=2)
    assert publish(lam, "shared", SHARED_B)["Version"] == 3  # numbers are never reused


def test_bad_requests_say_what_to_fix(lam) -> None:
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="zip"):
        publish(lam, "broken", b"not a zip")
    with pytest.raises(lam.exceptions.ClientError, match="satisfy enum value set"):
        publish(lam, "broken", SHARED_A, CompatibleRuntimes=["python9"])
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="NoSuchBucket"):
        lam.publish_layer_version(LayerName="broken", Content={"S3Bucket": "bucket", "S3Key": "k"})
    assert lam.list_layers()["Layers"] == []  # nothing half-stored
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_layer_version_by_arn(Arn="arn:aws:lambda:eu-west-1:000000000000:layer:x:1")

    arn = publish(lam, "shared", SHARED_A)["LayerVersionArn"]
    missing = arn[:-1] + "7"
    create = {"FunctionName": "fn", "Runtime": "python3.12", "Role": ROLE,
              "Handler": "app.handler", "Code": {"ZipFile": make_zip({"app.py": APP})}}
    with pytest.raises(lam.exceptions.InvalidParameterValueException,
                       match=f"Layer version {missing} does not exist"):
        lam.create_function(**create, Layers=[missing])
    second = publish(lam, "shared", SHARED_B)["LayerVersionArn"]
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="same layer"):
        lam.create_function(**create, Layers=[arn, second])
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName="fn")  # nothing half-created


@pytest.mark.sandbox
def test_functions_import_from_their_layers(lam) -> None:
    a = publish(lam, "a", SHARED_A)
    b = publish(lam, "b", SHARED_B)
    lam.create_function(FunctionName="fn", Runtime="python3.12", Role=ROLE,
                        Handler="app.handler", Code={"ZipFile": make_zip({"app.py": APP})},
                        Layers=[a["LayerVersionArn"], b["LayerVersionArn"]])
    assert lam.invoke(FunctionName="fn")["Payload"].read() == b'"b"'  # the later layer wins
    layers = lam.get_function(FunctionName="fn")["Configuration"]["Layers"]
    assert layers == [
        {"Arn": a["LayerVersionArn"], "CodeSize": len(SHARED_A)},
        {"Arn": b["LayerVersionArn"], "CodeSize": len(SHARED_B)},
    ]
    lam.update_function_configuration(
        FunctionName="fn", Layers=[b["LayerVersionArn"], a["LayerVersionArn"]]
    )
    assert lam.invoke(FunctionName="fn")["Payload"].read() == b'"a"'

    # Deleting a layer version does not take it from a function that uses it (a new
    # environment, started after the deletion, still finds it).
    lam.delete_layer_version(LayerName="a", VersionNumber=1)
    lam.update_function_configuration(FunctionName="fn", Environment={"Variables": {"ROUND": "2"}})
    assert lam.invoke(FunctionName="fn")["Payload"].read() == b'"a"'
    published = lam.publish_version(FunctionName="fn")
    assert published["Layers"][1]["Arn"] == a["LayerVersionArn"]


def test_the_aws_cli_publishes_and_lists_layers(nimbus, tmp_path) -> None:
    (tmp_path / "layer.zip").write_bytes(SHARED_A)
    published = aws_json(nimbus.endpoint, "lambda", "publish-layer-version", "--layer-name",
                         "from-cli", "--zip-file", f"fileb://{tmp_path / 'layer.zip'}")
    assert published["Version"] == 1
    listed = aws_json(nimbus.endpoint, "lambda", "list-layers")
    assert [x["LayerName"] for x in listed["Layers"]] == ["from-cli"]


def test_layer_permissions_are_kept_and_reported(lam) -> None:
    arn = publish(lam, "shared", SHARED_A)["LayerVersionArn"]
    with pytest.raises(lam.exceptions.ResourceNotFoundException, match="No policy"):
        lam.get_layer_version_policy(LayerName="shared", VersionNumber=1)
    added = lam.add_layer_version_permission(
        LayerName="shared", VersionNumber=1, StatementId="org", Action="lambda:GetLayerVersion",
        Principal="*", OrganizationId="o-abcdefghij",
    )
    assert json.loads(added["Statement"]) == {
        "Sid": "org", "Effect": "Allow", "Principal": "*", "Action": "lambda:GetLayerVersion",
        "Resource": arn, "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-abcdefghij"}},
    }
    with pytest.raises(lam.exceptions.PreconditionFailedException):
        lam.add_layer_version_permission(
            LayerName="shared", VersionNumber=1, StatementId="acct",
            Action="lambda:GetLayerVersion", Principal="123456789012", RevisionId="stale",
        )
    lam.add_layer_version_permission(
        LayerName="shared", VersionNumber=1, StatementId="acct", Action="lambda:GetLayerVersion",
        Principal="123456789012", RevisionId=added["RevisionId"],
    )
    with pytest.raises(lam.exceptions.ResourceConflictException, match="already exists"):
        lam.add_layer_version_permission(
            LayerName="shared", VersionNumber=1, StatementId="acct",
            Action="lambda:GetLayerVersion", Principal="*",
        )
    with pytest.raises(lam.exceptions.ClientError, match="lambda:GetLayerVersion"):
        lam.add_layer_version_permission(
            LayerName="shared", VersionNumber=1, StatementId="x", Action="lambda:InvokeFunction",
            Principal="*",
        )
    policy = lam.get_layer_version_policy(LayerName="shared", VersionNumber=1)
    statements = json.loads(policy["Policy"])["Statement"]
    assert [(s["Sid"], s["Principal"]) for s in statements] == [
        ("org", "*"),
        ("acct", {"AWS": "arn:aws:iam::123456789012:root"}),
    ]
    lam.remove_layer_version_permission(LayerName="shared", VersionNumber=1, StatementId="org")
    with pytest.raises(lam.exceptions.ResourceNotFoundException, match="Statement org"):
        lam.remove_layer_version_permission(LayerName="shared", VersionNumber=1, StatementId="org")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.add_layer_version_permission(
            LayerName="shared", VersionNumber=9, StatementId="x",
            Action="lambda:GetLayerVersion", Principal="*",
        )


def test_function_and_layers_together_stay_within_the_unzipped_limit(tmp_path) -> None:
    # 100 kB instead of 250 MB; files of 60 kB compress to almost nothing.
    with live_server(tmp_path / "data", {"NIMBUS_MAX_UNZIPPED_SIZE": "100000"}) as server:
        lam = server.client()
        big_layer = publish(lam, "big", make_zip({"python/blob.py": "#" * 60_000}))
        small = publish(lam, "small", make_zip({"python/tiny.py": "X = 1\n"}))
        code = {"ZipFile": make_zip({"app.py": "#" * 60_000})}
        create = {"FunctionName": "fn", "Runtime": "python3.12", "Role": ROLE,
                  "Handler": "app.handler", "Code": code}
        with pytest.raises(lam.exceptions.InvalidParameterValueException,
                           match=r"combined with layers exceeds .* 100000 bytes"):
            lam.create_function(**create, Layers=[big_layer["LayerVersionArn"]])
        lam.create_function(**create, Layers=[small["LayerVersionArn"]])
        with pytest.raises(lam.exceptions.InvalidParameterValueException, match="combined"):
            lam.update_function_configuration(
                FunctionName="fn", Layers=[big_layer["LayerVersionArn"]]
            )
        lam.update_function_configuration(FunctionName="fn", Layers=[])
        lam.update_function_configuration(FunctionName="fn", Layers=[small["LayerVersionArn"]])
        bigger = make_zip({"app.py": "#" * 99_999})
        with pytest.raises(lam.exceptions.InvalidParameterValueException, match="combined"):
            lam.update_function_code(FunctionName="fn", ZipFile=bigger)
        config = lam.get_function_configuration(FunctionName="fn")
        assert config["Layers"][0]["Arn"] == small["LayerVersionArn"]  # unchanged


@pytest.mark.sandbox
def test_a_custom_runtime_served_from_a_layer(lam, tmp_path) -> None:
    """A provided runtime whose bootstrap and runtime client live in a layer (/opt), as
    Lambda's custom runtime layers do; the function's zip holds only its handler."""
    from tests.conftest import awslambdaric_package

    layer, function = io.BytesIO(), io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(awslambdaric_package(tmp_path))) as source, \
            zipfile.ZipFile(layer, "w") as runtime, zipfile.ZipFile(function, "w") as code:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "fn.py":
                code.writestr(info, data)
            elif info.filename == "bootstrap":
                # At /opt/bootstrap: the client is imported from /opt, the handler from
                # the task root.
                runtime.writestr(info, data.replace(
                    b'export PYTHONPATH="$LAMBDA_TASK_ROOT"',
                    b'export PYTHONPATH="$LAMBDA_TASK_ROOT:/opt"',
                ))
            else:
                runtime.writestr(info, data)
    arn = publish(lam, "awslambdaric", layer.getvalue(),
                  CompatibleRuntimes=["provided.al2023"])["LayerVersionArn"]
    lam.create_function(FunctionName="custom", Runtime="provided.al2023", Role=ROLE,
                        Handler="fn.handler", Code={"ZipFile": function.getvalue()},
                        Layers=[arn])
    out = lam.invoke(FunctionName="custom", Payload=b'{"hi": 1}')
    assert json.loads(out["Payload"].read()) == {"echo": {"hi": 1}, "runtime": "awslambdaric"}
