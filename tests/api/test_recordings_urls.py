"""Replayed recordings: function URL configs (Create/Get/Update/Delete/List) on a
function and on an alias, and the errors of naming a version, $LATEST or nothing."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.api.test_recordings import Replay, Scenarios
from tests.nimbus_process import NimbusProcess

SCENARIOS = Scenarios()


def create_node_function(r: Replay) -> str:
    """The URL scenarios' function: recorded with nodejs20.x, here the host's Python."""
    name = f"test-function-{uuid.uuid4().hex[:8]}"
    r.create_function(name, Runtime=r.runtime("nodejs20.x"), Handler="lambda_handler.handler")
    r.any_value("FunctionUrl", "lambda-url")  # LocalStack's transformer: any URL
    return name


@SCENARIOS.add("TestLambdaUrl::test_url_config_lifecycle")
def url_config_lifecycle(r: Replay) -> None:
    name = create_node_function(r)
    lam = r.lam
    r.match("url_creation", lam.create_function_url_config(FunctionName=name, AuthType="NONE"))
    r.error("failed_duplication", lam.create_function_url_config, FunctionName=name,
            AuthType="NONE")  # fmt: skip
    r.match("get_url_config", lam.get_function_url_config(FunctionName=name))
    r.match(
        "updated_url_config",
        lam.update_function_url_config(FunctionName=name, AuthType="AWS_IAM"),
    )
    lam.delete_function_url_config(FunctionName=name)
    r.error("failed_getter", lam.get_function_url_config, FunctionName=name)


@SCENARIOS.add("TestLambdaUrl::test_url_config_exceptions")
def url_config_exceptions(r: Replay) -> None:
    name = create_node_function(r)
    lam = r.lam
    arn = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    version = r.match("fn_version_result", lam.publish_version(FunctionName=name))["Version"]
    r.match(
        "create_alias_result",
        lam.create_alias(FunctionName=name, Name="urlalias", FunctionVersion=version),
    )
    cases: list[tuple[str, dict[str, str]]] = [
        ("name_doesnotexist", {"FunctionName": "doesnotexist"}),
        ("arn_doesnotexist", {"FunctionName": arn.replace(name, "doesnotexist")}),
        ("name_doesnotexist_qualifier", {"FunctionName": "doesnotexist", "Qualifier": "1"}),
        ("qualifier_version", {"FunctionName": name, "Qualifier": "1"}),
        ("qualifier_version_doesnotexist", {"FunctionName": name, "Qualifier": "2"}),
        ("qualifier_alias_doesnotexist", {"FunctionName": name, "Qualifier": "v1"}),
        ("qualifier_alias_doesnotmatch_arn",
         {"FunctionName": f"{name}:urlalias-doesnotmatch", "Qualifier": "urlalias"}),
        ("qualifier_latest", {"FunctionName": name, "Qualifier": "$LATEST"}),
    ]  # fmt: skip
    missing_config = [("config_doesnotexist", {"FunctionName": name})]
    operations: list[tuple[str, Callable[..., Any], dict[str, str], bool]] = [
        ("create_function_url_config", lam.create_function_url_config, {"AuthType": "NONE"},
         False),
        ("get_function_url_config", lam.get_function_url_config, {}, True),
        ("delete_function_url_config", lam.delete_function_url_config, {}, True),
        ("update_function_url_config", lam.update_function_url_config, {"AuthType": "AWS_IAM"},
         True),
    ]  # fmt: skip
    for prefix, call, extra, config_case in operations:
        for case, args in cases + (missing_config if config_case else []):
            key = f"{prefix}_{case}"
            if key == "delete_function_url_config_qualifier_alias_doesnotmatch_arn":
                # AWS answered an InternalFailure here (the recording's test calls it a
                # bug); nimbus answers as Get and Update do.
                r.skip(key, "AWS failed internally")
                with pytest.raises(ClientError, match="derived qualifier"):
                    call(**args, **extra)
                continue
            r.error(key, call, **args, **extra)


@SCENARIOS.add("TestLambdaUrl::test_url_config_list_paging")
def url_config_list_paging(r: Replay) -> None:
    name = create_node_function(r)
    lam = r.lam
    version = r.match("fn_version_result", lam.publish_version(FunctionName=name))["Version"]
    r.match(
        "create_alias_result",
        lam.create_alias(FunctionName=name, Name="urlalias", FunctionVersion=version),
    )
    r.error("list_function_notfound", lam.list_function_url_configs, FunctionName="doesnotexist")
    r.match("list_all_empty", lam.list_function_url_configs(FunctionName=name))
    fn_url = r.match(
        "url_config_fn", lam.create_function_url_config(FunctionName=name, AuthType="NONE")
    )
    alias_url = r.match(
        "url_config_alias",
        lam.create_function_url_config(
            FunctionName=f"{name}:urlalias", Qualifier="urlalias", AuthType="NONE"
        ),
    )
    listed = lam.list_function_url_configs(FunctionName=name)
    listed["FunctionUrlConfigs"].sort(key=lambda c: c["FunctionArn"])
    r.match("list_all", listed)
    urls = {fn_url["FunctionUrl"], alias_url["FunctionUrl"]}
    one = lam.list_function_url_configs(FunctionName=name, MaxItems=1)
    two = lam.list_function_url_configs(FunctionName=name, MaxItems=2)
    rest = lam.list_function_url_configs(FunctionName=name, MaxItems=1, Marker=one["NextMarker"])
    assert {c["FunctionUrl"] for c in two["FunctionUrlConfigs"]} == urls
    pages = one["FunctionUrlConfigs"] + rest["FunctionUrlConfigs"]
    assert {c["FunctionUrl"] for c in pages} == urls


@SCENARIOS.add("TestLambdaUrl::test_url_config_deletion_without_qualifier")
def url_config_deletion_without_qualifier(r: Replay) -> None:
    r.any_value("FunctionUrl", "lambda-url")
    name = f"alias-fn-{uuid.uuid4().hex[:8]}"
    lam = r.lam
    r.create_function_aws(name, Environment={"Variables": {"testenv": "staging"}})
    lam.publish_version(FunctionName=name)
    alias = "test-alias"
    lam.create_alias(FunctionName=name, Name=alias, FunctionVersion="1", Description="custom-alias")
    create, get = lam.create_function_url_config, lam.get_function_url_config
    r.match("url_creation", create(FunctionName=name, AuthType="NONE"))
    r.match("url_with_alias_creation", create(FunctionName=name, AuthType="NONE", Qualifier=alias))
    r.match("get_url_config", get(FunctionName=name))
    r.match("get_url_config_with_alias", get(FunctionName=name, Qualifier=alias))
    # Deleting the function's URL leaves the alias' URL alone.
    r.match("delete_function_url_config", lam.delete_function_url_config(FunctionName=name))
    r.error("get_url_config_after_deletion", get, FunctionName=name)
    r.match("get_url_config_with_alias_after_deletion", get(FunctionName=name, Qualifier=alias))


@pytest.mark.parametrize("name", SCENARIOS.names())
def test_replay(name: str, server: NimbusProcess) -> None:
    SCENARIOS.replay(name, server)
