"""A latency monitor: every 5 minutes, for each URL in TARGETS, measure the phases of one
HTTP(S) request the way curl's ``-w`` timings do, and POST an alert to ALERT_WEBHOOK when
any phase takes longer than THRESHOLD_MS.

Timings are cumulative from the start of the request, in milliseconds, as curl reports them:
``time_namelookup`` (DNS done), ``time_connect`` (TCP connected), ``time_appconnect`` (TLS
handshake done; 0 for plain http, as in curl) and ``time_starttransfer`` (first byte of the
response). A phase is the difference between one mark and the previous one.

Settings (environment variables):
  TARGETS        URLs, separated by commas or whitespace (http:// or https://)
  ALERT_WEBHOOK  where alerts are POSTed as JSON (none: results are only logged)
  THRESHOLD_MS   the longest a phase may take [1000]
  TIMEOUT_S      per-request socket timeout [10]
  CA_BUNDLE      a PEM file of CAs to verify TLS against [the system's]

Standard library only: socket, ssl, time.perf_counter, urllib.
"""

import json
import os
import socket
import ssl
import time
import urllib.request
from urllib.parse import urlsplit

PHASES = ("dns", "connect", "tls", "ttfb")


def _targets():
    return [t for t in os.environ.get("TARGETS", "").replace(",", " ").split() if t]


def _tls_context():
    bundle = os.environ.get("CA_BUNDLE")
    return ssl.create_default_context(cafile=bundle) if bundle else ssl.create_default_context()


def _connect(addresses, timeout):
    """Connect to the first address that answers, as curl does (e.g. ::1 then 127.0.0.1)."""
    error = OSError("no address")
    for family, kind, proto, _, address in addresses:
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error


def measure(url, timeout=10.0, context=None):
    """One GET of ``url``: curl-style cumulative timings in ms, and the status code."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    start = time.perf_counter()
    addresses = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    dns = time.perf_counter()
    sock = _connect(addresses, timeout)
    try:
        connected = time.perf_counter()
        appconnect = None
        if secure:
            sock = (context or _tls_context()).wrap_socket(sock, server_hostname=parts.hostname)
            appconnect = time.perf_counter()
        host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
        request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: nimbus-latency-monitor"
                   "\r\nAccept: */*\r\nConnection: close\r\n\r\n")
        sock.sendall(request.encode("latin-1"))
        first = sock.recv(1)
        if not first:
            raise ConnectionError("the server closed the connection without answering")
        ttfb = time.perf_counter()
        head = first + sock.recv(64)
    finally:
        sock.close()

    def ms(mark):
        return round((mark - start) * 1000, 3)

    status_line = head.split(b"\r\n", 1)[0].split()
    return {
        "url": url,
        "status": int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit()
        else None,
        "time_namelookup": ms(dns),
        "time_connect": ms(connected),
        "time_appconnect": ms(appconnect) if appconnect is not None else 0.0,
        "time_starttransfer": ms(ttfb),
    }


def phases(timing):
    """Each phase's own duration in ms (tls is 0 for plain http)."""
    tls_done = timing["time_appconnect"] or timing["time_connect"]
    return {
        "dns": timing["time_namelookup"],
        "connect": round(timing["time_connect"] - timing["time_namelookup"], 3),
        "tls": round(tls_done - timing["time_connect"], 3),
        "ttfb": round(timing["time_starttransfer"] - tls_done, 3),
    }


def post_alert(webhook, alert, timeout=10.0):
    """POST the alert as JSON; raises on a network error or a non-2xx answer."""
    request = urllib.request.Request(
        webhook, data=json.dumps(alert).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status


def handler(event, context):
    threshold = float(os.environ.get("THRESHOLD_MS", "1000"))
    timeout = float(os.environ.get("TIMEOUT_S", "10"))
    webhook = os.environ.get("ALERT_WEBHOOK")
    tls = _tls_context()
    results, alerts = [], []
    for url in _targets():
        try:
            timing = measure(url, timeout, tls)
        except Exception as exc:
            result = {"url": url, "error": f"{type(exc).__name__}: {exc}"}
            alerts.append({"url": url, "reason": "unreachable", "error": result["error"]})
        else:
            result = {**timing, "phases_ms": phases(timing)}
            slow = {k: v for k, v in result["phases_ms"].items() if v > threshold}
            if slow:
                alerts.append({"url": url, "reason": "slow", "threshold_ms": threshold,
                               "slow_phases_ms": slow, "timings_ms": timing})
        print(json.dumps(result))
        results.append(result)
    sent = 0
    if alerts and webhook:
        text = "; ".join(
            f"{a['url']}: " + (", ".join(f"{k} {v:.0f} ms" for k, v in a["slow_phases_ms"].items())
                               if a["reason"] == "slow" else a["error"])
            for a in alerts
        )
        post_alert(webhook, {"text": f"latency alert: {text}", "alerts": alerts}, timeout)
        sent = len(alerts)
    return {"checked": len(results), "alerts": sent, "results": results}
