"""Replayed recordings: versions (PublishVersion, Publish on create and on code update,
ListVersionsByFunction) and the RevisionIds they change."""

from __future__ import annotations

import uuid

import pytest

from tests.api.test_recordings import ECHO, VERSION, Replay, Scenarios
from tests.nimbus_process import NimbusProcess

SCENARIOS = Scenarios()


def create(r: Replay, **kwargs: object) -> str:
    """CreateFunction as the version scenarios send it (LocalStack's ``create_lambda_
    function_aws``: the caller's arguments only); returns the function's name."""
    name = f"fn-{uuid.uuid4().hex[:8]}"
    r.match("create_response", r.create_function_aws(name, **kwargs))
    return name


@SCENARIOS.add("TestLambdaVersions::test_publish_version_on_create")
def publish_version_on_create(r: Replay) -> None:
    name = create(r, Publish=True)
    r.match("get_function_result", r.lam.get_function(FunctionName=name))
    r.match("get_function_version_result", r.lam.get_function(FunctionName=name, Qualifier="1"))
    r.match(
        "get_function_latest_result", r.lam.get_function(FunctionName=name, Qualifier="$LATEST")
    )
    r.match("list_versions_result", r.lam.list_versions_by_function(FunctionName=name))
    r.match(
        "repeated_publish_response",
        r.lam.publish_version(FunctionName=name, Description="Repeated version description :)"),
    )
    r.match(
        "list_versions_result_after_publish", r.lam.list_versions_by_function(FunctionName=name)
    )


@SCENARIOS.add("TestLambdaVersions::test_version_lifecycle")
def version_lifecycle(r: Replay) -> None:
    name = create(r, Description="No version :(")
    r.match("get_function_result", r.lam.get_function(FunctionName=name))
    r.match("list_versions_result", r.lam.list_versions_by_function(FunctionName=name))
    r.match(
        "first_update_response",
        r.lam.update_function_configuration(FunctionName=name, Description="First version :)"),
    )
    r.match("first_update_get_function", r.lam.get_function(FunctionName=name))
    first = r.match(
        "first_publish_response",
        r.lam.publish_version(FunctionName=name, Description="First version description :)"),
    )
    r.match(
        "first_publish_get_function",
        r.lam.get_function(FunctionName=name, Qualifier=first["Version"]),
    )
    r.match(
        "first_publish_get_function_config",
        r.lam.get_function_configuration(FunctionName=name, Qualifier=first["Version"]),
    )
    r.match(
        "second_update_response",
        r.lam.update_function_configuration(FunctionName=name, Description="Second version :))"),
    )
    r.match(
        "first_publish_get_function_after_update",
        r.lam.get_function(FunctionName=name, Qualifier=first["Version"]),
    )
    # A change of $LATEST since the last version (here its Description) is a new version;
    # publishing again without a change returns that version, whatever the Description.
    r.match("second_publish_response", r.lam.publish_version(FunctionName=name))
    r.match(
        "third_publish_response",
        r.lam.publish_version(FunctionName=name, Description="Third version description :)))"),
    )
    r.match(
        "list_versions_result_after_third_publish",
        r.lam.list_versions_by_function(FunctionName=name),
    )
    r.lam.delete_function(FunctionName=f"{name}:{first['Version']}")
    r.match(
        "list_versions_result_after_deletion_of_first_version",
        r.lam.list_versions_by_function(FunctionName=name),
    )


@SCENARIOS.add("TestLambdaVersions::test_publish_with_wrong_sha256")
def publish_with_wrong_sha256(r: Replay) -> None:
    name = create(r)
    got = r.match("get_fn_response", r.lam.get_function(FunctionName=name))
    r.error(
        "publish_wrong_sha256_exc",
        r.lam.publish_version,
        FunctionName=name,
        CodeSha256="somenonexistentsha256",
    )
    r.match(
        "publish_result",
        r.lam.publish_version(FunctionName=name, CodeSha256=got["Configuration"]["CodeSha256"]),
    )


@SCENARIOS.add("TestLambdaVersions::test_publish_with_update")
def publish_with_update(r: Replay) -> None:
    name = create(r)
    r.match("get_function_result", r.lam.get_function(FunctionName=name))
    r.match(
        "update_function_code_result",
        r.lam.update_function_code(FunctionName=name, ZipFile=VERSION, Publish=True),
    )
    r.match(
        "get_function_version_result", r.lam.get_function(FunctionName=name, Qualifier="1")
    )
    r.match(
        "get_function_latest_result", r.lam.get_function(FunctionName=name, Qualifier="$LATEST")
    )


@SCENARIOS.add("TestLambdaRevisions::test_function_revisions_basic")
def function_revisions_basic(r: Replay) -> None:
    name = f"fn-{uuid.uuid4().hex[:8]}"
    lam = r.lam
    r.match("create_function_response_rev1",
            r.create_function(name, Code={"ZipFile": ECHO}, Handler="index.handler"))  # fmt: skip
    rev2 = r.match("get_function_response_rev2", lam.get_function(FunctionName=name))
    rev2_id = rev2["Configuration"]["RevisionId"]
    r.error("update_function_revision_exception", lam.update_function_code, FunctionName=name,
            ZipFile=ECHO, RevisionId="wrong")  # fmt: skip
    # The same code again is still an update: a new RevisionId.
    r.match("update_function_code_response_rev3",
            lam.update_function_code(FunctionName=name, ZipFile=ECHO, RevisionId=rev2_id))
    rev4 = r.match("get_function_response_rev4", lam.get_function(FunctionName=name))
    runtime = r.runtime("python3.8")
    r.error("update_function_configuration_revision_exception",
            lam.update_function_configuration, FunctionName=name, Runtime=runtime,
            RevisionId="wrong")  # fmt: skip
    r.match(
        "update_function_configuration_response_rev5",
        lam.update_function_configuration(
            FunctionName=name, Runtime=runtime, RevisionId=rev4["Configuration"]["RevisionId"]
        ),
    )
    r.match("get_function_response_rev6", lam.get_function(FunctionName=name))


@SCENARIOS.add("TestLambdaRevisions::test_function_revisions_version_and_alias")
def function_revisions_version_and_alias(r: Replay) -> None:
    name = f"fn-{uuid.uuid4().hex[:8]}"
    lam = r.lam
    r.match("create_function_response_rev1", r.create_function(name))
    rev2 = r.match("get_function_active_rev2", lam.get_function(FunctionName=name))
    r.error("publish_version_revision_exception", lam.publish_version, FunctionName=name,
            RevisionId="wrong")  # fmt: skip
    published = r.match(
        "publish_version_response_rev_v1",
        lam.publish_version(FunctionName=name, RevisionId=rev2["Configuration"]["RevisionId"]),
    )
    version = published["Version"]
    r.match("get_function_published_version_rev_v2",
            lam.get_function(FunctionName=name, Qualifier=version))  # fmt: skip
    # Publishing gives $LATEST a new RevisionId (<uuid:4>), which creating an alias keeps.
    r.match("get_function_latest_rev3", lam.get_function(FunctionName=name))
    alias = r.match(
        "create_alias_response_rev_a1",
        lam.create_alias(FunctionName=name, Name="revision_alias", FunctionVersion=version),
    )
    r.match("get_function_latest_rev4", lam.get_function(FunctionName=name))
    r.match("get_function_published_version_rev_v3",
            lam.get_function(FunctionName=name, Qualifier=version))  # fmt: skip
    r.error("update_alias_revision_exception", lam.update_alias, FunctionName=name,
            Name="revision_alias", RevisionId="wrong")  # fmt: skip
    r.match(
        "update_alias_response_rev_a2",
        lam.update_alias(
            FunctionName=name,
            Name="revision_alias",
            Description="something changed",
            RevisionId=alias["RevisionId"],
        ),
    )


@pytest.mark.parametrize("name", SCENARIOS.names())
def test_replay(name: str, server: NimbusProcess) -> None:
    SCENARIOS.replay(name, server)
