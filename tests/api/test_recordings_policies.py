"""Replayed recordings: resource-based policies (AddPermission, GetPolicy,
RemovePermission) on functions, versions and aliases."""

from __future__ import annotations

import uuid

import pytest

from tests.api.test_recordings import ACCOUNT, Replay, Scenarios
from tests.nimbus_process import NimbusProcess

SCENARIOS = Scenarios()
BUCKET = "arn:aws:s3:::test-bucket"
S3 = {"Action": "lambda:InvokeFunction", "StatementId": "s3", "Principal": "s3.amazonaws.com"}


def create(r: Replay, key: str | None = None, prefix: str = "lambda_func") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    created = r.create_function(name)
    if key:
        r.match(key, created)
    return name


@SCENARIOS.add("TestLambdaPermissions::test_add_lambda_permission_aws")
def add_lambda_permission_aws(r: Replay) -> None:
    name = create(r, "create_lambda")
    r.match("add_permission", r.lam.add_permission(FunctionName=name, **S3, SourceArn=BUCKET))
    r.match("get_policy", r.lam.get_policy(FunctionName=name))


@SCENARIOS.add("TestLambdaPermissions::test_remove_multi_permissions")
def remove_multi_permissions(r: Replay) -> None:
    name = create(r)
    lam = r.lam
    r.match("add_permission_1", lam.add_permission(FunctionName=name, **S3))
    sqs = {**S3, "StatementId": "sqs", "Principal": "sqs.amazonaws.com"}
    r.match("add_permission_2", lam.add_permission(FunctionName=name, **sqs, SourceArn=BUCKET))
    r.match("policy_after_2_add", lam.get_policy(FunctionName=name))
    r.error("remove_permission_exception_nonexisting_sid", lam.remove_permission,
            FunctionName=name, StatementId="non-existent")  # fmt: skip
    lam.remove_permission(FunctionName=name, StatementId="sqs")
    r.match("policy_after_removal", lam.get_policy(FunctionName=name))
    policy = r.match("policy_after_removal_attempt", lam.get_policy(FunctionName=name))
    lam.remove_permission(FunctionName=name, StatementId="s3", RevisionId=policy["RevisionId"])
    r.error("get_policy_exception_removed_all", lam.get_policy, FunctionName=name)


@SCENARIOS.add("TestLambdaPermissions::test_create_multiple_lambda_permissions")
def create_multiple_lambda_permissions(r: Replay) -> None:
    name = create(r, prefix="test-function")
    for key, service in (("add_permission_response_1", "logs"),
                         ("add_permission_response_2", "kinesis")):  # fmt: skip
        grant = {**S3, "StatementId": service, "Principal": f"{service}.amazonaws.com"}
        r.match(key, r.lam.add_permission(FunctionName=name, **grant))
    r.match("policy_after_2_add", r.lam.get_policy(FunctionName=name))


@SCENARIOS.add("TestLambdaPermissions::test_permission_exceptions")
def permission_exceptions(r: Replay) -> None:
    name = create(r)
    r.matcher.bind("<function-name>", name)
    lam = r.lam
    add, remove = lam.add_permission, lam.remove_permission
    r.error("add_permission_invalid_statement_id", add, FunctionName=name,
            **{**S3, "StatementId": "example.com"})  # fmt: skip
    r.error("add_permission_fn_qualifier_mismatch", add, FunctionName=f"{name}:alias-not-42",
            **S3, SourceArn=BUCKET, Qualifier="42")  # fmt: skip
    r.error("add_permission_fn_qualifier_latest", add, FunctionName=f"{name}:$LATEST",
            **S3, SourceArn=BUCKET, Qualifier="$LATEST")  # fmt: skip
    r.error("add_permission_principal_invalid", add, FunctionName=name,
            **{**S3, "StatementId": "lambda", "Principal": "invalid.nonaws.com"},
            SourceAccount=ACCOUNT)  # fmt: skip
    r.error("get_policy_fn_doesnotexist", lam.get_policy, FunctionName="doesnotexist")
    r.error("get_policy_fn_version_doesnotexist", lam.get_policy, FunctionName=name,
            Qualifier="77")  # fmt: skip
    r.error("add_permission_fn_doesnotexist", add, FunctionName="doesnotexist", **S3,
            SourceArn=BUCKET)  # fmt: skip
    r.error("remove_permission_policy_doesnotexist", remove, FunctionName=name, StatementId="s3")
    r.error("add_permission_fn_alias_doesnotexist", add,
            FunctionName=f"{name}:alias-doesnotexist", **S3, SourceArn=BUCKET)  # fmt: skip
    r.error("add_permission_fn_version_doesnotexist", add, FunctionName=name, **S3,
            SourceArn=BUCKET, Qualifier="42")  # fmt: skip
    r.error("add_permission_fn_qualifier_invalid", add, FunctionName=name, **S3,
            SourceArn=BUCKET, Qualifier="invalid-qualifier-with-?-char")  # fmt: skip
    r.error("add_permission_fn_qualifier_valid_doesnotexist", add, FunctionName=name, **S3,
            SourceArn=BUCKET, Qualifier="valid-with-$-but-doesnotexist")  # fmt: skip
    add(FunctionName=name, **S3, SourceArn=BUCKET)
    r.error("add_permission_conflicting_statement_id", add, FunctionName=name, **S3,
            SourceArn=BUCKET)  # fmt: skip
    r.error("remove_permission_fn_doesnotexist", remove, FunctionName="doesnotexist",
            StatementId="s3")  # fmt: skip
    r.error("remove_permission_fn_alias_doesnotexist", remove, FunctionName=name,
            StatementId="s3", Qualifier="alias-doesnotexist")  # fmt: skip


@SCENARIOS.add("TestLambdaPermissions::test_add_lambda_permission_fields")
def add_lambda_permission_fields(r: Replay) -> None:
    name = create(r)
    add = r.lam.add_permission
    invoke = {"Action": "lambda:InvokeFunction", "FunctionName": name}
    r.match("add_permission_principal_wildcard",
            add(**invoke, StatementId="wilcard", Principal="*", SourceAccount=ACCOUNT))
    r.match("add_permission_principal_service",
            add(**invoke, StatementId="lambda", Principal="lambda.amazonaws.com",
                SourceAccount=ACCOUNT))  # fmt: skip
    r.match("add_permission_principal_account",
            add(**invoke, StatementId="account-id", Principal=ACCOUNT))
    # The recording replaced the caller's IAM identity (STS, which nimbus has not) by a
    # word; any user ARN stands for it.
    r.any_value("AWS", "<user_arn>")
    user = f"arn:aws:iam::{ACCOUNT}:user/someone"
    r.match("add_permission_principal_arn",
            add(**invoke, StatementId="user-arn", Principal=user, SourceAccount=ACCOUNT))
    r.match(
        "add_permission_optional_fields",
        add(
            FunctionName=name,
            StatementId="urlPermission",
            Action="lambda:InvokeFunctionUrl",
            Principal="*",
            SourceArn=BUCKET,
            SourceAccount=ACCOUNT,
            PrincipalOrgID="o-1234567890",
            FunctionUrlAuthType="NONE",
        ),
    )
    token = "amzn1.ask.skill.xxxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
    r.match("add_permission_alexa_skill",
            add(**invoke, StatementId="alexaSkill", Principal="*", EventSourceToken=token))


@SCENARIOS.add("TestLambdaPermissions::test_lambda_permission_fn_versioning")
def lambda_permission_fn_versioning(r: Replay) -> None:
    name = create(r)
    lam = r.lam
    r.match("add_permission", lam.add_permission(FunctionName=name, **S3, SourceArn=BUCKET))
    r.match("get_policy", lam.get_policy(FunctionName=name))
    version = r.match("publish_version_result", lam.publish_version(FunctionName=name))["Version"]
    r.match("get_function_result_after_publishing", lam.get_function(FunctionName=name))
    r.match("get_policy_after_publishing_latest", lam.get_policy(FunctionName=name))
    # A policy belongs to the function, or to one version or alias: none is copied.
    r.error("get_policy_after_publishing_new_version", lam.get_policy, FunctionName=name,
            Qualifier=version)  # fmt: skip
    lam.add_permission(FunctionName=f"{name}:{version}", **S3, SourceArn=BUCKET,
                       Qualifier=version)  # fmt: skip
    r.match("get_policy_version", lam.get_policy(FunctionName=name, Qualifier=version))
    alias = r.match(
        "create_alias_response",
        lam.create_alias(FunctionName=name, Name="permission-alias", FunctionVersion=version),
    )
    r.match("get_alias", lam.get_alias(FunctionName=name, Name="permission-alias"))
    r.error("add_permission_alias_revision_exception", lam.add_permission, FunctionName=name,
            **S3, SourceArn=BUCKET, Qualifier="permission-alias", RevisionId="wrong")  # fmt: skip
    lam.add_permission(FunctionName=f"{name}:permission-alias", **S3, SourceArn=BUCKET,
                       Qualifier="permission-alias", RevisionId=alias["RevisionId"])  # fmt: skip
    r.match("get_policy_alias", lam.get_policy(FunctionName=name, Qualifier="permission-alias"))
    policy = r.match("get_policy_after_adding_to_new_version", lam.get_policy(FunctionName=name))
    lam.add_permission(FunctionName=name, **{**S3, "StatementId": "s3_2"}, SourceArn=BUCKET,
                       RevisionId=policy["RevisionId"])  # fmt: skip
    r.match("get_policy_after_adding_2", lam.get_policy(FunctionName=name))


@pytest.mark.parametrize("name", SCENARIOS.names())
def test_replay(name: str, server: NimbusProcess) -> None:
    SCENARIOS.replay(name, server)
