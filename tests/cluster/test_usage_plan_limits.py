"""A usage plan's rate limit and quota hold across the front ends of a cluster
(NIMBUS_CLUSTER=1): requests with one API key, sent to two servers at once, are admitted
no more than one bucket and one quota allow (plus the overshoot the README documents),
and the usage GetUsage reports is what both admitted together."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from nimbus.gateway.shared_allowance import lease_size
from tests.api.test_http_limits import api_with_route, create_echo
from tests.cluster.servers import front_end, serving, shared_installation
from tests.nimbus_process import NimbusProcess

pytestmark = [pytest.mark.sandbox, pytest.mark.postgres, pytest.mark.broker("nats")]

RATE, BURST, QUOTA = 5, 5, 20
SERVERS = 2


def held_at_most(rate: float, burst: int) -> int:
    """What one server may hold of a bucket and not have spent (gateway/shared_allowance)."""
    want = lease_size(rate, burst)
    return want + max(1, want // 2) - 1


@pytest.fixture
def two(tmp_path: Path) -> Iterator[list[NimbusProcess]]:
    with shared_installation(tmp_path, extra={"NIMBUS_CLUSTER": "1"}) as env:
        servers = [front_end(tmp_path, name, env) for name in ("a", "b")]
        with serving(servers):
            yield servers


def outcome(response: httpx.Response) -> str:
    """ok, rate (throttled) or quota (used up), checking the refusals' shapes."""
    if response.status_code == 200:
        return "ok"
    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) >= 1
    if response.json() == {"message": "Limit Exceeded"}:
        assert response.headers["x-amzn-errortype"] == "LimitExceededException"
        return "quota"
    assert response.json() == {"message": "Too Many Requests"}
    assert response.headers["x-amzn-errortype"]
    return "rate"


async def send(urls: list[str], key: str) -> list[httpx.Response]:
    """One request to each URL, at once."""
    async with httpx.AsyncClient(timeout=60) as client:
        return await asyncio.gather(*(client.get(u, headers={"x-api-key": key}) for u in urls))


def test_rate_limit_and_quota_hold_across_two_front_ends(two: list[NimbusProcess]) -> None:
    a, b = two
    lam, gw, apigw = a.client(), a.client("apigatewayv2"), a.client("apigateway")
    name, arn = create_echo(lam)
    api_id = api_with_route(gw, arn, "GET /items", ApiKeyRequired=True)
    plan = apigw.create_usage_plan(
        name="shared",
        apiStages=[{"apiId": api_id, "stage": "prod"}],
        throttle={"rateLimit": RATE, "burstLimit": BURST},
        quota={"limit": QUOTA, "period": "DAY"},
    )
    value = "shared-key-" + uuid.uuid4().hex
    key = apigw.create_api_key(name="shared", value=value, enabled=True)
    apigw.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
    # Warm the function on both servers, outside the gateway's limits, so the requests
    # below are admitted or refused within moments of each other.
    for server in two:
        assert server.client().invoke(FunctionName=name, Payload=b"{}")["StatusCode"] == 200
    urls = [f"{s.endpoint}/execute-api/{api_id}/prod/items" for s in two]

    tally: Counter[str] = Counter()
    by_server: list[Counter[str]] = [Counter(), Counter()]
    started = time.monotonic()

    def record(responses: list[httpx.Response], targets: list[int]) -> None:
        for response, server in zip(responses, targets, strict=True):
            seen = outcome(response)
            tally[seen] += 1
            by_server[server][seen] += 1
        assert tally["ok"] <= QUOTA, tally  # never past the quota, at any moment

    # B learns of the key A stored within a poll (about a second): until then it is
    # forbidden there, which costs no token.
    deadline = time.monotonic() + 30
    while (probe := httpx.get(urls[1], headers={"x-api-key": value})).status_code == 403:
        assert time.monotonic() < deadline, "the second server never saw the new key"
        time.sleep(0.1)
    record([probe], [1])

    # A burst to both at once: together they admit about one bucket's worth, where each
    # alone would admit the whole bucket.
    overshoot = SERVERS * held_at_most(RATE, BURST)
    targets = [i % SERVERS for i in range(2 * QUOTA)]
    burst_started = time.monotonic()
    record(asyncio.run(send([urls[t] for t in targets], value)), targets)
    burst_elapsed = time.monotonic() - burst_started
    in_burst = tally["ok"] - (probe.status_code == 200)
    assert in_burst <= math.floor(BURST + RATE * burst_elapsed + overshoot), (tally, burst_elapsed)

    # Then pairs, one to each, after Retry-After, until both say the quota is used up.
    deadline = time.monotonic() + 120
    while not (tally["ok"] == QUOTA and all(c["quota"] for c in by_server)):
        assert time.monotonic() < deadline, (tally, by_server)
        responses = asyncio.run(send(urls, value))
        record(responses, [0, 1])
        if all(r.status_code == 429 for r in responses):
            # A quota's Retry-After is the end of the day: wait for the rate's at most.
            time.sleep(min(2, *(int(r.headers["retry-after"]) for r in responses)))
    elapsed = time.monotonic() - started

    assert tally["ok"] == QUOTA, tally  # the whole quota, and no more, across both
    # No more than one bucket admits in that time, plus what each server may hold.
    assert tally["ok"] <= math.floor(BURST + RATE * elapsed + overshoot), (tally, elapsed)

    # Both servers write their counts behind: GetUsage on either shows the sum.
    today = datetime.now(UTC).date().isoformat()
    deadline = time.monotonic() + 15
    while True:
        usage = b.client("apigateway").get_usage(
            usagePlanId=plan["id"], startDate=today, endDate=today
        )
        if usage["items"].get(key["id"]) == [[QUOTA, 0]] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert usage["items"] == {key["id"]: [[QUOTA, 0]]}
