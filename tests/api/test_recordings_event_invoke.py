"""Replayed recordings: event invoke configs (Put/Update/Get/Delete/List, destinations)."""

from __future__ import annotations

import uuid

import pytest

from tests.api.test_recordings import Replay, Scenarios
from tests.nimbus_process import NimbusProcess

SCENARIOS = Scenarios()


@SCENARIOS.add("TestLambdaEventInvokeConfig::test_lambda_eventinvokeconfig_lifecycle")
def eventinvokeconfig_lifecycle(r: Replay) -> None:
    name = f"fn-eventinvoke-{uuid.uuid4().hex[:8]}"
    r.create_function(name)
    lam = r.lam
    r.match(
        "put_invokeconfig_retries_0",
        lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0),
    )
    # Put replaces the whole config, Update only what it names.
    r.match(
        "put_invokeconfig_eventage_60",
        lam.put_function_event_invoke_config(FunctionName=name, MaximumEventAgeInSeconds=60),
    )
    r.match(
        "update_invokeconfig_eventage_nochange",
        lam.update_function_event_invoke_config(FunctionName=name, MaximumEventAgeInSeconds=60),
    )
    r.match(
        "update_invokeconfig_retries",
        lam.update_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=1),
    )
    r.match("get_invokeconfig", lam.get_function_event_invoke_config(FunctionName=name))
    r.match(
        "get_invokeconfig_latest",
        lam.get_function_event_invoke_config(FunctionName=name, Qualifier="$LATEST"),
    )
    r.match("list_single_invokeconfig", lam.list_function_event_invoke_configs(FunctionName=name))
    version = r.match("publish_version_result", lam.publish_version(FunctionName=name))["Version"]
    r.error(
        "get_invokeconfig_postpublish",
        lam.get_function_event_invoke_config,
        FunctionName=name,
        Qualifier=version,
    )
    r.match(
        "put_published_invokeconfig",
        lam.put_function_event_invoke_config(
            FunctionName=name, Qualifier=version, MaximumEventAgeInSeconds=120
        ),
    )
    r.match(
        "get_published_invokeconfig",
        lam.get_function_event_invoke_config(FunctionName=name, Qualifier=version),
    )
    single = lam.list_function_event_invoke_configs(FunctionName=name, MaxItems=1)
    everything = lam.list_function_event_invoke_configs(FunctionName=name)
    rest = lam.list_function_event_invoke_configs(
        FunctionName=name, Marker=single["NextMarker"], MaxItems=1
    )
    arns = {c["FunctionArn"] for c in everything["FunctionEventInvokeConfigs"]}
    assert len(arns) == 2
    paged = single["FunctionEventInvokeConfigs"] + rest["FunctionEventInvokeConfigs"]
    assert {c["FunctionArn"] for c in paged} == arns
    lam.delete_function_event_invoke_config(FunctionName=name)
    r.match(
        "list_paging_nolimit_postdelete", lam.list_function_event_invoke_configs(FunctionName=name)
    )


@SCENARIOS.add("TestLambdaEventInvokeConfig::test_lambda_eventinvokeconfig_exceptions")
def eventinvokeconfig_exceptions(r: Replay) -> None:
    lam = r.lam = r.server.client(validate=False)
    put, update = lam.put_function_event_invoke_config, lam.update_function_event_invoke_config
    name, other = (f"fn-eventinvoke-{i}{uuid.uuid4().hex[:8]}" for i in ("", "2-"))
    r.create_function(name)
    arn = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    r.create_function(other)
    other_arn = lam.get_function(FunctionName=other)["Configuration"]["FunctionArn"]
    version = r.match("fn_version_result", lam.publish_version(FunctionName=name))["Version"]
    alias = r.match(
        "fn_alias_result",
        lam.create_alias(FunctionName=name, Name="eventinvokealias", FunctionVersion=version),
    )
    alias_name, alias_arn = alias["Name"], alias["AliasArn"]
    fake_arn = arn.replace(name, "doesnotexist")

    r.error("put_functionname_name_notfound", put, FunctionName="doesnotexist",
            MaximumRetryAttempts=1)  # fmt: skip
    r.error("put_functionname_arn_notfound", put, FunctionName=fake_arn, MaximumRetryAttempts=1)
    r.error("put_functionname_nootherargs", put, FunctionName="doesnotexist")

    def destination(kind: str, target: str | None) -> dict[str, dict[str, str]]:
        return {kind: {"Destination": target} if target else {}}

    r.error("put_destination_lambda_doesntexist", put, FunctionName=name,
            DestinationConfig=destination("OnSuccess", fake_arn))  # fmt: skip
    r.error("put_destination_recursive", put, FunctionName=name,
            DestinationConfig=destination("OnSuccess", arn))  # fmt: skip
    r.match(
        "put_destination_other_lambda",
        put(FunctionName=name, DestinationConfig=destination("OnSuccess", other_arn)),
    )
    iam = arn.replace(":lambda:", ":iam:")
    r.error("put_destination_invalid_service_arn", put, FunctionName=name,
            DestinationConfig=destination("OnSuccess", iam))  # fmt: skip
    r.match(
        "put_destination_success_no_destination_arn",
        put(FunctionName=name, DestinationConfig=destination("OnSuccess", None)),
    )
    r.match(
        "put_destination_failure_no_destination_arn",
        put(FunctionName=name, DestinationConfig=destination("OnFailure", None)),
    )
    bad_pattern = arn.replace(":lambda:", ":_-/!lambda:")
    r.error("put_destination_invalid_arn_pattern", put, FunctionName=name,
            DestinationConfig=destination("OnFailure", bad_pattern))  # fmt: skip

    # Function names and qualifiers, every way of naming one.
    shorthand = f"{name}:{alias_name}"
    puts = [
        ("put_destination_latest", {"FunctionName": name}),
        ("put_destination_latest_explicit_qualifier", {"FunctionName": name,
                                                       "Qualifier": "$LATEST"}),
        ("put_destination_version", {"FunctionName": name, "Qualifier": version}),
        ("put_alias_functionname_qualifier", {"FunctionName": name, "Qualifier": alias_name}),
        ("put_alias_doesnotexist", {"FunctionName": name,
                                    "Qualifier": f"{alias_name}doesnotexist"}),
        ("put_alias_qualifiedarn", {"FunctionName": alias_arn}),
        ("put_alias_qualifiedarn_qualifier", {"FunctionName": alias_arn,
                                              "Qualifier": alias_name}),
        ("put_alias_qualifiedarn_qualifierconflict", {"FunctionName": alias_arn,
                                                      "Qualifier": f"{alias_name}doesnotexist"}),
        ("put_alias_shorthand", {"FunctionName": shorthand}),
        ("put_alias_shorthand_qualifier", {"FunctionName": shorthand, "Qualifier": alias_name}),
        ("put_alias_shorthand_qualifierconflict", {"FunctionName": shorthand,
                                                   "Qualifier": f"{alias_name}doesnotexist"}),
        ("put_version_shorthand", {"FunctionName": f"{name}:{version}"}),
        ("put_shorthand_qualifier_match", {"FunctionName": f"{name}:$LATEST",
                                           "Qualifier": "$LATEST"}),
        ("put_shorthand_qualifier_mismatch_1", {"FunctionName": f"{name}:{version}",
                                                "Qualifier": "$LATEST"}),
        ("put_shorthand_qualifier_mismatch_2", {"FunctionName": f"{name}:$LATEST",
                                                "Qualifier": version}),
        ("put_shorthand_qualifier_mismatch_3", {"FunctionName": f"{name}:{version}",
                                                "Qualifier": alias_name}),
    ]  # fmt: skip
    for key, target in puts:
        recorded = r.recorded[key]
        if "Error" in recorded:
            r.error(key, put, **target, MaximumRetryAttempts=1)
        else:
            r.match(key, put(**target, MaximumRetryAttempts=1))

    r.match("put_maxevent_maxvalue_result",
            put(FunctionName=name, MaximumRetryAttempts=2, MaximumEventAgeInSeconds=21600))
    # Put replaces the config, Update merges into it.
    r.match("put_pre_overwrite",
            put(FunctionName=name, MaximumRetryAttempts=2, MaximumEventAgeInSeconds=60))
    r.match("put_post_overwrite", put(FunctionName=name, MaximumRetryAttempts=0))
    r.match("second_overwrite_existing_response", put(FunctionName=name, MaximumRetryAttempts=0))
    r.match("get_post_overwrite", lam.get_function_event_invoke_config(FunctionName=name))
    r.match("pre_update_response",
            put(FunctionName=name, MaximumRetryAttempts=2, MaximumEventAgeInSeconds=60))
    r.match("update_response", update(FunctionName=name, MaximumRetryAttempts=0))
    r.match("update_response_existing", update(FunctionName=name, MaximumRetryAttempts=0))
    got = lam.get_function_event_invoke_config(FunctionName=name)
    assert (got["MaximumRetryAttempts"], got["MaximumEventAgeInSeconds"]) == (0, 60)

    listed = lam.list_function_event_invoke_configs(FunctionName=name)
    listed["FunctionEventInvokeConfigs"].sort(key=lambda c: c["FunctionArn"])
    r.match("list_configs", listed)
    paged = lam.list_function_event_invoke_configs(FunctionName=name, MaxItems=2)
    assert len(paged["FunctionEventInvokeConfigs"]) == 2 and paged["NextMarker"]
    delete = lam.delete_function_event_invoke_config
    r.match("delete_latest", delete(FunctionName=name, Qualifier="$LATEST"))
    r.match("delete_version", delete(FunctionName=name, Qualifier=version))
    r.match("delete_alias", delete(FunctionName=name, Qualifier=alias_name))
    r.match("list_configs_postdelete", lam.list_function_event_invoke_configs(FunctionName=name))
    r.error("delete_function_not_found", delete, FunctionName=name)
    r.error("delete_function_doesnotexist", delete, FunctionName="doesnotexist")
    r.error("list_function_doesnotexist", lam.list_function_event_invoke_configs,
            FunctionName="doesnotexist")  # fmt: skip
    get = lam.get_function_event_invoke_config
    r.error("get_function_doesnotexist", get, FunctionName="doesnotexist")
    r.error("get_qualifier_doesnotexist", get, FunctionName=name, Qualifier="doesnotexist")
    r.error("update_eventinvokeconfig_function_doesnotexist", update, FunctionName="doesnotexist",
            MaximumRetryAttempts=0)  # fmt: skip
    r.error("get_eventinvokeconfig_doesnotexist", get, FunctionName=alias_arn)
    r.error("update_eventinvokeconfig_config_doesnotexist_with_qualifier", update,
            FunctionName=alias_arn, MaximumRetryAttempts=0)  # fmt: skip
    r.error("update_eventinvokeconfig_config_doesnotexist_without_qualifier", update,
            FunctionName=arn, MaximumRetryAttempts=0)  # fmt: skip


@pytest.mark.parametrize("name", SCENARIOS.names())
def test_replay(name: str, server: NimbusProcess) -> None:
    SCENARIOS.replay(name, server)
