"""Access control end to end: a live nimbus with api_auth = "sigv4" and a principals file,
driven with boto3 under several principals' keys as users would. A principal without
permission cannot invoke (AccessDeniedException in IAM's words); AddPermission grants;
an explicit Deny wins; function URLs with AuthType AWS_IAM honour identity and resource
policies (requests signed with botocore's SigV4Auth for service lambda); SQS requests
are checked too; and `nimbus up` refuses to serve without auth on a public address."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config as BotoConfig
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.conftest import ROLE, admin_keys, live_server, make_zip, python_runtime
from tests.nimbus_process import NimbusProcess, free_port

pytestmark = pytest.mark.sandbox

ACCOUNT = "000000000000"
REGION = "us-east-1"
FUNCTIONS = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:"
ECHO = make_zip(
    {"app.py": "def handler(event, context):\n    return {'statusCode': 200, 'body': 'hi'}\n"}
)

# name -> (access key, secret, policy documents)
PRINCIPALS: dict[str, tuple[str, str, list[dict[str, Any]]]] = {
    "nobody": ("AKIANOBODY0000000001", "nobody-secret-0123456789abcdef", []),
    "invoker": (
        "AKIAINVOKER000000001",
        "invoker-secret-0123456789abcdef",
        [
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["lambda:InvokeFunction", "lambda:GetFunction*"],
                        "Resource": f"{FUNCTIONS}team-*",
                    },
                    {
                        "Effect": "Deny",
                        "Action": "lambda:*",
                        "Resource": [f"{FUNCTIONS}team-secret*"],
                    },
                    {"Effect": "Allow", "Action": "sqs:*", "Resource": "*"},
                    {
                        "Effect": "Deny",
                        "Action": "sqs:*",
                        "Resource": f"arn:aws:sqs:{REGION}:{ACCOUNT}:secret-*",
                    },
                    {"Effect": "Allow", "Action": ["scheduler:*", "logs:*"], "Resource": "*"},
                    {
                        "Effect": "Deny",
                        "Action": ["scheduler:*", "logs:*"],
                        "Resource": [
                            f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/*/secret-*",
                            f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/secret-*",
                        ],
                    },
                ],
            }
        ],
    ),
    "deployer": (
        "AKIADEPLOYER00000001",
        "deployer-secret-0123456789abcdef",
        [
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": [
                            "lambda:CreateFunction", "lambda:UpdateFunctionCode",
                            "lambda:PublishLayerVersion", "lambda:GetFunction",
                        ],
                        "Resource": "*",
                    },
                    {
                        "Effect": "Allow",
                        "Action": "s3:GetObject",
                        "Resource": "arn:aws:s3:::*/public/*",
                    },
                ],
            }
        ],
    ),
}


def user_arn(name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:user/{name}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NimbusProcess]:
    data = tmp_path_factory.mktemp("access") / "data"
    data.mkdir(parents=True)
    entries = [
        {"UserName": name, "AccessKeyId": key, "SecretAccessKey": secret, "Policies": docs}
        for name, (key, secret, docs) in PRINCIPALS.items()
    ]
    (data / "principals.json").write_text(json.dumps({"Principals": entries}))
    with live_server(data, {"NIMBUS_API_AUTH": "sigv4"}) as proc:
        yield proc


def client(server: NimbusProcess, who: str, service: str = "lambda") -> Any:
    if who == "admin":
        key, secret = admin_keys(server)
    else:
        key, secret, _ = PRINCIPALS[who]
    return boto3.client(
        service,
        endpoint_url=server.endpoint,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=BotoConfig(retries={"max_attempts": 0}, read_timeout=120),
    )


@pytest.fixture(scope="module")
def admin(server: NimbusProcess) -> Any:
    return client(server, "admin")


def new_function(admin: Any, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    admin.create_function(
        FunctionName=name,
        Runtime=python_runtime(),
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": ECHO},
    )
    admin.get_waiter("function_active_v2").wait(FunctionName=name)
    return name


def denied(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    response = exc.value.response
    return (
        response["Error"]["Code"],
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Message"],
    )


def no_identity_policy(who: str, action: str, resource: str) -> tuple[str, int, str]:
    return (
        "AccessDeniedException",
        403,
        f"User: {user_arn(who)} is not authorized to perform: {action} on resource: "
        f"{resource} because no identity-based policy allows the {action} action",
    )


def test_principal_without_permission_cannot_invoke(server: NimbusProcess, admin: Any) -> None:
    name = new_function(admin, "locked")
    nobody = client(server, "nobody")
    with pytest.raises(ClientError) as exc:
        nobody.invoke(FunctionName=name, Payload=b"{}")
    assert denied(exc) == no_identity_policy("nobody", "lambda:InvokeFunction", FUNCTIONS + name)
    assert exc.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"] == (
        "AccessDeniedException"
    )
    with pytest.raises(ClientError) as exc:
        nobody.list_functions()
    assert denied(exc) == no_identity_policy("nobody", "lambda:ListFunctions", "*")
    with pytest.raises(ClientError) as exc:
        nobody.create_function(
            FunctionName="sneaky", Runtime=python_runtime(), Role=ROLE,
            Handler="app.handler", Code={"ZipFile": ECHO},
        )  # fmt: skip
    assert denied(exc) == no_identity_policy(
        "nobody", "lambda:CreateFunction", FUNCTIONS + "sneaky"
    )
    # Nothing was created, and the admin still may do everything.
    assert "sneaky" not in [f["FunctionName"] for f in admin.list_functions()["Functions"]]


def test_identity_policy_allows_only_what_it_names(server: NimbusProcess, admin: Any) -> None:
    name = new_function(admin, "team")
    invoker = client(server, "invoker")
    assert invoker.invoke(FunctionName=name, Payload=b"{}")["StatusCode"] == 200
    assert invoker.get_function(FunctionName=name)["Configuration"]["FunctionName"] == name
    # Qualified ARNs are other resources: "team-*" covers them too (the wildcard).
    admin.publish_version(FunctionName=name)
    assert invoker.invoke(FunctionName=name, Qualifier="1", Payload=b"{}")["StatusCode"] == 200
    with pytest.raises(ClientError) as exc:
        invoker.delete_function(FunctionName=name)
    assert denied(exc) == no_identity_policy("invoker", "lambda:DeleteFunction", FUNCTIONS + name)
    other = new_function(admin, "other")
    with pytest.raises(ClientError) as exc:
        invoker.invoke(FunctionName=other, Payload=b"{}")
    assert denied(exc)[0] == "AccessDeniedException"
    admin.get_function(FunctionName=name)  # still there


def test_add_permission_grants_and_remove_revokes(server: NimbusProcess, admin: Any) -> None:
    name = new_function(admin, "shared")
    nobody = client(server, "nobody")
    # Granting the account does not grant its users (they need an identity policy).
    admin.add_permission(
        FunctionName=name, StatementId="account", Action="lambda:InvokeFunction",
        Principal=ACCOUNT,
    )  # fmt: skip
    with pytest.raises(ClientError) as exc:
        nobody.invoke(FunctionName=name, Payload=b"{}")
    assert denied(exc)[0] == "AccessDeniedException"

    admin.add_permission(
        FunctionName=name, StatementId="nobody", Action="lambda:InvokeFunction",
        Principal=user_arn("nobody"),
    )  # fmt: skip
    assert nobody.invoke(FunctionName=name, Payload=b"{}")["StatusCode"] == 200
    # The grant is for invoking only.
    with pytest.raises(ClientError) as exc:
        nobody.get_function(FunctionName=name)
    assert denied(exc) == no_identity_policy("nobody", "lambda:GetFunction", FUNCTIONS + name)

    admin.remove_permission(FunctionName=name, StatementId="nobody")
    with pytest.raises(ClientError) as exc:
        nobody.invoke(FunctionName=name, Payload=b"{}")
    assert denied(exc)[0] == "AccessDeniedException"


def test_explicit_deny_wins(server: NimbusProcess, admin: Any) -> None:
    name = new_function(admin, "team-secret")
    invoker = client(server, "invoker")
    admin.add_permission(
        FunctionName=name, StatementId="invoker", Action="lambda:InvokeFunction",
        Principal=user_arn("invoker"),
    )  # fmt: skip
    with pytest.raises(ClientError) as exc:
        invoker.invoke(FunctionName=name, Payload=b"{}")
    assert denied(exc) == (
        "AccessDeniedException",
        403,
        f"User: {user_arn('invoker')} is not authorized to perform: lambda:InvokeFunction on "
        f"resource: {FUNCTIONS}{name} with an explicit deny in an identity-based policy",
    )


def test_other_services_are_checked(server: NimbusProcess) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    url = client(server, "invoker", "sqs").create_queue(QueueName=queue)["QueueUrl"]
    nobody = client(server, "nobody", "sqs")
    with pytest.raises(ClientError) as exc:
        nobody.send_message(QueueUrl=url, MessageBody="x")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert (
        "is not authorized to perform: sqs:SendMessage on resource: "
        in (exc.value.response["Error"]["Message"])
    )
    assert f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}" in exc.value.response["Error"]["Message"]


def test_api_gateway_and_nimbus_endpoints_are_checked(server: NimbusProcess) -> None:
    with pytest.raises(ClientError) as exc:
        client(server, "nobody", "apigatewayv2").get_apis()
    assert denied(exc) == no_identity_policy(
        "nobody", "apigateway:GET", f"arn:aws:apigateway:{REGION}::/v2/apis"
    )
    url = f"{server.endpoint}/_nimbus/dead-letters"
    with httpx.Client(timeout=60) as http:
        refused = http.send(signed("nobody", server, "GET", url))
        assert refused.status_code == 403
        assert (
            refused.json()["Message"]
            == no_identity_policy("nobody", "nimbus:ListDeadLetters", "*")[2]
        )
        assert http.send(signed("admin", server, "GET", url)).status_code == 200


# -- function URLs with AuthType AWS_IAM --------------------------------------------------


def signed(who: str, server: NimbusProcess, method: str, url: str) -> httpx.Request:
    if who == "admin":
        key, secret = admin_keys(server)
    else:
        key, secret, _ = PRINCIPALS[who]
    request = AWSRequest(method=method, url=url, data=b"", headers={})
    SigV4Auth(Credentials(key, secret), "lambda", REGION).add_auth(request)
    return httpx.Request(method, url, headers=dict(request.headers.items()))


def test_aws_iam_url_honours_policies(server: NimbusProcess, admin: Any) -> None:
    name = new_function(admin, "web")
    url = admin.create_function_url_config(FunctionName=name, AuthType="AWS_IAM")["FunctionUrl"]
    with httpx.Client(timeout=60) as http:
        assert http.get(url).status_code == 403  # unsigned
        assert http.send(signed("admin", server, "GET", url)).status_code == 200
        refused = http.send(signed("nobody", server, "GET", url))
        assert refused.status_code == 403
        assert refused.headers["x-amzn-errortype"] == "AccessDeniedException"
        # Signed by an unknown key: refused the same way.
        request = AWSRequest(method="GET", url=url, data=b"", headers={})
        SigV4Auth(Credentials("AKIAUNKNOWN000000001", "x" * 30), "lambda", REGION).add_auth(request)
        assert http.get(url, headers=dict(request.headers.items())).status_code == 403

        # A resource policy for another action, or for NONE URLs, does not open it...
        admin.add_permission(
            FunctionName=name, StatementId="invoke", Action="lambda:InvokeFunction",
            Principal=user_arn("nobody"),
        )  # fmt: skip
        admin.add_permission(
            FunctionName=name, StatementId="none-urls", Action="lambda:InvokeFunctionUrl",
            Principal=user_arn("nobody"), FunctionUrlAuthType="NONE",
        )  # fmt: skip
        assert http.send(signed("nobody", server, "GET", url)).status_code == 403
        # ... lambda:InvokeFunctionUrl for AWS_IAM URLs does.
        admin.add_permission(
            FunctionName=name, StatementId="url", Action="lambda:InvokeFunctionUrl",
            Principal=user_arn("nobody"), FunctionUrlAuthType="AWS_IAM",
        )  # fmt: skip
        granted = http.send(signed("nobody", server, "GET", url))
        assert granted.status_code == 200, granted.text
        assert granted.text == "hi"


def test_aws_iam_url_explicit_deny_wins(server: NimbusProcess, admin: Any) -> None:
    name = new_function(admin, "team-secret-web")
    url = admin.create_function_url_config(FunctionName=name, AuthType="AWS_IAM")["FunctionUrl"]
    admin.add_permission(
        FunctionName=name, StatementId="url", Action="lambda:InvokeFunctionUrl",
        Principal=user_arn("invoker"), FunctionUrlAuthType="AWS_IAM",
    )  # fmt: skip
    with httpx.Client(timeout=60) as http:
        assert http.send(signed("invoker", server, "GET", url)).status_code == 403
        assert http.send(signed("admin", server, "GET", url)).status_code == 200


# -- the principals file and the bind address ------------------------------------------------


def nimbus_up(data: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "nimbus", "up", "--data-dir", str(data), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**_clean_env(), **(env or {})},
    )


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("NIMBUS_")}


def test_damaged_principals_file_stops_the_server(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    bad = {"Principals": [{"UserName": "x", "AccessKeyId": "AKIAXXXXXXXXXXXXXXX1",
                           "SecretAccessKey": "s" * 20,
                           "Policy": {"Statement": [{"Effect": "Maybe", "Action": "*",
                                                     "Resource": "*"}]}}]}  # fmt: skip
    (data / "principals.json").write_text(json.dumps(bad))
    proc = nimbus_up(data, "--port", str(free_port()), env={"NIMBUS_API_AUTH": "sigv4"})
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "Principals[0]" in out and "Effect must be" in out, out


def test_up_refuses_public_bind_without_auth(tmp_path: Path) -> None:
    proc = nimbus_up(tmp_path / "data", "--host", "0.0.0.0", "--port", str(free_port()))
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "refusing to listen on 0.0.0.0" in out and "--insecure" in out, out
    assert not (tmp_path / "data").exists()  # refused before anything was made


def test_up_insecure_or_with_auth_serves_a_public_bind(tmp_path: Path) -> None:
    for args, env in (
        (["--insecure"], {}),
        ([], {"NIMBUS_API_AUTH": "sigv4"}),
    ):
        port = free_port()
        proc = nimbus_up(tmp_path / f"data{port}", "--host", "0.0.0.0", "--port", str(port), *args,
                         env=env)  # fmt: skip
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith("nimbus ready:"):
                    break
            else:
                pytest.fail("nimbus did not start")
            assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=30).status_code == 200
        finally:
            proc.terminate()
            proc.wait(timeout=30)


# -- every way of naming a resource, and what names none ------------------------------------


def test_a_queue_deny_holds_whatever_form_names_the_queue(server: NimbusProcess) -> None:
    admin_sqs = client(server, "admin", "sqs")
    invoker = client(server, "invoker", "sqs")
    secret = f"secret-{uuid.uuid4().hex[:8]}"
    url = admin_sqs.create_queue(QueueName=secret)["QueueUrl"]
    arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{secret}"
    # The SQS API takes the queue's URL, its bare name, <account>/<name>, with or
    # without a trailing slash: each is the same queue, so each meets the Deny.
    for form in (url, secret, f"{ACCOUNT}/{secret}", url + "/", secret + "/"):
        with pytest.raises(ClientError) as exc:
            invoker.send_message(QueueUrl=form, MessageBody="x")
        assert denied(exc)[1] == 403, form
        assert f"sqs:SendMessage on resource: {arn} with an explicit deny" in denied(exc)[2]
    for call in (
        lambda: invoker.get_queue_url(QueueName=secret),
        lambda: invoker.create_queue(QueueName=secret),
        lambda: invoker.purge_queue(QueueUrl=secret),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert f"on resource: {arn} with an explicit deny" in denied(exc)[2]
    assert admin_sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages") is None
    # The forms work where nothing denies them: the queue named by its bare name.
    open_queue = f"open-{uuid.uuid4().hex[:8]}"
    open_url = invoker.create_queue(QueueName=open_queue)["QueueUrl"]
    invoker.send_message(QueueUrl=open_queue, MessageBody="by name")
    got = admin_sqs.receive_message(QueueUrl=open_url, WaitTimeSeconds=5)["Messages"]
    assert [m["Body"] for m in got] == ["by name"]


def test_schedule_and_log_group_denies_hold(server: NimbusProcess, admin: Any) -> None:
    scheduler = client(server, "invoker", "scheduler")
    schedule = f"secret-{uuid.uuid4().hex[:8]}"
    arn = f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/{schedule}"
    with pytest.raises(ClientError) as exc:
        scheduler.create_schedule(
            Name=schedule, ScheduleExpression="rate(1 hour)", FlexibleTimeWindow={"Mode": "OFF"},
            Target={"Arn": FUNCTIONS + "x", "RoleArn": ROLE},
        )  # fmt: skip
    assert f"scheduler:CreateSchedule on resource: {arn} with an explicit deny" in (
        denied(exc)[2]
    )
    with pytest.raises(ClientError) as exc:
        scheduler.get_schedule(Name=schedule)
    assert f"on resource: {arn} with an explicit deny" in denied(exc)[2]
    assert scheduler.list_schedules()["Schedules"] is not None  # the rest is allowed

    logs = client(server, "invoker", "logs")
    group = f"/aws/lambda/secret-{uuid.uuid4().hex[:8]}"
    group_arn = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}"
    # By name, by this account's ARN, and by an ARN naming another account (which the
    # handler reads as this account's group): each is the denied group.
    for named in (
        {"logGroupName": group},
        {"logGroupIdentifier": group_arn},
        {"logGroupIdentifier": f"arn:aws:logs:{REGION}:999999999999:log-group:{group}:*"},
    ):
        with pytest.raises(ClientError) as exc:
            logs.filter_log_events(**named)
        assert f"logs:FilterLogEvents on resource: {group_arn} with an explicit deny" in (
            denied(exc)[2]
        ), named


def test_a_request_naming_no_action_is_refused_for_a_principal(server: NimbusProcess) -> None:
    url = f"{server.endpoint}/_nimbus/no-such-endpoint"
    with httpx.Client(timeout=60) as http:
        refused = http.send(signed("invoker", server, "GET", url))
        assert refused.status_code == 403
        assert refused.headers["x-amzn-errortype"] == "AccessDeniedException"
        assert refused.json()["Message"] == (
            f"User: {user_arn('invoker')} is not authorized to perform this request: "
            "nimbus could not tell which action it is."
        )
        # The admin's request goes on to the route, which answers it.
        assert http.send(signed("admin", server, "GET", url)).status_code == 404


def test_code_from_s3_needs_the_callers_s3_read(server: NimbusProcess, admin: Any) -> None:
    s3 = client(server, "admin", "s3")
    bucket = f"code-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="public/app.zip", Body=ECHO)
    s3.put_object(Bucket=bucket, Key="private/app.zip", Body=ECHO)
    deployer = client(server, "deployer")
    name = f"froms3-{uuid.uuid4().hex[:8]}"

    def create(key: str) -> Any:
        return deployer.create_function(
            FunctionName=name, Runtime=python_runtime(), Role=ROLE, Handler="app.handler",
            Code={"S3Bucket": bucket, "S3Key": key},
        )  # fmt: skip

    def refusal(key: str) -> str:
        return (
            "Your access has been denied by S3, please make sure your request credentials "
            f"have permission to GetObject for {bucket}/{key}. S3 Error Code: AccessDenied. "
            f"S3 Error Message: User: {user_arn('deployer')} is not authorized to perform: "
            f"s3:GetObject on resource: arn:aws:s3:::{bucket}/{key} because no "
            "identity-based policy allows the s3:GetObject action"
        )

    with pytest.raises(ClientError) as exc:
        create("private/app.zip")
    assert denied(exc) == ("AccessDeniedException", 403, refusal("private/app.zip"))
    with pytest.raises(ClientError):
        admin.get_function(FunctionName=name)  # nothing was created
    create("public/app.zip")
    with pytest.raises(ClientError) as exc:
        deployer.update_function_code(FunctionName=name, S3Bucket=bucket, S3Key="private/app.zip")
    assert denied(exc) == ("AccessDeniedException", 403, refusal("private/app.zip"))
    with pytest.raises(ClientError) as exc:
        deployer.publish_layer_version(
            LayerName=f"l-{uuid.uuid4().hex[:6]}",
            Content={"S3Bucket": bucket, "S3Key": "private/app.zip"},
        )
    assert denied(exc) == ("AccessDeniedException", 403, refusal("private/app.zip"))
    # The admin may read any bucket.
    admin.update_function_code(FunctionName=name, S3Bucket=bucket, S3Key="private/app.zip")
