"""Replayed recordings: aliases (Create/Get/Update/Delete/ListAliases), their routing
configs and names, and GetFunction through an alias."""

from __future__ import annotations

import uuid

import pytest

from tests.api.test_recordings import Replay, Scenarios
from tests.nimbus_process import NimbusProcess

SCENARIOS = Scenarios()


def create(r: Replay, **kwargs: object) -> str:
    """The alias scenarios' function (``create_lambda_function_aws`` with these arguments)."""
    name = f"alias-fn-{uuid.uuid4().hex[:8]}"
    created = r.create_function_aws(
        name, Environment={"Variables": {"testenv": "staging"}}, **kwargs
    )
    r.match("create_response", created)
    return name


def two_versions(r: Replay, name: str) -> None:
    """Version 1 with testenv=staging, version 2 with testenv=prod."""
    r.match("publish_v1", r.lam.publish_version(FunctionName=name))
    r.lam.update_function_configuration(
        FunctionName=name, Environment={"Variables": {"testenv": "prod"}}
    )
    r.match("publish_v2", r.lam.publish_version(FunctionName=name))


@SCENARIOS.add("TestLambdaAlias::test_alias_lifecycle")
def alias_lifecycle(r: Replay) -> None:
    name = create(r)
    two_versions(r, name)
    lam = r.lam
    one_one = r.match(
        "create_alias_1_1",
        lam.create_alias(
            FunctionName=name,
            Name="aliasname1_1",
            FunctionVersion="1",
            Description="custom-alias",
            RoutingConfig={"AdditionalVersionWeights": {"2": 0.2}},
        ),
    )
    r.match("get_alias_1_1", lam.get_alias(FunctionName=name, Name="aliasname1_1"))
    r.match(
        "get_function_alias_1_1", lam.get_function(FunctionName=name, Qualifier="aliasname1_1")
    )
    r.match("get_function_byarn_alias_1_1", lam.get_function(FunctionName=one_one["AliasArn"]))
    r.error("get_function_alias_notfound_exc", lam.get_function, FunctionName=name,
            Qualifier="aliasdoesnotexist")  # fmt: skip
    missing_arn = one_one["AliasArn"].replace("aliasname1_1", "aliasdoesnotexist")
    r.error("get_function_alias_byarn_notfound_exc", lam.get_function, FunctionName=missing_arn)
    for alias, version, description in (
        ("aliasname1_2", "1", "custom-alias"),
        ("aliasname1_3", "1", None),
        ("aliasname2", "2", "custom-alias"),
    ):
        extra = {"Description": description} if description else {}
        suffix = alias.removeprefix("aliasname")
        r.match(
            f"create_alias_{suffix}",
            lam.create_alias(FunctionName=name, Name=alias, FunctionVersion=version, **extra),
        )
        r.match(f"get_alias_{suffix}", lam.get_alias(FunctionName=name, Name=alias))
    pages = lam.get_paginator("list_aliases")
    listed = pages.paginate(FunctionName=name, PaginationConfig={"PageSize": 1})
    r.match("list_aliases_for_fnname", listed.build_full_result())
    # An empty AdditionalVersionWeights removes the routing config.
    r.match(
        "update_alias_1_1",
        lam.update_alias(
            FunctionName=name,
            Name="aliasname1_1",
            RoutingConfig={"AdditionalVersionWeights": {}},
        ),
    )
    r.match("get_alias_1_1_after_update", lam.get_alias(FunctionName=name, Name="aliasname1_1"))
    r.match("list_aliases_for_fnname_after_update", lam.list_aliases(FunctionName=name))
    r.match("update_alias_1_2", lam.update_alias(FunctionName=name, Name="aliasname1_2"))
    r.match("get_alias_1_2_after_update", lam.get_alias(FunctionName=name, Name="aliasname1_2"))
    r.match("list_aliases_for_fnname_after_update_2", lam.list_aliases(FunctionName=name))
    r.match(
        "list_aliases_for_version", lam.list_aliases(FunctionName=name, FunctionVersion="1")
    )
    r.match(
        "delete_alias_response", lam.delete_alias(FunctionName=name, Name="aliasname1_1")
    )
    r.match("list_aliases_for_fnname_afterdelete", lam.list_aliases(FunctionName=name))


@SCENARIOS.add("TestLambdaAlias::test_notfound_and_invalid_routingconfigs")
def notfound_and_invalid_routingconfigs(r: Replay) -> None:
    r.lam = r.server.client(validate=False)
    name = create(r, Publish=True)
    two_versions(r, name)

    def refused(key: str, version: str, weights: dict[str, float] | None, **kw: str) -> None:
        routing = {"RoutingConfig": {"AdditionalVersionWeights": weights}} if weights else {}
        function = kw.get("function", name)
        r.error(key, r.lam.create_alias, FunctionName=function, Name="custom",
                FunctionVersion=version, **routing)  # fmt: skip

    refused("routing_config_exc_toomany", "1", {"1": 0.8, "2": 0.2})
    refused("routing_config_exc_toohigh", "1", {"2": 2})
    refused("routing_config_exc_subzero", "1", {"2": -1})
    refused("routing_config_exc_sameversion", "1", {"1": 0.5})
    refused("target_version_doesnotexist", "10", {"2": 0.5})
    refused("routing_config_exc_version_doesnotexist", "1", {"10": 0.5})
    refused("target_version_exc_version_latest", "$LATEST", {"1": 0.5})
    refused("routing_config_exc_version_latest", "1", {"$LATEST": 0.5})
    r.match(
        "create-alias-latest",
        r.lam.create_alias(FunctionName=name, Name="custom-latest", FunctionVersion="$LATEST"),
    )
    refused("routing_config_exc_fn_doesnotexist", "1", {"2": 0.5}, function=f"{name}-unknown")
    r.match(
        "create_alias_empty_routingconfig",
        r.lam.create_alias(
            FunctionName=name,
            Name="custom-empty-routingconfig",
            FunctionVersion="1",
            RoutingConfig={"AdditionalVersionWeights": {}},
        ),
    )
    r.match(
        "create_alias_response",
        r.lam.create_alias(
            FunctionName=name,
            Name="custom",
            FunctionVersion="1",
            RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}},
        ),
    )
    refused("routing_config_exc_already_exist", "1", {"2": 0.5})
    r.error("alias_does_not_exist_esc", r.lam.get_alias, FunctionName=name, Name="non-existent")


@SCENARIOS.add("TestLambdaAlias::test_alias_naming")
def alias_naming(r: Replay) -> None:
    name = create(r)
    r.match("publish_v1", r.lam.publish_version(FunctionName=name))
    # Names may start with digits (a date is a fine name); only all digits is refused.
    r.match(
        "create_alias_date",
        r.lam.create_alias(
            FunctionName=name, Name="2024-01-02", FunctionVersion="1", Description="custom-alias"
        ),
    )
    r.match("get_alias_date", r.lam.get_alias(FunctionName=name, Name="2024-01-02"))
    # (The recorded scenario also invoked the alias; that needs a sandbox and records nothing.)
    r.error("create_alias_number_exception", r.lam.create_alias, FunctionName=name, Name="2024",
            FunctionVersion="1", Description="custom-alias")  # fmt: skip


@SCENARIOS.add("TestLambdaAlias::test_non_existent_alias_deletion")
def non_existent_alias_deletion(r: Replay) -> None:
    name = create(r)
    r.match("delete_alias_response", r.lam.delete_alias(FunctionName=name, Name="non-existent"))


@SCENARIOS.add("TestLambdaAlias::test_non_existent_alias_update")
def non_existent_alias_update(r: Replay) -> None:
    name = create(r)
    r.error("update_alias_response", r.lam.update_alias, FunctionName=name, Name="non-existent")


@pytest.mark.parametrize("name", SCENARIOS.names())
def test_replay(name: str, server: NimbusProcess) -> None:
    SCENARIOS.replay(name, server)
