"""Tests of the checker against local targets only: TLS servers with certificates made
here (openssl, one CA signing a certificate that expires in 3 days and one in a year) and
a webhook sink recording the alerts. Run from the blueprint's folder:
``python -m pytest tests``."""

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

    def do_GET(self):
        self.send_response(204)
        self.end_headers()


class _Sink(_Quiet):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()


def _serve(server):
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A test CA and two server certificates for localhost it signed: 3 and 365 days."""
    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make the test certificates")
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-keyout",
             "ca.key", "-out", "ca.pem", "-subj", "/CN=nimbus test CA", cwd=d)
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                               "basicConstraints=CA:FALSE\n")
    for name, days in (("soon", 3), ("late", 365)):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                 f"{name}.csr", "-subj", f"/CN={name}.localhost", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", str(days), "-extfile", "san.ext",
                 "-out", f"{name}.pem", cwd=d)
    return d


@pytest.fixture
def tls_server(pki):
    """Start a TLS server with the named certificate: returns its host:port."""
    servers = []

    def start(name):
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki / f"{name}.pem", pki / f"{name}.key")
        server.socket = context.wrap_socket(server.socket, server_side=True)
        servers.append(_serve(server))
        return f"localhost:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def sink():
    server = _serve(ThreadingHTTPServer(("127.0.0.1", 0), _Sink))
    server.received = []
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def checker(monkeypatch, pki, sink):
    monkeypatch.setenv("CA_BUNDLE", str(pki / "ca.pem"))
    monkeypatch.setenv("ALERT_WEBHOOK", f"http://127.0.0.1:{sink.server_address[1]}/hook")
    monkeypatch.setenv("DAYS", "14")

    def run(*targets):
        monkeypatch.setenv("TARGETS", ",".join(targets))
        return app.handler({}, None)

    return run


def test_a_certificate_expiring_soon_alerts(checker, tls_server, sink):
    soon = tls_server("soon")
    outcome = checker(soon)
    [result] = outcome["results"]
    assert result["alert"] and result["reason"] == "expiring"
    assert 2 < result["days_left"] <= 3 and result["subject"] == "soon.localhost"
    assert result["issuer"] == "nimbus test CA"
    [alert] = sink.received
    assert alert["text"].startswith(f"certificate alert: {soon}: expires ")
    assert [a["target"] for a in alert["alerts"]] == [soon]


def test_a_certificate_expiring_late_does_not(checker, tls_server, sink):
    outcome = checker(tls_server("late"))
    [result] = outcome["results"]
    assert not result["alert"] and 364 < result["days_left"] <= 365
    assert outcome["alerts"] == 0 and sink.received == []


def test_one_alert_lists_only_the_targets_at_risk(checker, tls_server, sink):
    soon, late = tls_server("soon"), tls_server("late")
    outcome = checker(f"https://{late}/", soon)
    assert outcome["checked"] == 2 and outcome["alerts"] == 1
    assert [a["target"] for a in sink.received[0]["alerts"]] == [soon]


def test_unverifiable_and_unreachable_hosts_alert(checker, tls_server, sink, monkeypatch):
    monkeypatch.delenv("CA_BUNDLE")  # the system's CAs do not know the test CA
    assert checker(tls_server("late"))["results"][0]["reason"] == "invalid"
    assert "unable to get local issuer" in sink.received[-1]["alerts"][0]["error"]
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{probe.getsockname()[1]}"
    assert checker(closed)["results"][0]["reason"] == "unreachable"
    assert len(sink.received) == 2
