"""Tests of the monitor against local targets only: an HTTPS server with a self-signed
certificate made here (openssl), and a webhook sink recording the alerts it receives.
Run from the blueprint's folder: ``python -m pytest tests``."""

import json
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import app


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _Page(_Quiet):
    def do_GET(self):
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Sink(_Quiet):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()


def _serve(server):
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


@pytest.fixture(scope="session")
def certificate(tmp_path_factory):
    """A self-signed certificate for localhost and 127.0.0.1: (cert.pem, key.pem)."""
    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make the test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


@pytest.fixture
def https_url(certificate):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(*certificate)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    _serve(server)
    yield f"https://localhost:{server.server_address[1]}/health?probe=1"
    server.shutdown()
    server.server_close()


@pytest.fixture
def sink():
    server = _serve(ThreadingHTTPServer(("127.0.0.1", 0), _Sink))
    server.received = []
    server.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def monitor(monkeypatch, certificate, sink):
    """Configure the function as its template would: returns a setter for the rest."""
    monkeypatch.setenv("CA_BUNDLE", str(certificate[0]))
    monkeypatch.setenv("ALERT_WEBHOOK", sink.url)

    def configure(targets, threshold_ms):
        monkeypatch.setenv("TARGETS", ",".join(targets))
        monkeypatch.setenv("THRESHOLD_MS", str(threshold_ms))

    return configure


def test_measures_the_four_timings_in_order(https_url, monitor, sink):
    monitor([https_url], 60_000)
    outcome = app.handler({}, None)
    [result] = outcome["results"]
    assert "error" not in result, result
    assert result["status"] == 200
    dns, connect = result["time_namelookup"], result["time_connect"]
    tls, ttfb = result["time_appconnect"], result["time_starttransfer"]
    assert 0 < dns <= connect <= tls <= ttfb
    assert tls > connect  # a real handshake happened
    assert set(result["phases_ms"]) == set(app.PHASES)
    assert all(v >= 0 for v in result["phases_ms"].values())
    assert outcome["alerts"] == 0 and sink.received == []


def test_alerts_the_webhook_over_threshold(https_url, monitor, sink):
    monitor([https_url], 0)
    outcome = app.handler({}, None)
    assert outcome["alerts"] == 1
    [alert] = sink.received
    assert alert["text"].startswith("latency alert: " + https_url)
    [detail] = alert["alerts"]
    assert detail["url"] == https_url and detail["reason"] == "slow"
    assert detail["slow_phases_ms"] and set(detail["slow_phases_ms"]) <= set(app.PHASES)
    assert detail["timings_ms"]["time_starttransfer"] > 0


def test_untrusted_certificate_and_closed_port_alert(https_url, monitor, sink, monkeypatch):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"https://127.0.0.1:{probe.getsockname()[1]}/"
    monitor([closed], 60_000)
    assert app.handler({}, None)["alerts"] == 1
    assert sink.received[-1]["alerts"][0]["reason"] == "unreachable"

    monkeypatch.delenv("CA_BUNDLE")  # the system's CAs do not know the test certificate
    monitor([https_url], 60_000)
    assert app.handler({}, None)["alerts"] == 1
    assert "certificate verify failed" in sink.received[-1]["alerts"][0]["error"]


def test_plain_http_has_no_tls_phase(monitor, sink):
    server = _serve(ThreadingHTTPServer(("127.0.0.1", 0), _Page))
    try:
        monitor([f"http://127.0.0.1:{server.server_address[1]}/"], 60_000)
        [result] = app.handler({}, None)["results"]
    finally:
        server.shutdown()
        server.server_close()
    assert result["status"] == 200 and result["time_appconnect"] == 0.0
    assert result["phases_ms"]["tls"] == 0
    assert result["time_starttransfer"] >= result["time_connect"]
