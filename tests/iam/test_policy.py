"""Policy documents and the access decision: parsing, wildcards, NotAction, conditions,
Deny over Allow, default deny, resource policies naming principals, the principals file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from nimbus.config import Config, ConfigError
from nimbus.errors import AccessDenied
from nimbus.iam.decision import Access, authorize
from nimbus.iam.policy import Policy, PolicyError, resource_policy_of
from nimbus.iam.principals import Principal, Principals, read_principals
from nimbus.sigv4.credentials import Credentials

FN = "arn:aws:lambda:us-east-1:000000000000:function:"


def policy(*statements: dict) -> Policy:
    return Policy.parse({"Version": "2012-10-17", "Statement": list(statements)})


def test_wildcards_case_and_default() -> None:
    p = policy({"Effect": "Allow", "Action": "lambda:Get*", "Resource": FN + "app-?"})
    assert p.evaluate("lambda:GetFunction", FN + "app-1") == "Allow"
    assert p.evaluate("LAMBDA:getfunction", FN + "app-1") == "Allow"  # actions fold case
    assert p.evaluate("lambda:GetFunction", FN + "APP-1") is None  # resources do not
    assert p.evaluate("lambda:GetFunction", FN + "app-12") is None
    assert p.evaluate("lambda:DeleteFunction", FN + "app-1") is None


def test_deny_wins_and_not_action() -> None:
    p = policy(
        {"Effect": "Allow", "Action": "*", "Resource": "*"},
        {"Effect": "Deny", "NotAction": "lambda:Get*", "Resource": FN + "prod-*"},
    )
    assert p.evaluate("lambda:GetFunction", FN + "prod-a") == "Allow"
    assert p.evaluate("lambda:InvokeFunction", FN + "prod-a") == "Deny"
    assert p.evaluate("lambda:InvokeFunction", FN + "dev-a") == "Allow"


def test_conditions() -> None:
    p = policy(
        {
            "Effect": "Allow",
            "Action": "lambda:InvokeFunctionUrl",
            "Resource": "*",
            "Condition": {"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}},
        }
    )
    assert p.evaluate("lambda:InvokeFunctionUrl", "x", {"lambda:functionurlauthtype": "AWS_IAM"})
    assert (
        p.evaluate("lambda:InvokeFunctionUrl", "x", {"lambda:functionurlauthtype": "NONE"}) is None
    )
    assert p.evaluate("lambda:InvokeFunctionUrl", "x", {}) is None


@pytest.mark.parametrize(
    ("statement", "words"),
    [
        ({"Effect": "Maybe", "Action": "*", "Resource": "*"}, "Effect must be"),
        ({"Effect": "Allow", "Resource": "*"}, "exactly one of Action and NotAction"),
        ({"Effect": "Allow", "Action": "Invoke", "Resource": "*"}, "service:Action"),
        ({"Effect": "Allow", "Action": "*", "Resource": []}, "non-empty"),
        ({"Effect": "Allow", "Action": "*", "Resource": "*", "Principal": "*"}, "no Principal"),
        (
            {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"IpAddress": {}}},
            "unsupported condition operator",
        ),
        ({"Effect": "Allow", "Action": "*", "Resource": "*", "Extra": 1}, "unknown element"),
    ],
)
def test_bad_documents_say_what_is_wrong(statement: dict, words: str) -> None:
    with pytest.raises(PolicyError, match=words):
        policy(statement)


def test_resource_policy_principals_and_lenience() -> None:
    stored = [
        {"Sid": "a", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:root"},
         "Action": "lambda:InvokeFunction", "Resource": FN + "f"},
        {"Sid": "b", "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"},
         "Action": "lambda:InvokeFunction", "Resource": FN + "f",
         "Condition": {"ArnLike": {"AWS:SourceArn": "arn:aws:s3:::bucket"}}},
        {"Sid": "c", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:user/u"},
         "Action": "lambda:InvokeFunction", "Resource": FN + "f",
         "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}},  # not evaluable: dropped
    ]  # fmt: skip
    p = resource_policy_of(stored)
    assert p is not None and len(p.statements) == 2
    user = "arn:aws:iam::000000000000:user/u"
    assert p.evaluate("lambda:InvokeFunction", FN + "f", {}, user) is None
    assert p.evaluate("lambda:InvokeFunction", FN + "f", {}, "arn:aws:iam::000000000000:root")


def _principal(*statements: dict) -> Principal:
    creds = Credentials("AKIATEST000000000001", "secret" * 4, user_name="u")
    return Principal(creds, (policy(*statements),) if statements else ())


def _decide(principal: Principal, access: Access, resource: Policy | None = None) -> None:
    async def lookup(function: str, qualifier: str) -> Policy | None:
        return resource

    asyncio.run(authorize(principal, access, lookup))


def test_decision_combines_identity_and_resource_policies() -> None:
    access = Access("lambda:InvokeFunction", FN + "f", function=("f", "$LATEST"))
    grant = resource_policy_of(
        [{"Sid": "u", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:user/u"},
          "Action": "lambda:InvokeFunction", "Resource": FN + "f"}]
    )  # fmt: skip
    with pytest.raises(AccessDenied, match="because no identity-based policy allows"):
        _decide(_principal(), access)
    _decide(_principal(), access, grant)  # the resource policy grants
    _decide(_principal({"Effect": "Allow", "Action": "lambda:*", "Resource": "*"}), access)
    with pytest.raises(AccessDenied, match="with an explicit deny in an identity-based policy"):
        _decide(
            _principal({"Effect": "Deny", "Action": "lambda:*", "Resource": "*"}), access, grant
        )
    admin = Principal(Credentials("AKIAADMIN00000000001", "s" * 20), admin=True)
    _decide(admin, access)


def test_principals_file(tmp_path: Path) -> None:
    path = tmp_path / "principals.json"
    path.write_text(json.dumps({"Principals": [
        {"UserName": "ci", "AccessKeyId": "AKIACI00000000000001", "SecretAccessKey": "s" * 20,
         "Policy": {"Statement": {"Effect": "Allow", "Action": "lambda:Get*", "Resource": "*"}}},
    ]}))  # fmt: skip
    (found,) = read_principals(path, "123456789012")
    assert found.arn == "arn:aws:iam::123456789012:user/ci"
    assert found.identity_decision("lambda:GetFunction", FN + "x") == "Allow"
    config = Config(data_dir=tmp_path, principals_file=path, account_id="123456789012")
    principals = Principals.load(config)  # with the admin pair, generated into tmp_path
    assert principals.find("AKIACI00000000000001") is not None
    assert principals.multiple

    path.write_text(json.dumps({"Principals": [{"UserName": "ci", "AccessKeyId": "short"}]}))
    with pytest.raises(ConfigError, match=r"Principals\[0\]: AccessKeyId"):
        read_principals(path, "123456789012")
    with pytest.raises(ConfigError, match="does not exist"):
        Principals.load(Config(data_dir=tmp_path, principals_file=tmp_path / "missing.json"))
