"""Functions are cut off from the host: a real nimbus with default settings, functions
created with boto3, test hosts in network namespaces of their own.

- "intranet": a listener on a private address (10.x), standing in for the machine's
  private network;
- "internet": a listener on 203.0.113.x (a documentation range), standing in for an
  address outside the host.

From inside a default function the nimbus API, PostgreSQL and Redis on the host's
loopback, the host's own address and the private listener are unreachable; the internet
host is reachable (through NAT); what the allow-list or the function's
``nimbus:network-allow`` tag names becomes reachable.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROLE, live_server, make_zip

pytestmark = pytest.mark.sandbox

PROBE = '''
import json, socket

def reach(host, port):
    try:
        with socket.create_connection((host, port), timeout=2) as s:
            s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
            return "open:" + s.recv(12).decode(errors="replace")
    except OSError as e:
        return type(e).__name__

def handler(event, context):
    return {name: reach(host, port) for name, (host, port) in event.items()}
'''

LISTENER = (
    "import socket,sys\n"
    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind((sys.argv[1], 8080)); s.listen(8); print('ready', flush=True)\n"
    "while True:\n"
    "    c,_=s.accept(); c.recv(100); c.sendall(b'HTTP/1.0 200'); c.close()\n"
)


@dataclass
class Peer:
    """A network namespace joined to the host by a veth pair, with a listener."""

    name: str
    address: str
    proc: subprocess.Popen[str]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextlib.contextmanager
def network_host(prefix: str, host_side: str, address: str, bits: int) -> Iterator[Peer]:
    name = f"nbt{secrets.token_hex(3)}"
    _ip("netns", "add", name)
    try:
        _ip("link", "add", f"v{name}", "type", "veth", "peer", "name", "eth0", "netns", name)
        _ip("addr", "add", f"{host_side}/{bits}", "dev", f"v{name}")
        _ip("link", "set", f"v{name}", "up")
        _ip("-n", name, "addr", "add", f"{address}/{bits}", "dev", "eth0")
        _ip("-n", name, "link", "set", "eth0", "up")
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "route", "add", "default", "via", host_side)
        proc = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c", LISTENER,
                                 address], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            yield Peer(name, address, proc)
        finally:
            proc.kill()
            proc.wait()
    finally:
        subprocess.run(["ip", "link", "del", f"v{name}"], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.fixture(scope="module")
def hosts() -> Iterator[tuple[Peer, Peer]]:
    octet = secrets.randbelow(200) + 20
    quad = secrets.randbelow(60) * 4
    with network_host("intranet", f"10.{octet}.77.1", f"10.{octet}.77.2", 24) as intranet, \
            network_host("internet", f"203.0.113.{quad + 1}", f"203.0.113.{quad + 2}",
                      30) as internet:
        yield intranet, internet


def host_address() -> str:
    """This host's address on its default route (not loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))
        return str(s.getsockname()[0])


def listener_on_all_addresses() -> tuple[socket.socket, int]:
    s = socket.socket()
    s.bind(("0.0.0.0", 0))
    s.listen(8)
    return s, s.getsockname()[1]


def probe(server, name: str, targets: dict[str, tuple[str, int]],
          tags: dict[str, str] | None = None) -> dict[str, str]:
    client = server.client()
    client.create_function(FunctionName=name, Runtime="python3.12", Role=ROLE,
                           Handler="app.handler", Code={"ZipFile": make_zip({"app.py": PROBE})},
                           Timeout=30, Tags=tags or {})
    out = client.invoke(FunctionName=name, Payload=json.dumps(targets))
    body = json.loads(out["Payload"].read())
    assert "FunctionError" not in out, body
    return body


def test_default_function_cannot_reach_the_host_or_private_networks(
        tmp_path: Path, hosts: tuple[Peer, Peer]) -> None:
    intranet, internet = hosts
    listener, port = listener_on_all_addresses()
    try:
        # Sanity: the host itself reaches all of them, so a refusal below is the sandbox's.
        for address, target_port in ((intranet.address, 8080), (internet.address, 8080),
                                     (host_address(), port)):
            socket.create_connection((address, target_port), timeout=2).close()
        with live_server(tmp_path / "data", env={"NIMBUS_FUNCTION_NETWORK_ALLOW": ""}) as srv:
            got = probe(srv, "prober", {
                "nimbus api": ("127.0.0.1", srv.port),
                "postgres": ("127.0.0.1", 5432),
                "redis": ("127.0.0.1", 6379),
                "host address": (host_address(), port),
                "gateway": ("169.254.79.129", srv.port),
                "intranet": (intranet.address, 8080),
                "internet": (internet.address, 8080),
            })
    finally:
        listener.close()
    assert got["internet"] == "open:HTTP/1.0 200", got
    for name in ("nimbus api", "postgres", "redis"):
        assert got[name] == "ConnectionRefusedError", (name, got)  # its own loopback
    for name in ("host address", "gateway", "intranet"):
        assert got[name] in ("OSError", "ConnectionRefusedError", "TimeoutError"), (name, got)
        assert not got[name].startswith("open"), (name, got)


def test_allow_list_and_tag_open_what_they_name(
        tmp_path: Path, hosts: tuple[Peer, Peer]) -> None:
    intranet, _ = hosts
    sink, sink_port = listener_on_all_addresses()
    other, other_port = listener_on_all_addresses()
    try:
        env = {"NIMBUS_FUNCTION_NETWORK_ALLOW": f"127.0.0.1:{sink_port}"}
        with live_server(tmp_path / "data", env=env) as srv:
            targets = {"allowed loopback port": ("127.0.0.1", sink_port),
                       "other loopback port": ("127.0.0.1", other_port),
                       "intranet": (intranet.address, 8080)}
            plain = probe(srv, "plain", targets)
            tagged = probe(srv, "tagged", targets,
                           tags={"nimbus:network-allow": f"{intranet.address}:8080"})
            # The gateway is the host's loopback seen from inside: a tag naming it (or
            # everything) must not open what only the operator can.
            sneaky = probe(srv, "sneaky", {"api via gateway": ("169.254.79.129", srv.port),
                                           "other via gateway": ("169.254.79.129", other_port)},
                           tags={"nimbus:network-allow": "169.254.0.0/16 0.0.0.0/0"})
            bad = srv.client()
            with pytest.raises(bad.exceptions.InvalidParameterValueException,
                               match="host name"):
                bad.create_function(
                    FunctionName="bad", Runtime="python3.12", Role=ROLE, Handler="app.handler",
                    Code={"ZipFile": make_zip({"app.py": PROBE})},
                    Tags={"nimbus:network-allow": "example.com:80"})
            with pytest.raises(bad.exceptions.InvalidParameterValueException,
                               match="only the operator"):
                bad.create_function(
                    FunctionName="bad", Runtime="python3.12", Role=ROLE, Handler="app.handler",
                    Code={"ZipFile": make_zip({"app.py": PROBE})},
                    Tags={"nimbus:network-allow": f"127.0.0.1:{other_port}"})
            assert "bad" not in [f["FunctionName"] for f in bad.list_functions()["Functions"]]
    finally:
        sink.close()
        other.close()
    # The listeners accept but never answer: "open:" with nothing read, or a timeout
    # while reading, both after a connection was made.
    assert plain["allowed loopback port"] in ("open:", "TimeoutError"), plain
    assert plain["other loopback port"] == "ConnectionRefusedError", plain
    assert not plain["intranet"].startswith("open"), plain
    assert tagged["intranet"] == "open:HTTP/1.0 200", tagged
    assert not tagged["other loopback port"].startswith("open"), tagged
    assert not any(v.startswith("open") for v in sneaky.values()), sneaky
