"""SNS under SigV4 (``api_auth = "sigv4"``): the API wants signed requests like any other,
while what an endpoint fetches unsigned (its SubscribeURL, the signing certificate) stays
reachable, and nothing else rides along with it."""

from __future__ import annotations

import json
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from tests.nimbus_process import NimbusProcess
from tests.sink import LOCAL_WEBHOOKS
from tests.sns.conftest import Endpoint

SERVER_ENV = {"NIMBUS_API_AUTH": "sigv4", **LOCAL_WEBHOOKS}  # the endpoint: loopback


def signed(server: NimbusProcess) -> Any:
    stored = json.loads((server.data_dir / "credentials.json").read_text())
    return boto3.client(
        "sns", endpoint_url=server.endpoint, region_name="us-east-1",
        aws_access_key_id=stored["AccessKeyId"],
        aws_secret_access_key=stored["SecretAccessKey"],
        config=BotoConfig(retries={"max_attempts": 0}),
    )  # fmt: skip


def test_subscribe_url_and_certificate_work_unsigned(
    server: NimbusProcess, sns: Any, endpoint: Endpoint
) -> None:
    with pytest.raises(ClientError) as exc:
        sns.list_topics()  # the fixture's client signs with keys nimbus does not know
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    client = signed(server)
    topic = client.create_topic(Name="guarded")["TopicArn"]
    client.subscribe(TopicArn=topic, Protocol="http", Endpoint=endpoint.url)
    (ask,) = endpoint.wait_until(lambda posts: len(posts) == 1)
    message = json.loads(ask.body)
    assert httpx.get(message["SigningCertURL"]).status_code == 200
    # Another action riding on the exemption is refused, unsigned.
    sneaky = message["SubscribeURL"] + f"&Action=DeleteTopic&TopicArn={topic}"
    assert httpx.get(sneaky).status_code == 403
    assert httpx.get(f"{server.endpoint}/?Action=ListTopics").status_code == 403
    # Nor in a form body, whose Action the query protocol would take over the query's.
    ridden = httpx.request(
        "GET", message["SubscribeURL"], content=f"Action=DeleteTopic&TopicArn={topic}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert ridden.status_code == 403
    assert client.get_topic_attributes(TopicArn=topic)["Attributes"]["TopicArn"] == topic
    assert httpx.get(message["SubscribeURL"]).status_code == 200
    (sub,) = client.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert sub["SubscriptionArn"].startswith(topic + ":")
