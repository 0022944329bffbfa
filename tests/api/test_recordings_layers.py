"""Replayed recordings: layers (PublishLayerVersion, Get/List/Delete, layer permissions)
and functions that use them."""

from __future__ import annotations

import uuid

import pytest

from tests.api.test_recordings import Replay, Scenarios, recordings
from tests.conftest import make_zip
from tests.nimbus_process import NimbusProcess

SCENARIOS = Scenarios()
DUMMY = make_zip({"python/dummy.py": "X = 1\n"})  # LocalStack's dummylayer: any small zip


def layer(prefix: str = "testlayer") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def publish(r: Replay, name: str, **kwargs: object) -> dict:
    kwargs.setdefault("CompatibleRuntimes", ["python3.12"])
    kwargs.setdefault("CompatibleArchitectures", ["x86_64"])
    return r.lam.publish_layer_version(LayerName=name, Content={"ZipFile": DUMMY}, **kwargs)


def compatibilities(index: int, r: Replay) -> None:
    key = f"TestLambdaLayer::test_layer_compatibilities[runtimes{index}]"
    recorded = recordings()[key]["recorded-content"]["publish_result"]
    # CompatibleRuntimes is metadata: every runtime Lambda knows is taken, this host's or not.
    r.match(
        "publish_result",
        publish(
            r,
            layer(),
            CompatibleRuntimes=recorded["CompatibleRuntimes"],
            CompatibleArchitectures=["arm64", "x86_64"],
        ),
    )


for index in range(3):
    SCENARIOS.add(f"TestLambdaLayer::test_layer_compatibilities[runtimes{index}]")(
        lambda r, index=index: compatibilities(index, r)
    )


@SCENARIOS.add("TestLambdaLayer::test_layer_exceptions")
def layer_exceptions(r: Replay) -> None:
    name = layer()
    lam = r.lam
    published = r.match("publish_result", publish(r, name))
    r.error("list_layers_exc_compatibleruntime_invalid", lam.list_layers,
            CompatibleRuntime="runtimedoesnotexist")  # fmt: skip
    r.error("list_layers_exc_compatiblearchitecture_invalid", lam.list_layers,
            CompatibleArchitecture="archdoesnotexist")  # fmt: skip
    r.match("list_nonexistent_layer", lam.list_layer_versions(LayerName="layerdoesnotexist"))
    get = lam.get_layer_version
    r.error("get_layer_version_exc_layer_doesnotexist", get, LayerName="layerdoesnotexist",
            VersionNumber=1)  # fmt: skip
    r.error("get_layer_version_exc_layer_version_doesnotexist_negative", get, LayerName=name,
            VersionNumber=-1)  # fmt: skip
    r.error("get_layer_version_exc_layer_version_doesnotexist_zero", get, LayerName=name,
            VersionNumber=0)  # fmt: skip
    r.error("get_layer_version_exc_layer_version_doesnotexist_2", get, LayerName=name,
            VersionNumber=2)  # fmt: skip
    by_arn = lam.get_layer_version_by_arn
    r.error("get_layer_version_by_arn_exc_invalidarn", by_arn, Arn=published["LayerArn"])
    r.error("get_layer_version_by_arn_exc_nonexistentversion", by_arn,
            Arn=f"{published['LayerArn']}:2")  # fmt: skip
    # Deleting what is not there succeeds.
    delete = lam.delete_layer_version
    r.match("delete_nonexistent_response", delete(LayerName="layerdoesnotexist", VersionNumber=1))
    r.match("delete_nonexistent_version_response", delete(LayerName=name, VersionNumber=2))
    r.match("delete_layer_response", delete(LayerName=name, VersionNumber=1))
    r.match("delete_layer_again_response", delete(LayerName=name, VersionNumber=1))
    r.error("delete_layer_version_exc_layerversion_invalid_version", delete, LayerName=name,
            VersionNumber=-1)  # fmt: skip
    r.match("publish_empty_result",
            publish(r, layer("testlayer-empty"), CompatibleRuntimes=[],
                    CompatibleArchitectures=[]))  # fmt: skip
    r.error("publish_layer_version_exc_invalid_runtime_arch", publish, r, layer("testlayer-2"),
            CompatibleRuntimes=["invalidruntime"],
            CompatibleArchitectures=["invalidarch"])  # fmt: skip
    r.error("publish_layer_version_exc_partially_invalid_values", publish, r,
            layer("testlayer-2"),
            CompatibleRuntimes=["invalidruntime", "invalidruntime2", "nodejs20.x"],
            CompatibleArchitectures=["invalidarch", "x86_64"])  # fmt: skip


@SCENARIOS.add("TestLambdaLayer::test_layer_lifecycle")
def layer_lifecycle(r: Replay) -> None:
    function, name = f"fn-layer-{uuid.uuid4().hex[:8]}", layer()
    license_info = f"licenseinfo-{uuid.uuid4().hex[:8]}"
    description = f"description-{uuid.uuid4().hex[:8]}"
    r.matcher.bind("<license-info>", license_info)
    r.matcher.bind("<description>", description)
    lam = r.lam
    r.create_function(function)
    r.match("get_fn_result", lam.get_function(FunctionName=function))
    r.match("get_fn_config_result", lam.get_function_configuration(FunctionName=function))
    about = {"LicenseInfo": license_info, "Description": description}
    first = r.match("publish_result", publish(r, name, **about))
    # The same content again is a new version all the same.
    second = r.match("publish_result_2", publish(r, name, **about))
    assert (first["Version"], second["Version"]) == (1, 2)
    r.match("update_fn_config",
            lam.update_function_configuration(FunctionName=function,
                                              Layers=[first["LayerVersionArn"]]))  # fmt: skip
    r.match("get_fn_config", lam.get_function_configuration(FunctionName=function))
    r.match("get_layer_ver_result", lam.get_layer_version(LayerName=name, VersionNumber=1))
    r.match("get_layer_by_arn_version",
            lam.get_layer_version_by_arn(Arn=first["LayerVersionArn"]))  # fmt: skip
    r.match("list_layer_versions_predelete", lam.list_layer_versions(LayerName=name))
    r.match("delete_layer_1", lam.delete_layer_version(LayerName=name, VersionNumber=1))
    # The function keeps the layer version it was configured with.
    r.match("get_fn_config_postdelete", lam.get_function_configuration(FunctionName=function))
    r.match("delete_layer_2", lam.delete_layer_version(LayerName=name, VersionNumber=2))
    r.match("list_layer_versions_postdelete", lam.list_layer_versions(LayerName=name))
    # Version numbers are never reused.
    r.match("publish_result_3", publish(r, name, **about))


@SCENARIOS.add("TestLambdaLayer::test_layer_function_quota_exception")
def layer_function_quota_exception(r: Replay) -> None:
    arns = [
        publish(r, layer(f"testlayer-{n}"), CompatibleRuntimes=[])["LayerVersionArn"]
        for n in range(1, 7)
    ]
    function = f"fn-layer-{uuid.uuid4().hex[:8]}"
    r.error("create_function_with_six_layers", r.create_function, function, Layers=arns)


@SCENARIOS.add("TestLambdaLayer::test_layer_policy_exceptions")
def layer_policy_exceptions(r: Replay) -> None:
    name = layer("layer4policy")
    lam = r.lam
    r.match("publish_result", publish(r, name))
    get_policy = lam.get_layer_version_policy
    add, remove = lam.add_layer_version_permission, lam.remove_layer_version_permission
    grant = {"Action": "lambda:GetLayerVersion", "Principal": "*"}
    r.error("layer_permission_nopolicy_get", get_policy, LayerName=name, VersionNumber=1)
    r.match("add_layer_permission_result",
            add(LayerName=name, VersionNumber=1, StatementId="s1", **grant))
    r.error("layer_permission_action_invalid", add, LayerName=name, VersionNumber=1,
            Action="*", Principal="*", StatementId="s-x")  # fmt: skip
    r.error("layer_permission_duplicate_statement", add, LayerName=name, VersionNumber=1,
            StatementId="s1", **grant)  # fmt: skip
    r.error("layer_permission_wrong_revision", add, LayerName=name, VersionNumber=1,
            StatementId="s2", RevisionId="wrong", **grant)  # fmt: skip
    for target, version in ((f"{name}-doesnotexist", 1), (name, 2)):
        which = "layername" if version == 1 else "layerversion"
        r.error(f"layer_permission_{which}_doesnotexist_add", add, LayerName=target,
                VersionNumber=version, StatementId="s-y", **grant)  # fmt: skip
        r.error(f"layer_permission_{which}_doesnotexist_get", get_policy, LayerName=target,
                VersionNumber=version)  # fmt: skip
        r.error(f"layer_permission_{which}_doesnotexist_remove", remove, LayerName=target,
                VersionNumber=version, StatementId="s1")  # fmt: skip
    r.error("layer_permission_statementid_doesnotexist_remove", remove, LayerName=name,
            VersionNumber=1, StatementId="doesnotexist")  # fmt: skip
    r.error("layer_permission_wrong_revision_remove", remove, LayerName=name, VersionNumber=1,
            StatementId="s1", RevisionId="wrong")  # fmt: skip


@SCENARIOS.add("TestLambdaLayer::test_layer_policy_lifecycle")
def layer_policy_lifecycle(r: Replay) -> None:
    name = layer()
    lam = r.lam
    r.match("publish_result", publish(r, name))
    grant = {"LayerName": name, "VersionNumber": 1, "Action": "lambda:GetLayerVersion",
             "Principal": "*"}  # fmt: skip
    r.match("add_policy_s1", lam.add_layer_version_permission(StatementId="s1", **grant))
    policy = r.match("get_layer_version_policy",
                     lam.get_layer_version_policy(LayerName=name, VersionNumber=1))
    r.match("add_policy_s2", lam.add_layer_version_permission(
        StatementId="s2", RevisionId=policy["RevisionId"], **grant))
    policy = r.match("get_layer_version_policy_postadd2",
                     lam.get_layer_version_policy(LayerName=name, VersionNumber=1))
    r.match("remove_s2", lam.remove_layer_version_permission(
        LayerName=name, VersionNumber=1, StatementId="s2", RevisionId=policy["RevisionId"]))
    r.match("get_layer_version_policy_postdeletes2",
            lam.get_layer_version_policy(LayerName=name, VersionNumber=1))


@pytest.mark.parametrize("name", SCENARIOS.names())
def test_replay(name: str, server: NimbusProcess) -> None:
    SCENARIOS.replay(name, server)
