"""Webhook destinations never reach this host's loopback, link-local (cloud metadata) or
private addresses unless ``webhook_allow`` allows them (server-side request forgery):
every address a host resolves to is checked, the request goes to the checked address
itself (no DNS rebinding between check and connect; TLS still verifies the name), and a
refused delivery takes the failure path with its reason logged."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from nimbus import net_policy
from nimbus.config import ConfigError, load_config
from nimbus.net_policy import AllowEntryError, EgressPolicy, EgressRefused, parse_allowance
from tests.conftest import HELLO, ROLE, live_server, make_zip
from tests.nimbus_process import NimbusProcess
from tests.sink import Sink

# -- which addresses ----------------------------------------------------------------------

REFUSED = {
    "127.0.0.1": "loopback",
    "127.8.9.10": "loopback",
    "::1": "loopback",
    "10.1.2.3": "private",
    "172.16.0.1": "private",
    "192.168.1.1": "private",
    "fc00::1": "private",
    "169.254.169.254": "link-local",
    "fe80::1": "link-local",
    "0.0.0.0": "unspecified",
    "::": "unspecified",
    "100.64.0.1": "address",
    "224.0.0.1": "multicast",
    "ff02::1": "multicast",
    "240.0.0.1": "address",
    "::ffff:127.0.0.1": "loopback",
    "::ffff:169.254.169.254": "link-local",
    "2002:7f00:1::1": "loopback",
    "64:ff9b::a00:1": "private",
}


@pytest.mark.parametrize("address", sorted(REFUSED))
def test_non_public_addresses_are_refused_by_default(address: str) -> None:
    why = net_policy.forbidden(ipaddress.ip_address(address))
    assert why is not None and REFUSED[address] in why
    assert EgressPolicy().refusal("h", ipaddress.ip_address(address), 80) is not None


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "64:ff9b::808:808", "2002:808:808::1"]
)
def test_public_addresses_pass(address: str) -> None:
    assert net_policy.forbidden(ipaddress.ip_address(address)) is None


def test_the_allow_list_reads_cidrs_addresses_with_ports_and_host_names() -> None:
    policy = EgressPolicy.of("10.0.0.0/8, 127.0.0.1:8080 [::1]:9000,hooks.internal:8443")
    loop4, loop6 = ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")
    assert policy.refusal("x", ipaddress.ip_address("10.9.9.9"), 1) is None  # any port
    assert policy.refusal("x", loop4, 8080) is None
    assert policy.refusal("x", loop4, 8081) is not None  # only that port
    assert policy.refusal("x", ipaddress.ip_address("::ffff:127.0.0.1"), 8080) is None
    assert policy.refusal("x", loop6, 9000) is None and policy.refusal("x", loop6, 80)
    assert policy.refusal("hooks.internal", ipaddress.ip_address("192.168.0.9"), 8443) is None
    assert policy.refusal("other.internal", ipaddress.ip_address("192.168.0.9"), 8443)
    assert parse_allowance("127.0.0.1").network == ipaddress.ip_network("127.0.0.1/32")
    for bad in ("10.0.0.0/33", "127.0.0.1:0", "[::1]", "host:http", "bad_host!", "a..b"):
        with pytest.raises(AllowEntryError):
            parse_allowance(bad)


def test_the_allow_list_is_configured_and_checked_at_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NIMBUS_WEBHOOK_ALLOW", "127.0.0.1:8080, 10.0.0.0/8")
    assert load_config().webhook_allow == ["127.0.0.1:8080", "10.0.0.0/8"]
    assert load_config(webhook_allow=["hooks.internal"]).webhook_allow == ["hooks.internal"]
    monkeypatch.setenv("NIMBUS_WEBHOOK_ALLOW", "127.0.0.1:99999")
    with pytest.raises(ConfigError, match=r"webhook_allow.*127\.0\.0\.1:99999.*port"):
        load_config()


# -- resolution and connection ---------------------------------------------------------


class Resolver:
    """The event loop's resolver, with made-up names: each name's answers in turn (the
    last one repeats), counting their lookups; any other name is resolved for real."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.answers: dict[str, list[list[str]]] = {}
        self.lookups: list[str] = []

    async def getaddrinfo(self, loop: Any, host: Any, port: Any, **kw: Any) -> list[Any]:
        if host not in self.answers:
            return await self.real(loop, host, port, **kw)
        self.lookups.append(host)
        queue = self.answers[host]
        addresses = queue.pop(0) if len(queue) > 1 else queue[0]
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Resolver]:
    fake = Resolver(asyncio.BaseEventLoop.getaddrinfo)
    monkeypatch.setattr(
        asyncio.BaseEventLoop,
        "getaddrinfo",
        lambda loop, host, port, **kw: fake.getaddrinfo(loop, host, port, **kw),
    )
    yield fake


async def test_a_name_with_any_private_address_is_refused(resolver: Resolver) -> None:
    resolver.answers["mixed.test"] = [["93.184.215.14", "10.0.0.7"]]
    with pytest.raises(EgressRefused, match=r"mixed\.test resolves to 10\.0\.0\.7.*private"):
        await EgressPolicy().resolve("https://mixed.test/hook")
    with pytest.raises(EgressRefused, match="webhook_allow"):
        await EgressPolicy().resolve("http://[::1]:8080/")
    with pytest.raises(EgressRefused, match="not an http"):
        await EgressPolicy().resolve("ftp://example.com/")


async def test_the_request_goes_to_the_address_checked_not_to_a_second_lookup(
    resolver: Resolver, sink: Sink
) -> None:
    port = int(sink.url.rsplit(":", 1)[1].split("/")[0])
    # Rebinding: the first answer is one the policy allows, every later one is the
    # metadata address. The request must use the first.
    resolver.answers["rebind.test"] = [["127.0.0.1"], ["169.254.169.254"]]
    policy = EgressPolicy.of([f"127.0.0.1:{port}"])
    async with httpx.AsyncClient() as client:
        response = await net_policy.post(
            client, f"http://rebind.test:{port}/hook", policy, content=b'{"n": 1}'
        )
    assert response.status_code == 204 and sink.received == [{"n": 1}]
    assert resolver.lookups == ["rebind.test"]  # one lookup: the check's


async def test_a_name_the_allow_list_trusts_goes_out_unpinned(resolver: Resolver) -> None:
    sent: list[httpx.Request] = []

    async def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(204)

    resolver.answers["internal.test"] = [["10.0.0.5"]]
    resolver.answers["public.test"] = [["93.184.215.14"]]
    policy = EgressPolicy.of(["internal.test:8443"])
    async with httpx.AsyncClient(transport=httpx.MockTransport(record)) as client:
        await net_policy.post(client, "https://internal.test:8443/h", policy, content=b"{}")
        await net_policy.post(client, "https://public.test/h", policy, content=b"{}")
        with pytest.raises(EgressRefused):  # trusted on 8443 only
            await net_policy.post(client, "https://internal.test/h", policy, content=b"{}")
    assert [str(r.url) for r in sent] == [
        "https://internal.test:8443/h",  # as it is: the name is trusted
        "https://93.184.215.14/h",  # the checked address, the name kept for Host/TLS
    ]
    assert sent[1].headers["Host"] == "public.test"
    assert sent[1].extensions["sni_hostname"] == "public.test"
    assert resolver.lookups == ["public.test", "internal.test"]


def self_signed(name: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


async def test_tls_still_checks_the_name_while_connecting_to_the_checked_address(
    resolver: Resolver, tmp_path: Path
) -> None:
    cert, key = self_signed("hooks.test")
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    seen: list[tuple[str | None, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append((names[-1] if names else None, self.headers.get("Host")))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    names: list[str | None] = []
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server_ctx.sni_callback = lambda _sock, name, _ctx: names.append(name)  # type: ignore[assignment,misc,return-value]
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = server_ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    port = httpd.server_address[1]
    try:
        resolver.answers["hooks.test"] = [["127.0.0.1"]]
        client_ctx = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
        policy = EgressPolicy.of([f"127.0.0.1:{port}"])
        async with httpx.AsyncClient(verify=client_ctx) as client:
            ok = await net_policy.post(
                client, f"https://hooks.test:{port}/x", policy, content=b"{}"
            )
            assert ok.status_code == 204
            assert seen == [("hooks.test", f"hooks.test:{port}")]
            # A name the certificate does not carry fails verification, as it would
            # without the pinning.
            resolver.answers["other.test"] = [["127.0.0.1"]]
            with pytest.raises(httpx.ConnectError, match=r"(?i)certificate"):
                await net_policy.post(client, f"https://other.test:{port}/x", policy, content=b"{}")
    finally:
        httpd.shutdown()
        httpd.server_close()


# -- delivery, on a live server -----------------------------------------------------------

FAILS = "def handler(event, context):\n    raise RuntimeError('nope')\n"


def dead_letters(server: NimbusProcess, function: str) -> list[dict]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = httpx.get(
            f"{server.endpoint}/_nimbus/dead-letters", params={"FunctionName": function}
        ).json()["DeadLetters"]
        if found:
            return found
        time.sleep(0.05)  # polling an HTTP listing: there is no event to await here
    raise AssertionError(f"no dead letter for {function} within 60 s")


@pytest.mark.sandbox
def test_a_refused_webhook_takes_the_failure_path_with_its_reason_logged(
    tmp_path: Path, sink: Sink
) -> None:
    env = {"NIMBUS_ASYNC_WORKERS": "0", "NIMBUS_RETRY_BASE_SECONDS": "0.05"}
    with live_server(tmp_path / "data", env) as server:
        lam = server.client()
        for name, code in (("ok", HELLO), ("bad", make_zip({"app.py": FAILS}))):
            lam.create_function(FunctionName=name, Runtime="python3.12", Role=ROLE,
                                Handler="app.handler", Code={"ZipFile": code})  # fmt: skip
        metadata = "http://169.254.169.254/latest/meta-data/iam/"
        lam.put_function_event_invoke_config(
            FunctionName="ok", DestinationConfig={"OnSuccess": {"Destination": sink.url}}
        )
        lam.put_function_event_invoke_config(
            FunctionName="bad", MaximumRetryAttempts=0,
            DestinationConfig={"OnFailure": {"Destination": metadata}},
        )  # fmt: skip
        for name in ("ok", "bad"):
            lam.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"k": 1}')
        (success,) = dead_letters(server, "ok")
        assert success["condition"] == "DestinationDeliveryFailed"
        (failure,) = dead_letters(server, "bad")
        assert failure["condition"] == "RetriesExhausted" and "nope" in failure["error"]
        assert sink.received == []
        log = "".join(server.output)
        assert f"{sink.url} refused: 127.0.0.1 is a loopback address" in log
        assert f"{metadata} refused: 169.254.169.254 is a link-local address" in log
        assert "NIMBUS_WEBHOOK_ALLOW" in log


@pytest.mark.sandbox
def test_an_allowed_address_and_port_is_delivered_to(tmp_path: Path, sink: Sink) -> None:
    port = sink.url.rsplit(":", 1)[1].split("/")[0]
    env = {"NIMBUS_ASYNC_WORKERS": "0", "NIMBUS_WEBHOOK_ALLOW": f"127.0.0.1:{port}"}
    with live_server(tmp_path / "data", env) as server:
        lam = server.client()
        lam.create_function(FunctionName="ok", Runtime="python3.12", Role=ROLE,
                            Handler="app.handler", Code={"ZipFile": HELLO})  # fmt: skip
        lam.put_function_event_invoke_config(
            FunctionName="ok", DestinationConfig={"OnSuccess": {"Destination": sink.url}}
        )
        lam.invoke(FunctionName="ok", InvocationType="Event", Payload=b'{"k": 2}')
        (record,) = sink.wait_until(lambda records: len(records) >= 1)
        assert record["requestContext"]["condition"] == "Success"
        assert record["requestPayload"] == {"k": 2}
        assert json.dumps(record["responsePayload"]) == json.dumps({"hello": {"k": 2}})


# -- what is read of an answer, and for how long -------------------------------------------


class Answering:
    """A raw HTTP server on loopback answering every request with ``answer(sock)``, and
    recording how many body bytes it got out before the other end went away."""

    def __init__(self, answer: Any) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.answer = answer
        self.sent: list[int] = []
        self.done = threading.Event()
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)  # the request (small: a test's POST)
                sent = 0
                try:
                    for chunk in self.answer():
                        if self.stop.is_set():
                            break
                        conn.sendall(chunk)
                        sent += len(chunk)
                except OSError:
                    pass  # the client closed: what it did not read, it dropped
                self.sent.append(sent)
                self.done.set()

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


MB_BODY = b"x" * (1024 * 1024)
FLOOD_MB = 256


def flood() -> Iterator[bytes]:
    yield f"HTTP/1.1 200 OK\r\nContent-Length: {FLOOD_MB * len(MB_BODY)}\r\n\r\n".encode()
    for _ in range(FLOOD_MB):
        yield MB_BODY


def trickle() -> Iterator[bytes]:
    yield b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    while True:  # one byte at a time, each well inside httpx's per-read timeout
        time.sleep(0.2)
        yield b"1\r\nx\r\n"


async def test_only_the_first_kilobytes_of_an_answer_are_read() -> None:
    server = Answering(flood)
    try:
        policy = EgressPolicy.of([f"127.0.0.1:{server.port}"])
        async with httpx.AsyncClient(timeout=60) as client:
            response = await net_policy.post(
                client, f"http://127.0.0.1:{server.port}/hook", policy, content=b"{}"
            )
        assert response.status_code == 200
        assert len(response.content) == net_policy.MAX_RESPONSE_BYTES
        assert response.content == b"x" * net_policy.MAX_RESPONSE_BYTES
        assert await asyncio.to_thread(server.done.wait, 60)
        assert server.sent[0] < FLOOD_MB * len(MB_BODY)  # the rest was never taken
    finally:
        server.close()


async def test_a_trickling_answer_is_cut_off_at_the_deadline() -> None:
    server = Answering(trickle)
    try:
        policy = EgressPolicy.of([f"127.0.0.1:{server.port}"])
        async with httpx.AsyncClient(timeout=10) as client:  # per read: never trips
            with pytest.raises(httpx.TimeoutException, match="did not complete within 1 s"):
                await net_policy.request(
                    client, "POST", f"http://127.0.0.1:{server.port}/", policy,
                    content=b"{}", max_response_bytes=1 << 20, deadline_s=1,
                )  # fmt: skip
        assert await asyncio.to_thread(server.done.wait, 60)  # the connection was dropped
    finally:
        server.close()


@pytest.mark.sandbox
def test_a_webhook_answering_without_end_is_read_no_further(tmp_path: Path) -> None:
    server = Answering(flood)
    env = {"NIMBUS_ASYNC_WORKERS": "0", "NIMBUS_WEBHOOK_ALLOW": f"127.0.0.1:{server.port}"}
    try:
        with live_server(tmp_path / "data", env) as nimbus:
            lam = nimbus.client()
            lam.create_function(FunctionName="ok", Runtime="python3.12", Role=ROLE,
                                Handler="app.handler", Code={"ZipFile": HELLO})  # fmt: skip
            lam.put_function_event_invoke_config(
                FunctionName="ok",
                DestinationConfig={
                    "OnSuccess": {"Destination": f"http://127.0.0.1:{server.port}/hook"}
                },
            )
            lam.invoke(FunctionName="ok", InvocationType="Event", Payload=b"{}")
            assert server.done.wait(120)
            assert server.sent[0] < FLOOD_MB * len(MB_BODY)
    finally:
        server.close()
