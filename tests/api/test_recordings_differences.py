"""Where nimbus answers differently from the recordings of AWS, on purpose: the visible
list of documented differences (README, "Differences from Lambda"), each with its reason
and the rewrite that turns a recorded response into nimbus' answer, so that the rest of
the response is still compared field for field; and the recorded scenarios not replayed
at all, with why.

A difference applies ``everywhere`` (to every recording, by what a response contains) or
only where a scenario declares it (``Replay.differ``), where content alone cannot tell.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nimbus.sandbox import catalog
from tests.api.test_recordings_matcher import IGNORED


def walk(node: Any, rewrite: Callable[[dict[str, Any]], None]) -> Any:
    if isinstance(node, dict):
        rewrite(node)
        for value in node.values():
            walk(value, rewrite)
    elif isinstance(node, list):
        for item in node:
            walk(item, rewrite)
    return node


def _no_runtime_version(config: dict[str, Any]) -> None:
    config.pop("RuntimeVersionConfig", None)


def _settled(config: dict[str, Any]) -> None:
    if config.get("State") == "Pending":
        config["State"] = "Active"
        config["LastUpdateStatus"] = "Successful"
        config.pop("StateReason", None)
        config.pop("StateReasonCode", None)
        config["RevisionId"] = IGNORED
    if config.get("LastUpdateStatus") == "InProgress":
        config["LastUpdateStatus"] = "Successful"
        config.pop("LastUpdateStatusReason", None)
        config.pop("LastUpdateStatusReasonCode", None)
        config["RevisionId"] = IGNORED


_RUNTIME_SET = re.compile(
    r"(at 'runtime' failed to satisfy constraint: Member must satisfy enum value set: )"
    r"\[[^\]]*\]"
)


def _host_runtimes(node: dict[str, Any]) -> None:
    listed = "[" + ", ".join(catalog.names()) + "]"
    for key, value in node.items():
        if isinstance(value, str):
            node[key] = _RUNTIME_SET.sub(lambda m: m.group(1) + listed, value)


@dataclass(frozen=True)
class Difference:
    """Where nimbus answers differently from AWS on purpose: ``rewrite`` turns a recorded
    response (every object in it, in place) into nimbus' answer; ``reason`` says why.
    ``everywhere``: applied to every recording; else only where a scenario declares it."""

    name: str
    reason: str
    rewrite: Callable[[dict[str, Any]], None]
    everywhere: bool = True


DIFFERENCES = [
    Difference(
        "no-runtime-version",
        "FunctionConfiguration has no RuntimeVersionConfig: nimbus runs the host's "
        "interpreter for a runtime and has no runtime version ARNs to report.",
        _no_runtime_version,
    ),
    Difference(
        "settled-at-once",
        "CreateFunction, UpdateFunctionCode, UpdateFunctionConfiguration and "
        "PublishVersion answer once the change is in effect: State is Active and "
        "LastUpdateStatus Successful at once (Lambda answers Pending / InProgress with a "
        "StateReason and moves on about a second later, changing the RevisionId again). "
        "Waiters and code that polls State work unchanged; the RevisionId of such an "
        "answer is the final one, so it is not compared with the recording's.",
        _settled,
    ),
    Difference(
        "host-runtimes",
        "A runtime Lambda does not know is refused with Lambda's message, but its enum value "
        "set lists the runtimes this host runs (python3.x, provided.al2023, provided.al2), "
        "not Lambda's; a Lambda runtime this host lacks gets nimbus' own message naming them.",
        _host_runtimes,
    ),
]
def _empty_layer_lists(response: dict[str, Any]) -> None:
    if "LayerVersionArn" in response:
        response.setdefault("CompatibleRuntimes", [])
        response.setdefault("CompatibleArchitectures", [])


DIFFERENCES.append(
    Difference(
        "layer-lists-always",
        "A layer version published without CompatibleRuntimes or CompatibleArchitectures "
        "is answered with them empty ([]); Lambda leaves them out. nimbus stores no "
        "difference between 'not given' and 'given empty'.",
        _empty_layer_lists,
        everywhere=False,
    )
)
DIFFERENCE = {d.name: d for d in DIFFERENCES}


# Recorded scenarios of test_lambda_api.snapshot.json that are not replayed, and why.
NOT_REPLAYED = {
    "test_oversized_unzipped_lambda": "a package of more than 250 MB unzipped, too heavy "
    "for the suite (S3 code is replayed in tests/api/test_recordings_s3_code.py)",
    "TestLambdaImages, PackageType Image": "nimbus runs .zip packages, not container images",
    "TestCodeSigningConfig, get_function_code_signing_config": "nimbus has no code signing",
    "TestLambdaEventSourceMappings, TestLambdaTag[event_source_mapping]": "event source "
    "mappings are checked against their recordings in tests/api/test_event_source_mappings.py",
    "TestLambdaSnapStart": "SnapStart (by fork) is tested in tests/api/test_snapstart.py",
    "test_vpc_config, test_invalid_vpc_config_*": "nimbus has no VPCs to check",
    "TestLambdaProvisionedConcurrency": "provisioned concurrency answers depend on the "
    "account's real quota and on how fast AWS allocates environments (IN_PROGRESS timing)",
    "TestLambdaAccountSettings": "the account's quotas are AWS's, not a nimbus host's",
    "TestLambdaRecursion, TestRuntimeValidation, TestLoggingConfig, TestPartialARNMatching": (
        "recursion config and deprecated-runtime checks are not implemented; LoggingConfig "
        "is replayed in tests/api/test_logging_config.py"
    ),
    "test_layer_function_exceptions, test_cross_region_arn_function_access": "other regions",
    "test_oversized_request_create_lambda, test_oversized_zipped_create_lambda, "
    "test_large_lambda": "50-70 MB uploads, too heavy for the suite",
    "test_lambda_concurrent_code_updates, test_lambda_concurrent_config_updates": (
        "updates are applied at once in nimbus: there is no update in progress to collide with"
    ),
    "TestLambdaTag, TestLambdaTags": "tags: not yet replayed",
    "test_publish_with_wrong_revisionid, test_add_lambda_permission_optional_fields, "
    "test_lambda_permission_versioning, test_lambda_permission_revisions, "
    "test_tag_lifecycle, test_oversized_lambda": "recorded in 2022-2024, before fields AWS "
    "answers today (LoggingConfig...); newer recordings cover the same calls",
    "test_function_revisions_permissions": "skipped in its own suite: AWS changed the API",
    "test_function_name_and_qualifier_validation[qualifier_too_long0/1, "
    "function_name_and_qualifier_too_long]": "recorded for cases the test no longer has",
}


def test_differences_are_documented() -> None:
    names = [d.name for d in DIFFERENCES]
    assert len(names) == len(set(names))
    assert all(len(d.reason) > 40 for d in DIFFERENCES)
