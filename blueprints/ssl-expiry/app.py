"""An SSL certificate expiry checker: once a day, for each host in TARGETS, open a TLS
connection, read the certificate the server presents, and POST an alert to ALERT_WEBHOOK
when it expires within DAYS days, or when it cannot be checked at all (already expired, not
trusted, wrong name, host unreachable): a certificate nobody can verify is as much a problem
as one about to expire.

Settings (environment variables):
  TARGETS        hosts as host or host:port (443), separated by commas or whitespace;
                 https:// URLs are accepted too
  ALERT_WEBHOOK  where alerts are POSTed as JSON (none: results are only logged)
  DAYS           warn this many days before expiry [14]
  TIMEOUT_S      connection timeout [10]
  CA_BUNDLE      a PEM file of CAs to verify against [the system's]

Standard library only: socket, ssl, urllib.
"""

import json
import os
import socket
import ssl
import time
import urllib.request
from urllib.parse import urlsplit


def _targets():
    return [t for t in os.environ.get("TARGETS", "").replace(",", " ").split() if t]


def _host_port(target):
    """``host``, ``host:port``, ``[v6]:port`` or an https URL -> (host, port)."""
    parts = urlsplit(target if "://" in target else f"//{target}")
    if not parts.hostname:
        raise ValueError(f"not a host: {target!r}")
    return parts.hostname, parts.port or 443


def _tls_context():
    bundle = os.environ.get("CA_BUNDLE")
    return ssl.create_default_context(cafile=bundle) if bundle else ssl.create_default_context()


def certificate(host, port, context, timeout=10.0):
    """The verified peer certificate's subject, issuer and notAfter (epoch seconds)."""
    with socket.create_connection((host, port), timeout=timeout) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        cert = tls.getpeercert()
    return {
        "subject": dict(pair for rdn in cert.get("subject", ()) for pair in rdn),
        "issuer": dict(pair for rdn in cert.get("issuer", ()) for pair in rdn),
        "not_after": ssl.cert_time_to_seconds(cert["notAfter"]),
    }


def check(target, days, context, timeout=10.0, now=None):
    """One target's result: days left, and whether (and why) it needs an alert."""
    now = time.time() if now is None else now
    try:
        host, port = _host_port(target)
        cert = certificate(host, port, context, timeout)
    except ssl.SSLCertVerificationError as exc:
        return {"target": target, "alert": True, "reason": "invalid",
                "error": exc.verify_message or str(exc)}
    except (OSError, ValueError) as exc:
        return {"target": target, "alert": True, "reason": "unreachable",
                "error": f"{type(exc).__name__}: {exc}"}
    days_left = (cert["not_after"] - now) / 86400
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(cert["not_after"]))
    return {"target": target, "alert": days_left < days, "reason": "expiring",
            "days_left": round(days_left, 2), "expires": expires,
            "subject": cert["subject"].get("commonName"),
            "issuer": cert["issuer"].get("commonName")}


def post_alert(webhook, alert, timeout=10.0):
    """POST the alert as JSON; raises on a network error or a non-2xx answer."""
    request = urllib.request.Request(
        webhook, data=json.dumps(alert).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status


def _line(result):
    if result["reason"] == "expiring":
        return f"{result['target']}: expires {result['expires']} ({result['days_left']:.1f} days)"
    return f"{result['target']}: {result['reason']}: {result['error']}"


def handler(event, context):
    days = float(os.environ.get("DAYS", "14"))
    timeout = float(os.environ.get("TIMEOUT_S", "10"))
    webhook = os.environ.get("ALERT_WEBHOOK")
    tls = _tls_context()
    results = [check(target, days, tls, timeout) for target in _targets()]
    for result in results:
        print(json.dumps(result))
    alerts = [r for r in results if r["alert"]]
    if alerts and webhook:
        text = "certificate alert: " + "; ".join(_line(a) for a in alerts)
        post_alert(webhook, {"text": text, "days": days, "alerts": alerts}, timeout)
    return {"checked": len(results), "alerts": len(alerts) if webhook else 0,
            "results": results}
