"""Unit tests of the flag API: function URL events in, HTTP responses out, with the
version Lambda's context names. Run from the blueprint's folder: ``python -m pytest tests``."""

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import app

V2 = SimpleNamespace(function_version="2")


def get(path, user=None, method="GET", context=V2):
    query = {"user": user} if user is not None else None
    event = {"version": "2.0", "rawPath": path, "queryStringParameters": query,
             "requestContext": {"http": {"method": method, "path": path}}}
    reply = app.handler(event, context)
    return reply["statusCode"], reply["headers"], json.loads(reply["body"])


def test_all_flags_for_a_user_name_the_version_that_served_them():
    status, headers, body = get("/flags", user="alice")
    assert status == 200 and headers["x-flags-version"] == "2"
    assert body["version"] == "2" and body["user"] == "alice"
    assert body["flags"]["dark_mode"] is True and body["flags"]["new_checkout"] is False
    assert body["flags"]["beta_banner"] is True  # alice is on its list
    assert set(body["flags"]) == set(app.FLAGS)


def test_one_flag():
    assert get("/flags/beta_banner", user="carol")[2] == {
        "version": "2", "user": "carol", "flag": "beta_banner", "enabled": False}
    assert get("/flags/dark_mode/")[2]["enabled"] is True


def test_a_rollout_takes_a_stable_share_of_users():
    users = [f"user-{i}" for i in range(2000)]
    on = [u for u in users if get("/flags/recommendations", user=u)[2]["enabled"]]
    assert 350 < len(on) < 650  # 25% of 2000, give or take
    again = [u for u in users if get("/flags/recommendations", user=u)[2]["enabled"]]
    assert again == on  # each user always in or out
    wider = {"enabled": True, "rollout": 50}
    assert all(app.enabled("recommendations", wider, u) for u in on)  # raising only adds
    assert get("/flags/recommendations")[2]["enabled"] is False  # no user: not in a rollout


def test_without_a_context_the_version_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_VERSION", "7")
    assert get("/flags", context=None)[2]["version"] == "7"


def test_unknown_flags_paths_and_methods():
    status, _, body = get("/flags/nope")
    assert status == 404 and body["flags"] == sorted(app.FLAGS)
    assert get("/")[0] == 404
    status, headers, _ = get("/flags", method="POST")
    assert status == 405 and headers["allow"] == "GET"


@pytest.mark.parametrize("flag, message", [
    ({"enabled": "yes"}, "enabled"),
    ({"enabled": True, "rollout": 150}, "percentage"),
    ({"enabled": True, "users": "alice"}, "list"),
])
def test_a_bad_flags_file_is_refused_naming_the_flag(tmp_path, flag, message):
    bad = tmp_path / "flags.json"
    bad.write_text(json.dumps({"flags": {"ok": {"enabled": True}, "wrong": flag}}))
    with pytest.raises(ValueError, match=f"'wrong'.*{message}"):
        app.load_flags(bad)
