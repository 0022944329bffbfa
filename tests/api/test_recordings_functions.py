"""Replayed recordings: functions (Create/Get/Update/Delete/ListFunctions, code download)
and the errors of naming one that is not there, or not here."""

from __future__ import annotations

import base64
import hashlib
import urllib.request
import uuid
from functools import partial
from typing import Any

import pytest

from tests.api.test_recordings import ACCOUNT, ECHO, REGION, VERSION, Replay, Scenarios
from tests.nimbus_process import NimbusProcess

SCENARIOS = Scenarios()
ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@SCENARIOS.add("TestLambdaFunction::test_function_lifecycle")
def function_lifecycle(r: Replay) -> None:
    name = unique("fn")
    r.match("create_response", r.create_function(name, MemorySize=256, Timeout=5))
    r.match("get_function_response", r.lam.get_function(FunctionName=name))
    r.match(
        "update_func_conf_response",
        r.lam.update_function_configuration(
            FunctionName=name,
            Runtime=r.runtime("python3.11"),
            Description="Changed-Description",
            MemorySize=512,
            Timeout=10,
            Environment={"Variables": {"ENV_A": "a"}},
        ),
    )
    r.match("get_function_response_postupdate", r.lam.get_function(FunctionName=name))
    r.match("update_code_response", r.lam.update_function_code(FunctionName=name, ZipFile=VERSION))
    r.match("get_function_response_postcodeupdate", r.lam.get_function(FunctionName=name))
    r.match("delete_response", r.lam.delete_function(FunctionName=name))
    r.error("delete_postdelete", r.lam.delete_function, FunctionName=name)


@SCENARIOS.add("TestLambdaFunction::test_redundant_updates")
def redundant_updates(r: Replay) -> None:
    name = unique("fn")
    r.match("create_response", r.create_function(name, Description="Initial description"))
    update = partial(
        r.lam.update_function_configuration, FunctionName=name, Description="1st update description"
    )
    r.match("first_update_result", update())
    r.match("get_fn_config_result", r.lam.get_function_configuration(FunctionName=name))
    r.match("get_fn_result", r.lam.get_function(FunctionName=name))
    r.match("redundant_update_result", update())  # changes nothing, yet is a new revision
    r.match("get_fn_result_after_redundant_update", r.lam.get_function(FunctionName=name))


def ops_with_arn_qualifier_mismatch(operation: str, r: Replay) -> None:
    call = getattr(r.lam, operation)
    arn = f"{ARN}some-function"
    r.error("not_match_exception", call, FunctionName=f"{arn}:1", Qualifier="$LATEST")
    r.error("match_exception", call, FunctionName=f"{arn}:$LATEST", Qualifier="$LATEST")


def ops_on_nonexisting_version(operation: str, r: Replay) -> None:
    name = unique("i-exist")
    r.matcher.bind("<fn-name>", name)
    r.create_function(name, Description="Initial description")
    call = getattr(r.lam, operation)
    r.error("version_not_found_exception", call, FunctionName=name, Qualifier="1221")


def ops_on_nonexisting_fn(operation: str, r: Replay) -> None:
    name = unique("i-dont-exist")
    r.matcher.bind("<nonexisting-fn-name>", name)
    r.error("not_found_exception", getattr(r.lam, operation), FunctionName=name)


def get_function_wrong_region(operation: str, r: Replay) -> None:
    name = unique("i-exist")
    r.matcher.bind("<fn-name>", name)
    r.create_function(name, Description="Initial description")
    wrong = "eu-central-1"
    r.matcher.bind("<wrong-region>", wrong)
    arn = f"arn:aws:lambda:{wrong}:{ACCOUNT}:function:{name}"
    r.error("wrong_region_exception", getattr(r.lam, operation), FunctionName=arn)


for operation in ("delete_function", "get_function", "get_function_configuration"):
    SCENARIOS.add(f"TestLambdaFunction::test_ops_with_arn_qualifier_mismatch[{operation}]")(
        partial(ops_with_arn_qualifier_mismatch, operation)
    )
for operation in ("get_function", "get_function_configuration", "get_function_event_invoke_config"):
    SCENARIOS.add(f"TestLambdaFunction::test_ops_on_nonexisting_version[{operation}]")(
        partial(ops_on_nonexisting_version, operation)
    )
for operation in (
    "delete_function",
    "get_function",
    "get_function_configuration",
    "get_function_url_config",
    "get_function_event_invoke_config",
    "get_function_concurrency",
):  # not get_function_code_signing_config: nimbus has no code signing
    SCENARIOS.add(f"TestLambdaFunction::test_ops_on_nonexisting_fn[{operation}]")(
        partial(ops_on_nonexisting_fn, operation)
    )
for operation in (
    "get_function",
    "get_function_configuration",
    "get_function_url_config",
    "get_function_event_invoke_config",
    "get_function_concurrency",
    "delete_function",
    "invoke",
):  # not get_function_code_signing_config: nimbus has no code signing
    SCENARIOS.add(f"TestLambdaFunction::test_get_function_wrong_region[{operation}]")(
        partial(get_function_wrong_region, operation)
    )


@SCENARIOS.add("TestLambdaFunction::test_delete_on_nonexisting_version")
def delete_on_nonexisting_version(r: Replay) -> None:
    name = unique("i-exist")
    r.matcher.bind("<fn-name>", name)
    r.create_function(name, Description="Initial description")
    # Deleting a version that does not exist succeeds, as often as it is asked.
    r.lam.delete_function(FunctionName=name, Qualifier="1233")
    r.lam.delete_function(FunctionName=name, Qualifier="1233")
    r.lam.delete_function(FunctionName=name)
    r.error("delete_function_response_non_existent", r.lam.delete_function, FunctionName=name)
    r.error(
        "delete_function_response_non_existent_with_qualifier",
        r.lam.delete_function,
        FunctionName=name,
        Qualifier="1233",
    )


def create_kwargs(r: Replay, **kwargs: Any) -> dict[str, Any]:
    request = {
        "FunctionName": unique("invalid-function"),
        "Handler": "index.handler",
        "Code": {"ZipFile": ECHO},
        "PackageType": "Zip",
        "Role": r.role,
        "Runtime": r.runtime("python3.12"),
    }
    return {**request, **kwargs}


@SCENARIOS.add("TestLambdaFunction::test_create_lambda_exceptions")
def create_lambda_exceptions(r: Replay) -> None:
    create = r.lam.create_function
    r.error("invalid_role_arn_exc", create, **create_kwargs(r, Role="r1"))
    r.error("invalid_runtime_exc", create, **create_kwargs(r, Runtime="non-existent-runtime"))
    r.error("uppercase_runtime_exc", create, **create_kwargs(r, Runtime="PYTHON3.9"))
    r.error("empty_architectures", create, **create_kwargs(r, Architectures=[]))
    r.error(
        "multiple_architectures", create, **create_kwargs(r, Architectures=["x86_64", "arm64"])
    )
    r.error("uppercase_architecture", create, **create_kwargs(r, Architectures=["X86_64"]))
    bad_zip = {"ZipFile": b"this is not a zipfile, just a random string"}
    r.error(
        "invalid_zip_exc", create, **create_kwargs(r, Code=bad_zip, Runtime=r.runtime("python3.9"))
    )


@SCENARIOS.add("TestLambdaFunction::test_update_lambda_exceptions")
def update_lambda_exceptions(r: Replay) -> None:
    request = create_kwargs(r)
    name = request["FunctionName"]
    r.lam.create_function(**request)
    update = r.lam.update_function_configuration
    r.error("invalid_role_arn_exc", update, FunctionName=name, Role="r1")
    r.error("invalid_runtime_exc", update, FunctionName=name, Runtime="non-existent-runtime")
    r.error("uppercase_runtime_exc", update, FunctionName=name, Runtime="PYTHON3.9")


@SCENARIOS.add("TestLambdaFunction::test_list_functions")
def list_functions(r: Replay) -> None:
    first, second = unique("list-fn-1"), unique("list-fn-2")
    r.match("create_response_1", r.create_function(first, Publish=True))
    r.match("create_response_2", r.create_function(second))
    r.error(
        "list_functions_invalid_functionversion", r.lam.list_functions, FunctionVersion="invalid"
    )
    pages = r.lam.get_paginator("list_functions")
    ours = (first, second)
    for key, kwargs in (("list_all", {"FunctionVersion": "ALL"}), ("list_default", {})):
        listed = pages.paginate(**kwargs, PaginationConfig={"PageSize": 1}).build_full_result()
        functions = [f for f in listed["Functions"] if f["FunctionName"] in ours]
        r.match(key, {"Functions": sorted(functions, key=lambda f: f["FunctionArn"])})


@SCENARIOS.add("TestLambdaFunction::test_function_arns")
def function_arns(r: Replay) -> None:
    r.match("create-function-arn-response", r.create_function(ARN + unique("test-function-arn")))
    partial_arn = f"{ACCOUNT}:function:{unique('test-partial-arn')}"
    r.match("create-function-partial-arn-response", r.create_function(partial_arn))
    create = r.lam.create_function
    r.error(
        "invalid_function_name_exc",
        create,
        **create_kwargs(r, FunctionName="invalid:function:name"),
    )
    r.error("long_function_name_exc", create, **create_kwargs(r, FunctionName="a" * 65))
    long_name = "a" * (140 - len(ARN) + 1)
    r.matcher.bind("<function-name>", long_name)
    r.error("long_function_arn_exc", create, **create_kwargs(r, FunctionName=ARN + long_name))
    other_region = f"arn:aws:lambda:ap-southeast-1:{ACCOUNT}:function:{unique('arn')}"
    r.error("function_arn_other_region_exc", create, **create_kwargs(r, FunctionName=other_region))
    other_account = f"arn:aws:lambda:{REGION}:123456789012:function:{unique('arn')}"
    r.error(
        "function_arn_other_account_exc", create, **create_kwargs(r, FunctionName=other_account)
    )


@SCENARIOS.add("TestLambdaFunction::test_lambda_code_location_zipfile")
def lambda_code_location_zipfile(r: Replay) -> None:
    request = create_kwargs(r, FunctionName=unique("code-function"))
    name = request["FunctionName"]
    r.match("create-response-zip-file", r.lam.create_function(**request))
    steps = (("get-function-response", ECHO), ("get-function-response-updated", VERSION))
    for key, package in steps:
        if package is VERSION:
            r.match(
                "update-function-response",
                r.lam.update_function_code(FunctionName=name, ZipFile=VERSION),
            )
        got = r.match(key, r.lam.get_function(FunctionName=name))
        downloaded = urllib.request.urlopen(got["Code"]["Location"]).read()
        assert downloaded == package
        digest = base64.b64encode(hashlib.sha256(package).digest()).decode()
        assert got["Configuration"]["CodeSha256"] == digest
        assert got["Configuration"]["CodeSize"] == len(package)


def large_environment(r: Replay, key: str, variables: dict[str, str]) -> None:
    name = unique("large-envvar-lambda")
    environment = {"Variables": variables}
    if key.startswith("successful"):
        r.match(key, r.create_function(name, Environment=environment))
        return
    r.error(key, r.create_function, name, Environment=environment)
    with pytest.raises(r.lam.exceptions.ResourceNotFoundException):
        r.lam.get_function(FunctionName=name)  # nothing half-stored


# Environment variables may take 4 KB as compact JSON ({"KEY":"value"}), and no more.
SCENARIOS.add("TestLambdaSizeLimits::test_large_environment_variables_fails")(
    lambda r: large_environment(r, "failed_create_fn_result", {"LARGE_VAR": "x" * 4081})
)
SCENARIOS.add("TestLambdaSizeLimits::test_large_environment_fails_multiple_keys")(
    lambda r: large_environment(
        r, "failured_create_fn_result_multi_key", {"SMALL_VAR": "ok", "LARGE_VAR": "x" * 4064}
    )
)
SCENARIOS.add("TestLambdaSizeLimits::test_lambda_envvars_near_limit_succeeds")(
    lambda r: large_environment(r, "successful_create_fn_result", {"LARGE_VAR": "x" * 4080})
)


@pytest.mark.parametrize("name", SCENARIOS.names())
def test_replay(name: str, server: NimbusProcess) -> None:
    SCENARIOS.replay(name, server)
