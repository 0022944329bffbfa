"""Tests of the crawler against local sites only: HTTP servers this test starts, with
pages, a redirect, broken links, a robots.txt and a second host.
Run from the blueprint's folder: ``python -m pytest tests``."""

import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import app


def page(*links):
    anchors = "".join(f'<a href="{link}">{link}</a>' for link in links)
    return f"<!doctype html><html><body>{anchors}</body></html>"


def site_pages(other, dead):
    """path -> (status, content type, body, extra headers) of the site under test."""
    return {
        "/robots.txt": (200, "text/plain", "User-agent: *\nDisallow: /private/\n", {}),
        "/": (200, "text/html; charset=utf-8", page(
            "/a", "b", "/missing", "/a#top", "mailto:team@example.com", "javascript:void(0)",
            "/private/secret", "/moved", f"{other}/ext", f"{other}/ext-missing", dead,
        ) + '<img src="/logo.png">', {}),
        "/a": (200, "text/html", page("/", "/deep1"), {}),
        "/b": (500, "text/html", "oops", {}),
        "/moved": (302, "text/html", "", {"Location": "/a?from=moved"}),
        "/a?from=moved": (200, "text/html", page("/a"), {}),
        "/deep1": (200, "text/html", page("/deep2"), {}),
        "/deep2": (200, "text/html", page("/deep3"), {}),
        "/deep3": (200, "text/html", page(), {}),
        "/logo.png": (200, "image/png", "PNG", {}),
        "/ext": (200, "text/html", page("/ext-child"), {}),
        "/ext-child": (200, "text/html", page(), {}),
    }


class _Site(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.hits.append(self.path)
        status, kind, body, headers = self.server.pages.get(
            self.path, (404, "text/html", "not found", {}))
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


def _serve():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    server.daemon_threads = True
    server.hits = []
    # A short poll interval: shutdown() waits for the loop to look.
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


@pytest.fixture
def sites(monkeypatch):
    main, other = _serve(), _serve()
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/gone"
    base = f"http://127.0.0.1:{main.server_address[1]}"
    other_base = f"http://127.0.0.1:{other.server_address[1]}"
    main.pages = other.pages = site_pages(other_base, dead)
    main.base, other.base, main.dead = base, other_base, dead
    monkeypatch.setenv("START_URLS", base + "/")
    for name in ("MAX_DEPTH", "MAX_URLS", "CHECK_EXTERNAL", "RESPECT_ROBOTS"):
        monkeypatch.delenv(name, raising=False)
    yield main, other
    for server in (main, other):
        server.shutdown()
        server.server_close()


def checked(found, base):
    return sorted(p["url"].removeprefix(base) for p in found["pages"])


def test_follows_the_same_host_to_max_depth_and_reports_broken_links(sites):
    main, other = sites
    found = app.handler({}, None)
    base = main.base
    # Depth 0: /, depth 1: what / links to, depth 2: what those link to; /deep2 (depth 3)
    # is not fetched; the other host and javascript:/mailto: links are not either.
    assert checked(found, base) == ["/", "/a", "/b", "/deep1", "/logo.png", "/missing",
                                    "/moved"]
    assert "/deep2" not in main.hits and other.hits == []
    by_url = {p["url"].removeprefix(base): p for p in found["pages"]}
    assert by_url["/"]["depth"] == 0 and by_url["/deep1"]["depth"] == 2
    assert by_url["/"]["links"] == 12 and "links" not in by_url["/deep1"]
    assert by_url["/moved"]["redirected_to"] == base + "/a?from=moved"
    assert by_url["/logo.png"]["type"] == "image/png" and by_url["/logo.png"]["status"] == 200
    assert all(p["ms"] >= 0 for p in found["pages"])
    broken = {b["url"].removeprefix(base): b for b in found["broken"]}
    assert set(broken) == {"/missing", "/b"}
    assert broken["/missing"]["status"] == 404 and broken["/missing"]["referrers"] == [base + "/"]
    assert broken["/b"]["status"] == 500
    assert found["statuses"] == {"200": 5, "404": 1, "500": 1}
    assert found["brokenCount"] == 2 and found["checked"] == 7 and not found["truncated"]
    assert found["skipped"] == [{"url": base + "/private/secret", "reason": "robots.txt"}]
    assert "/private/secret" not in main.hits


def test_a_page_linked_from_several_pages_is_fetched_once_and_names_them(sites):
    main, _ = sites
    found = app.handler({"max_depth": 2}, None)
    assert main.hits.count("/a") == 1
    by_url = {p["url"].removeprefix(main.base): p for p in found["pages"]}
    assert by_url["/a"]["depth"] == 1
    referrers = app.crawl(app.settings({}))[1]
    # /moved redirects to a page linking to /a: the link is the redirecting URL's.
    assert referrers[main.base + "/a"] == [main.base + "/", main.base + "/moved"]


def test_external_links_are_checked_but_not_followed(sites, monkeypatch):
    main, other = sites
    monkeypatch.setenv("CHECK_EXTERNAL", "true")
    found = app.handler({"max_depth": 1}, None)
    urls = {p["url"]: p for p in found["pages"]}
    assert urls[other.base + "/ext"]["status"] == 200
    assert "/ext-child" not in other.hits  # another host: checked, never crawled
    broken = {b["url"]: b for b in found["broken"]}
    assert broken[other.base + "/ext-missing"]["status"] == 404
    dead = broken[main.dead]
    assert dead["status"] is None and "ConnectionRefusedError" in dead["error"]
    assert dead["referrers"] == [main.base + "/"]


def test_depth_zero_checks_only_the_start_urls(sites):
    main, _ = sites
    found = app.handler({"urls": [main.base + "/a", main.base + "/b"], "max_depth": 0}, None)
    assert checked(found, main.base) == ["/a", "/b"]
    assert found["startUrls"] == [main.base + "/a", main.base + "/b"]


def test_robots_can_be_ignored(sites, monkeypatch):
    main, _ = sites
    monkeypatch.setenv("RESPECT_ROBOTS", "false")
    found = app.handler({"max_depth": 1}, None)
    assert found["skipped"] == [] and "/private/secret" in main.hits
    assert "/robots.txt" not in main.hits


def test_the_url_budget_stops_the_run_and_says_so(sites, monkeypatch):
    monkeypatch.setenv("MAX_URLS", "3")
    found = app.handler({}, None)
    assert found["checked"] == 3 and found["truncated"] is True


def test_each_url_is_logged_as_one_json_line(sites, capsys):
    found = app.handler({"max_depth": 1}, None)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    urls = [line for line in lines if line["crawl"] == "url"]
    assert len(urls) == found["checked"]
    assert {u["url"] for u in urls if u["broken"]} == {b["url"] for b in found["broken"]}
    (summary,) = [line for line in lines if line["crawl"] == "summary"]
    assert summary["brokenCount"] == found["brokenCount"] and "pages" not in summary


def test_bad_settings_fail_the_run_saying_what_to_set(monkeypatch):
    monkeypatch.delenv("START_URLS", raising=False)
    with pytest.raises(ValueError, match="START_URLS"):
        app.handler({}, None)
    with pytest.raises(ValueError, match="not an http"):
        app.handler({"urls": ["ftp://example.com/"]}, None)
