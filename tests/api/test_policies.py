"""Resource-based policies through boto3 and the AWS CLI against a live server:
AddPermission, GetPolicy and RemovePermission on a function, a version and an alias, with
Lambda's statement shapes, errors and revision checks."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from tests.api.conftest import error
from tests.conftest import HELLO, ROLE, aws_json
from tests.nimbus_process import NimbusProcess

ARN = "arn:aws:lambda:us-east-1:000000000000:function:"


def policy(lam, name: str, **kwargs: str) -> tuple[list[dict], str]:
    got = lam.get_policy(FunctionName=name, **kwargs)
    document = json.loads(got["Policy"])
    assert document["Version"] == "2012-10-17" and document["Id"] == "default"
    return document["Statement"], got["RevisionId"]


def test_add_get_remove_on_function(lam, fn: str) -> None:
    """Lambda's own AddPermission example, byte for byte apart from the ARN."""
    added = lam.add_permission(
        FunctionName=fn,
        StatementId="s3",
        Action="lambda:InvokeFunction",
        Principal="s3.amazonaws.com",
        SourceAccount="123456789012",
        SourceArn="arn:aws:s3:::my-bucket-1xpuxmplzrlbh",
    )
    assert added["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert added["Statement"] == (
        '{"Sid":"s3","Effect":"Allow","Principal":{"Service":"s3.amazonaws.com"},'
        f'"Action":"lambda:InvokeFunction","Resource":"{ARN}{fn}",'
        '"Condition":{"StringEquals":{"AWS:SourceAccount":"123456789012"},'
        '"ArnLike":{"AWS:SourceArn":"arn:aws:s3:::my-bucket-1xpuxmplzrlbh"}}}'
    )
    got = lam.get_policy(FunctionName=fn)
    assert got["Policy"] == (
        '{"Version":"2012-10-17","Id":"default","Statement":[' + added["Statement"] + "]}"
    )
    assert got["RevisionId"]
    # Qualifier=$LATEST reads the unqualified function's policy.
    assert lam.get_policy(FunctionName=fn, Qualifier="$LATEST")["Policy"] == got["Policy"]
    lam.add_permission(
        FunctionName=f"{ARN}{fn}",
        StatementId="xaccount",
        Action="lambda:InvokeFunction",
        Principal="223456789012",
    )
    statements, _ = policy(lam, fn)
    assert [s["Sid"] for s in statements] == ["s3", "xaccount"]
    removed = lam.remove_permission(FunctionName=fn, StatementId="s3")
    assert removed["ResponseMetadata"]["HTTPStatusCode"] == 204
    statements, _ = policy(lam, fn)
    assert [s["Sid"] for s in statements] == ["xaccount"]
    lam.remove_permission(FunctionName=fn, StatementId="xaccount")
    with pytest.raises(ClientError) as exc:
        lam.get_policy(FunctionName=fn)
    assert error(exc) == (
        "ResourceNotFoundException",
        404,
        "The resource you requested does not exist.",
    )


def test_principals_and_conditions(lam, fn: str) -> None:
    principals = {
        "apigateway.amazonaws.com": {"Service": "apigateway.amazonaws.com"},
        "alexa-appkit.amazon.com": {"Service": "alexa-appkit.amazon.com"},
        "223456789012": {"AWS": "arn:aws:iam::223456789012:root"},
        "arn:aws:iam::223456789012:role/caller": {"AWS": "arn:aws:iam::223456789012:role/caller"},
        "*": "*",
    }
    for i, (given, expected) in enumerate(principals.items()):
        out = lam.add_permission(
            FunctionName=fn, StatementId=f"p{i}", Action="lambda:*", Principal=given
        )
        assert json.loads(out["Statement"])["Principal"] == expected
    with pytest.raises(ClientError) as exc:
        lam.add_permission(FunctionName=fn, StatementId="bad", Action="*", Principal="someone")
    code, status, message = error(exc)
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert message.startswith("The provided principal was invalid.")

    everything = lam.add_permission(
        FunctionName=fn,
        StatementId="all-conditions",
        Action="lambda:InvokeFunction",
        Principal="alexa-connectedhome.amazon.com",
        SourceArn="arn:aws:execute-api:us-east-1:000000000000:abc123/*/GET/items",
        SourceAccount="000000000000",
        EventSourceToken="amzn1.ask.skill.1234-abcd",
        PrincipalOrgID="o-abcdefghij",
        InvokedViaFunctionUrl=True,
    )
    statement = json.loads(everything["Statement"])
    assert list(statement) == ["Sid", "Effect", "Principal", "Action", "Resource", "Condition"]
    assert statement["Condition"] == {
        "StringEquals": {
            "aws:PrincipalOrgID": "o-abcdefghij",
            "AWS:SourceAccount": "000000000000",
            "lambda:EventSourceToken": "amzn1.ask.skill.1234-abcd",
        },
        "ArnLike": {
            "AWS:SourceArn": "arn:aws:execute-api:us-east-1:000000000000:abc123/*/GET/items"
        },
        "Bool": {"lambda:InvokedViaFunctionUrl": "true"},
    }
    statements, _ = policy(lam, fn)
    assert statements[-1] == statement
    assert len(statements) == len(principals) + 1


def test_function_url_public_access(lam, fn: str) -> None:
    """What the console and `aws lambda add-permission --function-url-auth-type NONE` add for
    a public function URL: InvokeFunctionUrl for "*" when the URL's auth type is NONE, and
    (since October 2025) InvokeFunction when invoked through the URL."""
    url = lam.add_permission(
        FunctionName=fn,
        StatementId="FunctionURLAllowPublicAccess",
        Action="lambda:InvokeFunctionUrl",
        Principal="*",
        FunctionUrlAuthType="NONE",
    )
    assert json.loads(url["Statement"]) == {
        "Sid": "FunctionURLAllowPublicAccess",
        "Effect": "Allow",
        "Principal": "*",
        "Action": "lambda:InvokeFunctionUrl",
        "Resource": f"{ARN}{fn}",
        "Condition": {"StringEquals": {"lambda:FunctionUrlAuthType": "NONE"}},
    }
    invoke = lam.add_permission(
        FunctionName=fn,
        StatementId="FunctionURLInvokeAllowPublicAccess",
        Action="lambda:InvokeFunction",
        Principal="*",
        InvokedViaFunctionUrl=True,
    )
    assert json.loads(invoke["Statement"])["Condition"] == {
        "Bool": {"lambda:InvokedViaFunctionUrl": "true"}
    }


def test_version_and_alias_have_their_own(lam, fn: str) -> None:
    for qualifier in ("1", "live"):
        out = lam.add_permission(
            FunctionName=fn,
            StatementId="shared-sid",
            Action="lambda:InvokeFunction",
            Principal="events.amazonaws.com",
            Qualifier=qualifier,
        )
        assert json.loads(out["Statement"])["Resource"] == f"{ARN}{fn}:{qualifier}"
    # The qualifier may also come with the name.
    lam.add_permission(
        FunctionName=f"{fn}:live",
        StatementId="second",
        Action="lambda:GetFunction",
        Principal="111122223333",
    )
    statements, _ = policy(lam, fn, Qualifier="live")
    assert [s["Sid"] for s in statements] == ["shared-sid", "second"]
    assert all(s["Resource"] == f"{ARN}{fn}:live" for s in statements)
    statements, _ = policy(lam, f"{fn}:1")
    assert [s["Resource"] for s in statements] == [f"{ARN}{fn}:1"]
    with pytest.raises(ClientError) as exc:
        lam.get_policy(FunctionName=fn)  # the unqualified function has none
    assert error(exc)[0] == "ResourceNotFoundException"

    lam.remove_permission(FunctionName=fn, StatementId="shared-sid", Qualifier="1")
    with pytest.raises(ClientError) as exc:
        lam.get_policy(FunctionName=fn, Qualifier="1")
    assert error(exc)[0] == "ResourceNotFoundException"
    statements, _ = policy(lam, fn, Qualifier="live")
    assert len(statements) == 2

    with pytest.raises(ClientError) as exc:
        lam.add_permission(
            FunctionName=fn,
            StatementId="x",
            Action="lambda:InvokeFunction",
            Principal="*",
            Qualifier="$LATEST",
        )
    code, status, message = error(exc)
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert message.startswith("We currently do not support adding policies for $LATEST.")


def test_errors(lam, fn: str) -> None:
    grant = {"StatementId": "one", "Action": "lambda:InvokeFunction", "Principal": "*"}
    lam.add_permission(FunctionName=fn, **grant)
    with pytest.raises(ClientError) as exc:
        lam.add_permission(FunctionName=fn, **grant)
    assert error(exc) == (
        "ResourceConflictException",
        409,
        "The statement id (one) provided already exists. Please provide a new statement id, "
        "or remove the existing statement.",
    )
    with pytest.raises(ClientError) as exc:
        lam.remove_permission(FunctionName=fn, StatementId="two")
    assert error(exc) == (
        "ResourceNotFoundException",
        404,
        "Statement two is not found in resource policy.",
    )
    # What is missing, in Lambda's words, which depend on the operation (recorded:
    # test_permission_exceptions): a version is "Function not found", an alias "Cannot
    # find alias arn", and GetPolicy says the same of everything.
    for qualifier, missing in (("7", "Function not found"), ("nope", "Cannot find alias arn")):
        with pytest.raises(ClientError) as exc:
            lam.add_permission(FunctionName=fn, Qualifier=qualifier, **grant)
        said = f"{missing}: {ARN}{fn}:{qualifier}"
        assert error(exc) == ("ResourceNotFoundException", 404, said)
        with pytest.raises(ClientError) as exc:
            lam.remove_permission(FunctionName=fn, StatementId="one", Qualifier=qualifier)
        assert error(exc) == ("ResourceNotFoundException", 404, said)
        with pytest.raises(ClientError) as exc:
            lam.get_policy(FunctionName=fn, Qualifier=qualifier)
        assert error(exc) == (
            "ResourceNotFoundException", 404, "The resource you requested does not exist."
        )
    for call, said in (
        (lambda: lam.add_permission(FunctionName="ghost", **grant),
         f"Function not found: {ARN}ghost"),
        (lambda: lam.get_policy(FunctionName="ghost"),
         "The resource you requested does not exist."),
        (lambda: lam.remove_permission(FunctionName="ghost", StatementId="one"),
         f"No policy found for: {ARN}ghost"),
    ):  # fmt: skip
        with pytest.raises(ClientError) as exc:
            call()
        assert error(exc) == ("ResourceNotFoundException", 404, said)
    with pytest.raises(ClientError) as exc:
        lam.remove_permission(FunctionName=fn, StatementId="one", Qualifier="live")
    assert error(exc) == (
        "ResourceNotFoundException",
        404,
        "No policy is associated with the given resource.",
    )

    # The service model's constraints, reported together.
    bad = {
        "StatementId": "has space",
        "Action": "lambda:Invoke-Function",
        "Principal": "*",
        "SourceAccount": "12345",
        "PrincipalOrgID": "org-abcdefgh",
        "FunctionUrlAuthType": "OPEN",
    }
    with pytest.raises(ClientError) as exc:
        lam.add_permission(FunctionName=fn, **bad)
    code, status, message = error(exc)
    assert (code, status) == ("ValidationException", 400)
    assert message.startswith("5 validation errors detected: ")
    for member in (
        "statementId",
        "action",
        "sourceAccount",
        "principalOrgID",
        "functionUrlAuthType",
    ):
        assert f"at '{member}'" in message
    with pytest.raises(ClientError) as exc:
        lam.add_permission(FunctionName=fn, StatementId="s", Action="*", Principal="a b")
    assert error(exc)[0] == "ValidationException"
    statements, _ = policy(lam, fn)
    assert [s["Sid"] for s in statements] == ["one"]  # nothing half-stored


def test_revision_ids(lam, fn: str) -> None:
    grant = {"Action": "lambda:InvokeFunction", "Principal": "sns.amazonaws.com"}
    # Before any statement, the function's RevisionId is what Lambda compares against.
    function_rev = lam.get_function(FunctionName=fn)["Configuration"]["RevisionId"]
    with pytest.raises(ClientError) as exc:
        lam.add_permission(FunctionName=fn, StatementId="a", RevisionId="stale", **grant)
    assert error(exc)[:2] == ("PreconditionFailedException", 412)
    lam.add_permission(FunctionName=fn, StatementId="a", RevisionId=function_rev, **grant)
    _, first = policy(lam, fn)
    lam.add_permission(FunctionName=fn, StatementId="b", RevisionId=first, **grant)
    _, second = policy(lam, fn)
    assert second != first
    with pytest.raises(ClientError) as exc:
        lam.add_permission(FunctionName=fn, StatementId="c", RevisionId=first, **grant)
    code, status, message = error(exc)
    assert (code, status) == ("PreconditionFailedException", 412)
    assert message.startswith("The Revision Id provided does not match the latest Revision Id.")
    with pytest.raises(ClientError) as exc:
        lam.remove_permission(FunctionName=fn, StatementId="a", RevisionId=first)
    assert error(exc)[:2] == ("PreconditionFailedException", 412)
    statements, _ = policy(lam, fn)
    assert [s["Sid"] for s in statements] == ["a", "b"]
    lam.remove_permission(FunctionName=fn, StatementId="a", RevisionId=second)
    statements, third = policy(lam, fn)
    assert [s["Sid"] for s in statements] == ["b"] and third not in (first, second)

    alias_rev = lam.get_alias(FunctionName=fn, Name="live")["RevisionId"]
    lam.add_permission(
        FunctionName=fn, StatementId="a", Qualifier="live", RevisionId=alias_rev, **grant
    )


def test_deleting_alias_or_function_removes_policies(lam, fn: str) -> None:
    grant = {"StatementId": "s", "Action": "lambda:InvokeFunction", "Principal": "*"}
    for qualifier in (None, "1", "live"):
        lam.add_permission(FunctionName=f"{fn}:{qualifier}" if qualifier else fn, **grant)
    lam.delete_alias(FunctionName=fn, Name="live")
    lam.create_alias(FunctionName=fn, Name="live", FunctionVersion="1")
    with pytest.raises(ClientError) as exc:
        lam.get_policy(FunctionName=fn, Qualifier="live")
    assert error(exc)[2] == "The resource you requested does not exist."
    assert policy(lam, fn, Qualifier="1")[0][0]["Sid"] == "s"

    lam.delete_function(FunctionName=fn)
    lam.create_function(
        FunctionName=fn,
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": HELLO},
        Publish=True,
    )
    for qualifier in (None, "1"):
        with pytest.raises(ClientError) as exc:
            lam.get_policy(FunctionName=fn, **({"Qualifier": qualifier} if qualifier else {}))
        assert error(exc)[2] == "The resource you requested does not exist."


def test_aws_cli_add_permission(server: NimbusProcess, lam, fn: str) -> None:
    """The AWS CLI, pointed at nimbus, grants and revokes as on Lambda."""

    def run(*args: str) -> dict:
        return aws_json(server.endpoint, "lambda", *args)

    added = run(
        "add-permission",
        "--function-name",
        fn,
        "--statement-id",
        "FunctionURLAllowPublicAccess",
        "--action",
        "lambda:InvokeFunctionUrl",
        "--principal",
        "*",
        "--function-url-auth-type",
        "NONE",
    )
    statement = json.loads(added["Statement"])
    assert statement["Condition"] == {"StringEquals": {"lambda:FunctionUrlAuthType": "NONE"}}
    run(
        "add-permission",
        "--function-name",
        fn,
        "--qualifier",
        "live",
        "--statement-id",
        "s3-invoke",
        "--action",
        "lambda:InvokeFunction",
        "--principal",
        "s3.amazonaws.com",
        "--source-arn",
        "arn:aws:s3:::my-bucket",
        "--source-account",
        "000000000000",
    )
    got = run("get-policy", "--function-name", fn, "--qualifier", "live")
    (on_alias,) = json.loads(got["Policy"])["Statement"]
    assert on_alias["Resource"] == f"{ARN}{fn}:live"
    assert on_alias["Condition"]["ArnLike"] == {"AWS:SourceArn": "arn:aws:s3:::my-bucket"}
    assert got["RevisionId"] == lam.get_policy(FunctionName=fn, Qualifier="live")["RevisionId"]
    run(
        "remove-permission",
        "--function-name",
        fn,
        "--statement-id",
        "FunctionURLAllowPublicAccess",
    )
    with pytest.raises(ClientError):
        lam.get_policy(FunctionName=fn)
