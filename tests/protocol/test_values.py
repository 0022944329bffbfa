"""Numbers in requests that are not the ASCII digits of a 64-bit value are the caller's
mistake (a 4xx), never a crash further down (the review found 500s on "²" and on
20-digit markers)."""

from __future__ import annotations

import pytest
from botocore.model import Shape

from nimbus.api.s3_objects import parse_range
from nimbus.protocol.values import BadValue, from_text
from nimbus.sigv4.credentials import Credentials
from nimbus.ui.gate import new_session, session_valid

INTEGER = Shape("n", {"type": "integer"})


def test_integers_are_ascii_and_fit_64_bits() -> None:
    assert from_text(INTEGER, " 42 ") == 42
    assert from_text(INTEGER, str(2**63 - 1)) == 2**63 - 1
    for bad in ("²", "1_000", str(10**20), str(-(2**63) - 1)):
        with pytest.raises(BadValue):
            from_text(INTEGER, bad)


def test_a_range_of_other_digits_is_ignored_as_malformed() -> None:
    assert parse_range("bytes=²-", 10) is None
    assert parse_range("bytes=-²", 10) is None
    assert parse_range("bytes=2-4", 10) is not None


def test_a_dashboard_cookie_of_other_digits_is_no_session() -> None:
    keys = Credentials("AKIDEXAMPLE", "secret")
    cookie, _ = new_session(keys)
    assert session_valid(cookie, keys)
    assert not session_valid("².x", keys)
