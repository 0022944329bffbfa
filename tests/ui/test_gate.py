"""The dashboard's gate on its own: who is let in under each api_auth setting, what a
session cookie proves, and the page shown when the chart library is missing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nimbus.sigv4.credentials import Credentials
from nimbus.ui import dashboard, gate

KEYS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")


def scope(client: str = "127.0.0.1", host: str = "127.0.0.1:9000", cookie: str = "") -> Any:
    headers = [(b"host", host.encode())]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    return {"type": "http", "client": (client, 50000), "headers": headers}


@pytest.mark.parametrize("host", ["127.0.0.1:9000", "localhost:9000", "[::1]:9000", "localhost",
                                  "app.localhost:9000", "127.0.0.2:9000"])
def test_loopback_names_pass_without_auth(host: str) -> None:
    assert gate.check(scope(host=host), "none", KEYS).allowed


@pytest.mark.parametrize(
    "host", ["evil.example:9000", "192.168.1.5:9000", "", "localhost.evil.com"]
)
def test_other_names_are_refused_without_auth(host: str) -> None:
    """A page on another site whose name now points at 127.0.0.1 (DNS rebinding) sends
    its own name as Host: the JSON stays unreadable to it."""
    verdict = gate.check(scope(host=host), "none", KEYS)
    assert not verdict.allowed and not verdict.login
    assert "127.0.0.1" in verdict.reason


@pytest.mark.parametrize("client", ["10.0.0.7", "192.168.1.20", "2001:db8::1", "not-an-ip"])
def test_other_machines_are_refused_without_auth(client: str) -> None:
    verdict = gate.check(scope(client=client, host="localhost:9000"), "none", KEYS)
    assert not verdict.allowed
    assert "sigv4" in verdict.reason and "SSH" in verdict.reason


def test_sigv4_needs_a_session_even_on_loopback() -> None:
    """Sandboxed functions share the loopback: with sigv4 nobody is let in unasked."""
    verdict = gate.check(scope(), "sigv4", KEYS)
    assert not verdict.allowed and verdict.login
    value, max_age = gate.new_session(KEYS)
    assert max_age == gate.SESSION_SECONDS
    assert gate.check(scope(cookie=f"other=1; {gate.COOKIE}={value}"), "sigv4", KEYS).allowed
    assert gate.check(scope(client="10.0.0.7", host="nimbus.internal:9000",
                            cookie=f"{gate.COOKIE}={value}"), "sigv4", KEYS).allowed


def test_a_session_is_bound_to_the_keys_and_expires() -> None:
    value, _ = gate.new_session(KEYS, now=1_000_000)
    assert gate.session_valid(value, KEYS, now=1_000_000 + 60)
    assert not gate.session_valid(value, KEYS, now=1_000_000 + gate.SESSION_SECONDS + 1)
    rotated = Credentials(KEYS.access_key_id, "another-secret")
    assert not gate.session_valid(value, rotated, now=1_000_000 + 60)
    expires, mac = value.split(".")
    forged = f"{int(expires) + 3600}.{mac}"  # a later expiry under the old MAC
    assert not gate.session_valid(forged, KEYS, now=1_000_000 + 60)
    for junk in ("", "nodot", "abc.def", ".", f"{expires}.",
                 "9" * 5000 + ".ab", f"{expires}.\u00e9"):  # once a 500 each
        assert not gate.session_valid(junk, KEYS, now=1_000_000)


def test_keys_must_both_match() -> None:
    assert gate.keys_match(KEYS.access_key_id, KEYS.secret_access_key, KEYS)
    assert not gate.keys_match(KEYS.access_key_id, "wrong", KEYS)
    assert not gate.keys_match("AKIDOTHER", KEYS.secret_access_key, KEYS)


def test_login_posts_from_other_sites_are_refused() -> None:
    base = scope(host="127.0.0.1:9000")
    assert gate.same_origin(base)  # no Origin: a non-browser client or an old browser
    same = {**base, "headers": [*base["headers"], (b"origin", b"http://127.0.0.1:9000")]}
    assert gate.same_origin(same)
    other = {**base, "headers": [*base["headers"], (b"origin", b"http://evil.example")]}
    assert not gate.same_origin(other)
    opaque = {**base, "headers": [*base["headers"], (b"origin", b"null")]}
    assert not gate.same_origin(opaque)


def test_a_missing_chart_library_is_explained(tmp_path: Path) -> None:
    page = dashboard.Dashboard(app=None, api_auth="none", vendor=tmp_path).index()  # type: ignore[arg-type]
    assert page.status_code == 503
    text = bytes(page.body).decode()
    assert "make ui-assets" in text and dashboard.UPLOT_VERSION in text
    assert "uPlot.iife.min.js" in text


def test_the_vendored_files_are_the_ones_the_page_loads() -> None:
    index = (dashboard.STATIC / "index.html").read_text()
    for name in dashboard.VENDOR_FILES:
        assert f"/ui/vendor/{name}" in index
    makefile = (Path(__file__).parents[2] / "Makefile").read_text()
    assert f"UPLOT_VERSION := {dashboard.UPLOT_VERSION}" in makefile
