"""Replayed recordings: how GetFunction, DeleteFunction, Invoke and CreateFunction judge a
function name and qualifier (TestLambdaFunction::test_function_name_and_qualifier_validation,
18 names and qualifiers x 4 operations).

The recording kept, of each error, its code and the constraint violations its message
lists (sorted, counted), or its message when it lists none; the replay reads nimbus'
answer the same way. No function of these names exists on the server.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.api.test_recordings import ACCOUNT, REGION, Replay, Scenarios, recordings
from tests.nimbus_process import NimbusProcess

SCENARIOS = Scenarios()
ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function"
CASES: dict[str, dict[str, str]] = {
    "invalid_characters_in_function_name": {"FunctionName": "my-function!"},
    "function_name_is_single_invalid": {"FunctionName": "*"},
    "invalid_characters_in_qualifier": {"FunctionName": "my-function", "Qualifier": "invalid!"},
    "qualifier_too_long": {"FunctionName": "my-function", "Qualifier": "a" * 129},
    "invalid_account_id_in_partial_arn": {
        "FunctionName": "invalid-account:function:my-function"
    },
    "invalid_region_in_arn": {
        "FunctionName": f"arn:aws:lambda:invalid-region:{ACCOUNT}:function:my-function"
    },
    "non_lambda_arn": {
        "FunctionName": f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance:i-1234567890abcdef0"
    },
    "function_name_too_long": {"FunctionName": "a" * 65},
    "function_name_too_long_and_invalid_region": {
        "FunctionName": f"arn:aws:lambda:invalid-region:{ACCOUNT}:function:my-function{'a' * 170}"
    },
    "full_arn_and_qualifier_too_long_and_invalid_region": {
        "FunctionName": f"arn:aws:lambda:invalid-region:{ACCOUNT}:function:my-function-"
        + "a" * 170,
        "Qualifier": "a" * 129,
    },
    "full_arn_with_multiple_qualifiers": {"FunctionName": f"{ARN}:my-function:1:2"},
    "incomplete_arn": {"FunctionName": ARN},
    "partial_arn_with_extra_qualifier": {"FunctionName": "function:my-function:$LATEST:extra"},
    "latest_version_with_additional_qualifier": {
        "FunctionName": f"{ARN}:my-function:$LATEST",
        "Qualifier": "1",
    },
    "lowercase_latest_qualifier": {"FunctionName": f"{ARN}:my-function", "Qualifier": "$latest"},
    "missing_region_in_arn": {"FunctionName": f"arn:aws:lambda::{ACCOUNT}:function:my-function"},
    "missing_account_id_in_arn": {"FunctionName": f"arn:aws:lambda:{REGION}::function:my-function"},
    "misspelled_latest_in_arn": {"FunctionName": f"{ARN}:my-function:$LATES"},
}
OPERATIONS = ("get_function", "delete_function", "invoke", "create_function")
# The recording's own reading of an error message (its test's _extract_from_error_message).
VIOLATION = re.compile(r"(Value '.*?' at '.*?' failed to satisfy constraint: .+?(?=;|$))")
# Its regex transformers replaced runs of 'a' by <a:len(N)>; read them back.
RUNS = re.compile(r"<a:len\((\d+)\)>")


def extracted(response: dict[str, Any]) -> dict[str, Any]:
    message, code = response["Error"]["Message"], response["Error"]["Code"]
    violations = VIOLATION.findall(message)
    if violations:
        return {"Code": code, "Errors": sorted(violations), "Count": len(violations)}
    return {"Code": code, "Message": message}


def expand(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: expand(v) for k, v in node.items()}
    if isinstance(node, list):
        return [expand(v) for v in node]
    if isinstance(node, str):
        return RUNS.sub(lambda m: "a" * int(m.group(1)), node)
    return node


def name_and_qualifier(case: str, operation: str, r: Replay) -> None:
    key = f"{operation}_exception"
    r.recorded = {key: expand(r.recorded[key])}
    args = dict(CASES[case])
    call = getattr(r.lam, operation)
    if operation == "create_function":
        qualifier = args.pop("Qualifier", None)
        name = f"{args['FunctionName']}:{qualifier}" if qualifier else args["FunctionName"]
        call = r.create_function_aws
        args = {"name": name}
    with pytest.raises(ClientError) as exc:
        call(**args)
    status = exc.value.response["ResponseMetadata"]["HTTPStatusCode"]
    assert status < 500, exc.value.response
    r.match(key, extracted(exc.value.response))


SCENARIO = "TestLambdaFunction::test_function_name_and_qualifier_validation"
for case in CASES:
    for operation in OPERATIONS:
        name = f"{SCENARIO}[{case}-{operation}]"
        if name in recordings():  # (AWS accepted one: incomplete_arn-create_function)
            SCENARIOS.add(name)(partial(name_and_qualifier, case, operation))


@pytest.mark.parametrize("name", SCENARIOS.names())
def test_replay(name: str, server: NimbusProcess) -> None:
    SCENARIOS.replay(name, server)
