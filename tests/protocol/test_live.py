"""The protocol layer in a live nimbus: a test-only SQS (``echo.py``, registered in the
server's process by ``live_hook/sitecustomize.py``) called by boto3's SQS client (JSON),
by a query-protocol client (form posts to ``/`` and to a queue URL), with and without
SigV4; Lambda's routes and answers stay as they were."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from tests.conftest import live_server
from tests.nimbus_process import NimbusProcess

ROOT = Path(__file__).resolve().parents[2]
HOOK = Path(__file__).with_name("live_hook")


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(HOOK), str(ROOT), os.environ.get("PYTHONPATH")]))
    return {"NIMBUS_TEST_ECHO_SQS": "1", "PYTHONPATH": path, **extra}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NimbusProcess]:
    with live_server(tmp_path_factory.mktemp("aws") / "data", _env()) as proc:
        yield proc


def sqs(server: NimbusProcess, key: str = "test", secret: str = "test") -> Any:
    return boto3.client(
        "sqs",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=BotoConfig(retries={"max_attempts": 0}),
    )


def test_boto3_sqs_json(server: NimbusProcess) -> None:
    client = sqs(server)
    assert client.get_queue_url(QueueName="q1")["QueueUrl"] == f"{server.endpoint}/000000000000/q1"
    sent = client.send_message(
        QueueUrl=f"{server.endpoint}/000000000000/q1",
        MessageBody="hi",
        DelaySeconds=3,
        MessageAttributes={"b": {"DataType": "Binary", "BinaryValue": b"\x00\x01"}},
    )
    assert sent["MessageId"] == f"{server.endpoint}/000000000000/q1|hi|3"
    assert sent["MD5OfMessageBody"] == "b=b'\\x00\\x01'"
    assert sent["SequenceNumber"] == "json:us-east-1"


def test_boto3_sqs_errors(server: NimbusProcess) -> None:
    client = sqs(server)
    with pytest.raises(client.exceptions.QueueDoesNotExist) as missing:
        client.get_queue_url(QueueName="missing")
    error = missing.value.response["Error"]
    assert error["Code"] == "AWS.SimpleQueueService.NonExistentQueue"
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError) as crash:
        client.get_queue_url(QueueName="crash")
    assert crash.value.response["Error"]["Code"] == "InternalFailure"
    assert "a handler bug" in crash.value.response["Error"]["Message"]
    assert crash.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    with pytest.raises(ClientError) as unimplemented:
        client.list_queues()
    assert unimplemented.value.response["Error"]["Code"] == "UnknownOperationException"
    assert "not implemented in nimbus" in unimplemented.value.response["Error"]["Message"]
    assert unimplemented.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_query_protocol_clients(server: NimbusProcess) -> None:
    form = {"Action": "GetQueueUrl", "Version": "2012-11-05", "QueueName": "q2"}
    answer = httpx.post(f"{server.endpoint}/", data=form)
    assert answer.status_code == 200
    assert f"<QueueUrl>{server.endpoint}/000000000000/q2</QueueUrl>" in answer.text
    assert "<GetQueueUrlResponse" in answer.text and "<RequestId>" in answer.text
    # An older SDK posts to the queue URL itself and leaves QueueUrl out.
    sent = httpx.post(
        f"{server.endpoint}/000000000000/q2",
        data={
            "Action": "SendMessage",
            "MessageBody": "x",
            "MessageAttribute.1.Name": "a",
            "MessageAttribute.1.Value.DataType": "String",
            "MessageAttribute.1.Value.StringValue": "v",
        },
    )
    assert sent.status_code == 200, sent.text
    assert f"<MessageId>{server.endpoint}/000000000000/q2|x|None</MessageId>" in sent.text
    assert (
        "<MD5OfMessageBody>a=&#x27;v&#x27;</MD5OfMessageBody>" in sent.text or "a='v'" in sent.text
    )
    missing = httpx.post(f"{server.endpoint}/", data={"Action": "GetQueueUrl"})
    assert missing.status_code == 400
    assert "<Code>MissingParameter</Code>" in missing.text and "<Type>Sender</Type>" in missing.text
    unknown = httpx.post(f"{server.endpoint}/", data={"Action": "Frobnicate"})
    assert unknown.status_code == 404  # no registered service has it: Lambda's answer as before
    assert unknown.headers["x-amzn-errortype"] == "UnknownOperationException"


def test_lambda_is_unchanged(server: NimbusProcess) -> None:
    assert server.client().list_functions()["Functions"] == []
    answer = httpx.post(f"{server.endpoint}/", json={})
    assert answer.status_code == 404
    assert answer.headers["x-amzn-errortype"] == "UnknownOperationException"


def test_sigv4_applies_and_refuses_in_the_services_shape(tmp_path: Path) -> None:
    with live_server(tmp_path / "data", _env(NIMBUS_API_AUTH="sigv4")) as proc:
        stored = json.loads((proc.data_dir / "credentials.json").read_text())
        good = sqs(proc, stored["AccessKeyId"], stored["SecretAccessKey"])
        assert good.get_queue_url(QueueName="q")["QueueUrl"].endswith("/000000000000/q")
        with pytest.raises(ClientError) as refused:
            sqs(proc, stored["AccessKeyId"], "wrong").get_queue_url(QueueName="q")
        assert refused.value.response["Error"]["Code"] == "InvalidSignatureException"
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        unsigned = httpx.post(f"{proc.endpoint}/", data={"Action": "GetQueueUrl", "QueueName": "q"})
        assert unsigned.status_code == 403
        assert "<Code>MissingAuthenticationTokenException</Code>" in unsigned.text
