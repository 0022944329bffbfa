"""The dashboard on a live nimbus, read with httpx as a browser would: open on loopback
when the control plane has no authentication, behind a login with sigv4; its JSON the
control plane's own answers; read-only; the control plane's own auth untouched."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import HELLO, ROLE, live_server
from tests.nimbus_process import NimbusProcess


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NimbusProcess]:
    with live_server(tmp_path_factory.mktemp("ui-open") / "data") as proc:
        yield proc


@pytest.fixture(scope="module")
def signed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NimbusProcess]:
    data = tmp_path_factory.mktemp("ui-sigv4") / "data"
    with live_server(data, {"NIMBUS_API_AUTH": "sigv4"}) as proc:
        yield proc


def keys(server: NimbusProcess) -> tuple[str, str]:
    stored = json.loads((Path(server.data_dir) / "credentials.json").read_text())
    return stored["AccessKeyId"], stored["SecretAccessKey"]


def test_the_page_and_its_assets_are_served(open_server: NimbusProcess) -> None:
    base = open_server.endpoint
    page = httpx.get(f"{base}/ui")
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert '<main id="view">' in page.text
    script = httpx.get(f"{base}/ui/static/app.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    chart = httpx.get(f"{base}/ui/vendor/uPlot.iife.min.js")
    assert chart.status_code == 200 and "uPlot" in chart.text
    for bad in ("/ui/static/../dashboard.py", "/ui/static/.hidden", "/ui/static/nope.js",
                "/ui/vendor/%2e%2e%2fgate.py", "/ui/nowhere"):
        assert httpx.get(base + bad).status_code == 404, bad


def test_the_json_is_the_control_planes_own(open_server: NimbusProcess) -> None:
    base = open_server.endpoint
    lam = open_server.client()
    lam.create_function(FunctionName="ui-listed", Runtime="python3.12", Role=ROLE,
                        Handler="app.handler", Code={"ZipFile": HELLO})
    via_ui = httpx.get(f"{base}/ui/api/2015-03-31/functions").json()
    direct = httpx.get(f"{base}/2015-03-31/functions").json()
    assert [f["FunctionName"] for f in via_ui["Functions"]] == ["ui-listed"]
    assert via_ui == direct
    conf = httpx.get(f"{base}/ui/api/2015-03-31/functions/ui-listed/configuration").json()
    assert conf["Handler"] == "app.handler"
    metrics = httpx.get(f"{base}/ui/api/_nimbus/metrics", params={"Minutes": 5}).json()
    assert metrics["Minutes"] == 5
    recent = httpx.get(f"{base}/ui/api/functions/ui-listed/invocations").json()
    assert recent == {"FunctionName": "ui-listed", "Invocations": []}
    sqs = open_server.client("sqs")
    sqs.create_queue(QueueName="ui-backlog")
    url = sqs.get_queue_url(QueueName="ui-backlog")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="waiting")
    queues = httpx.get(f"{base}/ui/api/queues").json()["Queues"]
    mine = next(q for q in queues if q["QueueName"] == "ui-backlog")
    assert mine["Visible"] == 1 and mine["OldestMessageAgeSeconds"] is not None
    # Errors come in the control plane's shape.
    missing = httpx.get(f"{base}/ui/api/2015-03-31/functions/absent/configuration")
    assert missing.status_code == 404 and "Function not found" in missing.json()["Message"]
    bad = httpx.get(f"{base}/ui/api/functions/ui-listed/invocations", params={"Limit": 0})
    assert bad.status_code == 400


def test_the_dashboard_only_reads(open_server: NimbusProcess) -> None:
    base = open_server.endpoint
    lam = open_server.client()
    lam.create_function(FunctionName="ui-kept", Runtime="python3.12", Role=ROLE,
                        Handler="app.handler", Code={"ZipFile": HELLO})
    deleted = httpx.delete(f"{base}/ui/api/2015-03-31/functions/ui-kept")
    assert deleted.status_code == 405
    invoked = httpx.post(f"{base}/ui/api/2015-03-31/functions/ui-kept/invocations", content=b"{}")
    assert invoked.status_code == 405
    # A path the control plane serves but the dashboard does not read.
    code = httpx.get(f"{base}/ui/api/2015-03-31/functions/ui-kept")
    assert code.status_code == 404 and "no /2015-03-31/functions/ui-kept" in code.json()["Message"]
    assert lam.get_function(FunctionName="ui-kept")["Configuration"]["FunctionName"] == "ui-kept"


def test_other_host_names_are_refused(open_server: NimbusProcess) -> None:
    base = open_server.endpoint
    page = httpx.get(f"{base}/ui", headers={"Host": "rebound.example"})
    assert page.status_code == 403 and "localhost" in page.text
    data = httpx.get(f"{base}/ui/api/queues", headers={"Host": "rebound.example"})
    assert data.status_code == 403
    assert httpx.get(f"{base}/ui/api/queues", headers={"Host": "localhost"}).status_code == 200
    # Nothing to log in to without sigv4.
    login = httpx.get(f"{base}/ui/login")
    assert login.status_code == 303 and login.headers["location"] == "/ui"


def test_sigv4_asks_for_the_keys(signed_server: NimbusProcess) -> None:
    base = signed_server.endpoint
    key, secret = keys(signed_server)
    page = httpx.get(f"{base}/ui")
    assert page.status_code == 303 and page.headers["location"] == "/ui/login"
    data = httpx.get(f"{base}/ui/api/queues")
    assert data.status_code == 401 and "nimbus credentials" in data.json()["message"]
    form = httpx.get(f"{base}/ui/login")
    assert form.status_code == 200 and 'name="secret_access_key"' not in form.text
    assert "name=secret_access_key" in form.text
    wrong = httpx.post(f"{base}/ui/login", data={"access_key_id": key, "secret_access_key": "x"})
    assert wrong.status_code == 403 and "login-error" in wrong.text
    assert "set-cookie" not in wrong.headers
    both = {"access_key_id": key, "secret_access_key": secret}
    forged = httpx.post(f"{base}/ui/login", data=both, headers={"Origin": "http://evil.example"})
    assert forged.status_code == 403 and "set-cookie" not in forged.headers

    with httpx.Client(base_url=base) as browser:
        logged = browser.post("/ui/login", data=both)
        assert logged.status_code == 303 and logged.headers["location"] == "/ui"
        cookie = logged.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie
        assert browser.get("/ui").status_code == 200
        assert browser.get("/ui/api/session").json() == {"Auth": "sigv4"}
        listed = browser.get("/ui/api/2015-03-31/functions")
        assert listed.status_code == 200 and listed.json()["Functions"] == []
        # The session opens the dashboard, not the control plane: that still wants SigV4.
        direct = browser.get("/2015-03-31/functions")
        assert direct.status_code == 403
        assert browser.post("/ui/logout").status_code == 303
        assert browser.get("/ui/api/queues").status_code == 401
