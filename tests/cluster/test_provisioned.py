"""Provisioned concurrency across a cluster, through boto3 as a user would: a config of
``n`` keeps ``n`` initialised environments in the whole cluster (not ``n`` per node),
spread over the worker nodes, reported READY by any server; a killed worker's share is
taken over by the survivor; with no workers, the servers share them."""

from __future__ import annotations

import base64
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.servers import Cluster, front_end, ran, serving, shared_installation
from tests.cluster.test_workers import ECHO
from tests.conftest import ROLE
from tests.nimbus_process import NimbusProcess

pytestmark = [pytest.mark.sandbox, pytest.mark.postgres, pytest.mark.broker("nats")]


def provisioned(lam: Any, requested: int) -> None:
    """An echo function, version 1 behind alias "live", with ``requested`` provisioned."""
    lam.create_function(FunctionName="pc", Runtime="python3.12", Role=ROLE,
                        Handler="app.handler", Code={"ZipFile": ECHO})  # fmt: skip
    lam.get_waiter("function_active_v2").wait(FunctionName="pc")
    lam.publish_version(FunctionName="pc")
    lam.create_alias(FunctionName="pc", Name="live", FunctionVersion="1")
    lam.put_provisioned_concurrency_config(FunctionName="pc", Qualifier="live",
                                           ProvisionedConcurrentExecutions=requested)


def ready(lam: Any, allocated: int, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        got = lam.get_provisioned_concurrency_config(FunctionName="pc", Qualifier="live")
        if (got["Status"], got["AllocatedProvisionedConcurrentExecutions"]) == ("READY",
                                                                             allocated):
            return got
        assert time.monotonic() < deadline, got
        time.sleep(0.1)


def warm(nodes: list[dict]) -> list[int]:
    return sorted(n["warm"].get("pc:1", 0) for n in nodes)


def cold(lam: Any) -> bool:
    """Whether an invoke of the alias had a cold start (its REPORT has an Init Duration)."""
    reply = lam.invoke(FunctionName="pc", Qualifier="live", Payload=b"{}", LogType="Tail")
    report = base64.b64decode(reply["LogResult"]).decode()
    assert "REPORT RequestId" in report
    return "Init Duration" in report


def test_a_config_keeps_its_count_across_the_workers_and_survives_one(cluster: Cluster) -> None:
    lam = cluster.server.client()
    provisioned(lam, 3)
    got = ready(lam, 3)
    assert got["RequestedProvisionedConcurrentExecutions"] == 3
    # Three in all, spread (at most ceil(3 / 2) on one worker), none on the server.
    nodes = cluster.until(lambda ns: warm(ns) == [1, 2], "three environments on two workers")
    for _ in range(3):
        assert not cold(lam)
    assert ran(cluster.server, "pc") == 0
    # Still three a few rounds later: no node takes more than the cluster has.
    time.sleep(5)
    assert warm(cluster.nodes()) == [1, 2]

    (busiest,) = [w for w in cluster.workers if any(
        n["url"] == w.endpoint and n["warm"].get("pc:1") == 2 for n in nodes)]
    survivor = next(w for w in cluster.workers if w is not busiest)
    busiest.stop(signal.SIGKILL)
    cluster.until(lambda ns: [n["url"] for n in ns] == [survivor.endpoint]
                  and warm(ns) == [3], "the survivor keeps all three", timeout=60)
    ready(lam, 3)
    assert not cold(lam)

    lam.delete_provisioned_concurrency_config(FunctionName="pc", Qualifier="live")
    with pytest.raises(lam.exceptions.ProvisionedConcurrencyConfigNotFoundException):
        lam.get_provisioned_concurrency_config(FunctionName="pc", Qualifier="live")
    lam.put_provisioned_concurrency_config(FunctionName="pc", Qualifier="live",
                                           ProvisionedConcurrentExecutions=1)
    ready(lam, 1)  # the slots of the deleted config were given back


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[list[NimbusProcess]]:
    extra = {"NIMBUS_CLUSTER": "1", "NIMBUS_ASYNC_WORKERS": "0"}
    with shared_installation(tmp_path, extra=extra) as env:
        servers = [front_end(tmp_path, name, env) for name in ("a", "b")]
        with serving(servers):
            yield servers


def test_without_workers_the_servers_share_the_count(two_servers: list[NimbusProcess]) -> None:
    a, b = (s.client() for s in two_servers)
    provisioned(a, 1)
    ready(a, 1)
    ready(b, 1)  # any server reports the cluster's count
    # One environment in the cluster: on one server, so the other starts cold.
    assert sorted([cold(a), cold(b)]) == [False, True]
