"""Front ends on hosts of their own (tests/cluster/hosts.py: a network namespace each,
PostgreSQL and NATS reached over the network): any front end serves any request, and a
front end's functions get namespaces of their own inside its host's."""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cluster.hosts import HostSink, Network
from tests.cluster.servers import serving, shared_installation
from tests.cluster.test_two_servers import RECORDING, ids
from tests.conftest import ROLE, make_zip
from tests.nimbus_process import NimbusProcess

pytestmark = [pytest.mark.sandbox, pytest.mark.postgres, pytest.mark.broker("nats")]

# Reports the function's own address and whether it reached the URL it is given.
PROBE = make_zip({"app.py": """
import socket
import urllib.request


def handler(event, context):
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.connect((event["gateway"], 9))  # no packet sent: picks the source address
    address = probe.getsockname()[0]
    try:
        request = urllib.request.Request(event["url"], data=b'{"probe": 1}', method="POST")
        status = urllib.request.urlopen(request, timeout=10).status
    except OSError as exc:
        status = repr(exc)
    return {"address": address, "posted": status}
"""})


@pytest.fixture
def two(tmp_path: Path, net: Network) -> Iterator[list[NimbusProcess]]:
    with shared_installation(tmp_path, extra={"NIMBUS_RETRY_BASE_SECONDS": "0.05"}) as env:
        servers = [net.hosts[name].nimbus(tmp_path / name, net.installation(env))
                   for name in ("a", "b")]  # fmt: skip
        with serving(servers):
            yield servers


def test_a_function_created_on_one_host_runs_on_the_other(
    two: list[NimbusProcess], host_sink: HostSink
) -> None:
    a, b = two
    assert a.host != b.host and not a.host.startswith("127.")
    lam_a, lam_b = a.client(), b.client()
    lam_a.create_function(FunctionName="hello", Runtime="python3.12", Role=ROLE, Timeout=60,
                          Handler="app.handler", Code={"ZipFile": RECORDING})  # fmt: skip
    lam_a.put_function_event_invoke_config(
        FunctionName="hello", DestinationConfig={"OnSuccess": {"Destination": host_sink.url}})
    found = lam_b.get_function(FunctionName="hello")
    assert found["Configuration"]["State"] == "Active"
    # B's download link is B's, and serves the package A received.
    assert found["Code"]["Location"].startswith(b.endpoint)
    assert httpx.get(found["Code"]["Location"], timeout=30).content == RECORDING
    reply = lam_b.invoke(FunctionName="hello", Payload=b'{"id": -1}')
    assert reply["StatusCode"] == 200 and "FunctionError" not in reply
    assert json.loads(reply["Payload"].read()) == {"id": -1}
    for lam, n in ((lam_a, 1), (lam_b, 2)):
        assert lam.invoke(FunctionName="hello", InvocationType="Event",
                          Payload=json.dumps({"id": n}))["StatusCode"] == 202  # fmt: skip
    host_sink.wait_until(lambda rs: {1, 2} <= set(ids(rs)))
    assert set(host_sink.hosts) <= {"a", "b"}  # posted from the hosts, over their network


def test_functions_on_a_host_get_network_namespaces_of_their_own(
    two: list[NimbusProcess], host_sink: HostSink, net: Network
) -> None:
    a, _ = two
    lam = a.client()
    # The gateway is a private address: refused unless the function's allow-list names it.
    port = host_sink.url.split(":")[2].split("/")[0]
    for name, tags in (("closed", {}), ("open", {"nimbus:network-allow":
                                                 f"{net.gateway}:{port}"})):  # fmt: skip
        lam.create_function(FunctionName=name, Runtime="python3.12", Role=ROLE, Timeout=60,
                            Handler="app.handler", Code={"ZipFile": PROBE}, Tags=tags)  # fmt: skip
    event = json.dumps({"gateway": net.gateway, "url": host_sink.url})
    replies = {}
    for name in ("closed", "open"):
        reply = lam.invoke(FunctionName=name, Payload=event)
        assert reply["StatusCode"] == 200 and "FunctionError" not in reply
        replies[name] = json.loads(reply["Payload"].read())
    # Each in a namespace of its own (an address of nimbus's function range, not the
    # host's), filtered by its own rules, and out through the host's network.
    functions = ipaddress.ip_network("100.64.0.0/10")
    assert all(ipaddress.ip_address(r["address"]) in functions for r in replies.values())
    assert replies["closed"]["posted"] != 200
    assert replies["open"]["posted"] == 204
    assert host_sink.received == [{"probe": 1}] and host_sink.hosts == ["a"]


def test_code_updated_through_one_host_runs_on_the_other(two: list[NimbusProcess]) -> None:
    a, b = two
    lam_a, lam_b = a.client(), b.client()

    def version(v: str) -> bytes:
        return make_zip({"app.py": f"def handler(e, c):\n    return {v!r}\n"})

    lam_a.create_function(FunctionName="v", Runtime="python3.12", Role=ROLE, Timeout=60,
                          Handler="app.handler", Code={"ZipFile": version("1")})  # fmt: skip
    assert json.loads(lam_b.invoke(FunctionName="v")["Payload"].read()) == "1"
    lam_a.update_function_code(FunctionName="v", ZipFile=version("2"))
    lam_b.get_waiter("function_updated_v2").wait(FunctionName="v")
    assert json.loads(lam_a.invoke(FunctionName="v")["Payload"].read()) == "2"
    # Lambda runs the new code once the update is done, whichever endpoint is asked: B
    # hears of A's commit through PostgreSQL (store/change_feed.py), milliseconds later.
    deadline = time.monotonic() + 5
    while (got := json.loads(lam_b.invoke(FunctionName="v")["Payload"].read())) != "2":
        assert got == "1" and time.monotonic() < deadline, got
        time.sleep(0.05)
