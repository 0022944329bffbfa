"""Unit tests of the handler: a function URL event in, an HTTP response out.
Run from the blueprint's folder: ``python -m pytest tests``."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import app


def url_event(method="GET", path="/", query=None):
    """The parts of a function URL event (payload format 2.0) the handler reads."""
    return {
        "version": "2.0",
        "rawPath": path,
        "rawQueryString": "&".join(f"{k}={v}" for k, v in (query or {}).items()),
        "queryStringParameters": query,
        "requestContext": {"http": {"method": method, "path": path}},
    }


def test_greets_by_name():
    reply = app.handler(url_event(query={"name": "nimbus"}, path="/hi"), None)
    assert reply["statusCode"] == 200
    assert json.loads(reply["body"]) == {"message": "hello, nimbus", "path": "/hi"}


def test_default_name():
    assert json.loads(app.handler(url_event(), None)["body"])["message"] == "hello, world"


def test_other_methods_are_refused():
    assert app.handler(url_event(method="POST"), None)["statusCode"] == 405
