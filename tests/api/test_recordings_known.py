"""The known differences of [K fidelity], end to end: what the recordings decided, checked
the way a script written against Lambda meets it (an ARN passed on, a version published
after an update that changed nothing, a mistyped enum)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.api.conftest import error
from tests.conftest import ROLE, make_zip, python_runtime
from tests.nimbus_process import NimbusProcess

CODE = make_zip({"index.py": "def handler(event, context):\n    return event\n"})
ARN = "arn:aws:lambda:us-east-1:000000000000:function:"


def create(lam: Any, **kwargs: Any) -> dict[str, Any]:
    request = {
        "FunctionName": f"known-{uuid.uuid4().hex[:8]}",
        "Runtime": python_runtime(),
        "Role": ROLE,
        "Handler": "index.handler",
        "Code": {"ZipFile": CODE},
        **kwargs,
    }
    return lam.create_function(**request)


def refused(call: Any, **kwargs: Any) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as exc:
        call(**kwargs)
    return error(exc)


def test_the_arn_create_answers_is_the_function_s(server: NimbusProcess) -> None:
    """CreateFunction with Publish answers version 1 under the unqualified ARN (recorded:
    test_publish_version_on_create), which every function operation then takes."""
    lam = server.client()
    created = create(lam, Publish=True)
    arn = created["FunctionArn"]
    assert created["Version"] == "1" and arn == ARN + created["FunctionName"]
    lam.update_function_code(FunctionName=arn, ZipFile=CODE)
    lam.update_function_configuration(FunctionName=arn, Timeout=9)
    lam.put_function_concurrency(FunctionName=arn, ReservedConcurrentExecutions=1)
    published = lam.update_function_code(FunctionName=arn, ZipFile=CODE, Publish=True)
    assert published["Version"] == "2" and published["FunctionArn"] == f"{arn}:2"
    latest = lam.get_function_configuration(FunctionName=arn, Qualifier="$LATEST")
    assert latest["FunctionArn"] == f"{arn}:$LATEST"
    assert lam.get_function_configuration(FunctionName=arn)["FunctionArn"] == arn
    listed = lam.list_versions_by_function(FunctionName=arn)["Versions"]
    assert [v["FunctionArn"] for v in listed] == [f"{arn}:$LATEST", f"{arn}:1", f"{arn}:2"]
    everything = lam.list_functions(FunctionVersion="ALL")["Functions"]
    assert f"{arn}:$LATEST" in {f["FunctionArn"] for f in everything}
    lam.delete_function(FunctionName=arn)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName=arn)


def test_an_update_is_a_new_version_even_with_the_same_bytes(server: NimbusProcess) -> None:
    """PublishVersion publishes when $LATEST was updated since the last version, whatever
    the update changed (recorded: test_version_lifecycle, where a Description-only change
    is a new version and publishing again without an update is not)."""
    lam = server.client()
    name = create(lam)["FunctionName"]
    assert lam.publish_version(FunctionName=name)["Version"] == "1"
    assert lam.publish_version(FunctionName=name)["Version"] == "1"
    lam.update_function_code(FunctionName=name, ZipFile=CODE)  # identical bytes
    second = lam.publish_version(FunctionName=name)
    assert second["Version"] == "2"
    assert second["CodeSha256"] == lam.get_function(FunctionName=name, Qualifier="1")[
        "Configuration"
    ]["CodeSha256"]
    assert lam.publish_version(FunctionName=name)["Version"] == "2"
    lam.delete_function(FunctionName=name, Qualifier="2")
    # The last version gone, a publish makes a new one; numbers are never reused.
    assert lam.publish_version(FunctionName=name)["Version"] == "3"


def test_enum_mistakes_get_the_enum_message(server: NimbusProcess) -> None:
    lam = server.client(validate=False)
    before = len(lam.list_functions()["Functions"])
    assert refused(create, lam=lam, PackageType="ZIP") == (
        "ValidationException",
        400,
        "1 validation error detected: Value 'ZIP' at 'packageType' failed to satisfy "
        "constraint: Member must satisfy enum value set: [Zip, Image]",
    )
    assert refused(create, lam=lam, Architectures=["foo"]) == (
        "ValidationException",
        400,
        "1 validation error detected: Value '[foo]' at 'architectures' failed to satisfy "
        "constraint: Member must satisfy constraint: [Member must satisfy enum value set: "
        "[x86_64, arm64], Member must not be null]",
    )
    code, _, message = refused(create, lam=lam, PackageType="Image")
    assert code == "InvalidParameterValueException" and "not supported" in message
    # Each violation once, and all of them together.
    code, _, message = refused(create, lam=lam, Role="r1", Timeout=0, PackageType="zip")
    assert code == "ValidationException" and message.startswith("3 validation errors detected")
    assert message.count("at 'role'") == 1
    assert len(lam.list_functions()["Functions"]) == before  # nothing stored


def test_a_destination_of_the_wrong_form_gets_the_pattern_message(
    server: NimbusProcess,
) -> None:
    lam = server.client()
    name = create(lam)["FunctionName"]
    code, status, message = refused(
        lam.put_function_event_invoke_config,
        FunctionName=name,
        DestinationConfig={"OnSuccess": {"Destination": "not an arn"}},
    )
    assert (code, status) == ("ValidationException", 400)
    assert message.startswith(
        "1 validation error detected: Value 'not an arn' at "
        "'destinationConfig.onSuccess.destination' failed to satisfy constraint: Member must "
        "satisfy regular expression pattern: $|kafka://"
    )
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_event_invoke_config(FunctionName=name)  # nothing half-stored
