"""A scheduled site crawler: from each start URL it follows the links of the same host
(scheme, host and port) down to MAX_DEPTH clicks, and records each URL's status, time and
size, and every broken link (4xx, 5xx or no answer) with the pages that link to it.

Each run logs one JSON line per URL and one summary line (``nimbus logs``), and returns
the report; the template sends that return value to the ``CrawlReports`` queue (an
OnSuccess destination, as Lambda does for asynchronous invocations such as schedules).

A run reads its settings from the environment; the event (a schedule's Input) may override
the start URLs and the depth: ``{"urls": ["https://a.example/"], "max_depth": 1}``.

Settings (environment variables):
  START_URLS      where to start, separated by commas or whitespace (http:// or https://)
  MAX_DEPTH       how many clicks from a start URL to follow [2]; 0 checks the start only
  MAX_URLS        the most URLs one run fetches [500]
  CHECK_EXTERNAL  also check links to other hosts (fetched, never followed) [false]
  RESPECT_ROBOTS  skip what a host's robots.txt disallows for USER_AGENT [true]
  USER_AGENT      the crawler's name [nimbus-site-crawler]
  TIMEOUT_S       per-request timeout [10]
  WORKERS         requests in flight at once [8]
  REPORT_PAGES    the most per-URL results the returned report lists (slowest first) [200]

Standard library only: urllib, html.parser, concurrent.futures.
"""

import contextlib
import json
import os
import time
import urllib.error
import urllib.request
import urllib.robotparser
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from urllib.parse import urldefrag, urljoin, urlsplit

# Where links are in HTML; the others (javascript:, mailto:, data:, ...) are not fetched.
_LINK_ATTRS = {"a": "href", "area": "href", "link": "href", "img": "src", "script": "src",
               "iframe": "src", "source": "src", "frame": "src"}
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_MAX_HTML_BYTES = 2 * 1024 * 1024  # a page's links are read from its first 2 MiB


class _Links(HTMLParser):
    """The link targets of one HTML page, resolved against its URL (or its <base>)."""

    def __init__(self, base):
        super().__init__(convert_charrefs=True)
        self.base, self.found = base, []

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        if tag == "base" and values.get("href"):
            self.base = urljoin(self.base, values["href"])
        attr = _LINK_ATTRS.get(tag)
        if attr and values.get(attr):
            self.found.append(urljoin(self.base, values[attr].strip()))


def normalize(url):
    """The URL as the crawl compares it: no fragment, scheme and host in lower case; None
    for what is not http(s)."""
    url, _ = urldefrag(url)
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    path = parts.path or "/"
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{path}{query}"


def site(url):
    """What "the same host" means: scheme, host and port."""
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def fetch(url, user_agent, timeout):
    """GET ``url`` (redirects followed): a result dict, and the HTML text when it is a
    page whose links can be read."""
    request = urllib.request.Request(url, headers={"User-Agent": user_agent,
                                                   "Accept": "text/html,*/*;q=0.8"})
    result = {"url": url}
    start = time.perf_counter()
    html = None
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            result["status"] = response.status
            kind = response.headers.get_content_type()
            result["type"] = kind
            if response.geturl() != url:
                result["redirected_to"] = response.geturl()
            if kind in _HTML_TYPES:
                body = response.read(_MAX_HTML_BYTES)
                charset = response.headers.get_content_charset() or "utf-8"
                html = body.decode(charset, errors="replace")
                result["bytes"] = len(body)
    except urllib.error.HTTPError as exc:
        result["status"] = exc.code
        exc.close()
    except (OSError, ValueError) as exc:  # refused, timed out, DNS, bad TLS, bad URL
        result["status"] = None
        reason = getattr(exc, "reason", exc)
        result["error"] = f"{type(reason).__name__}: {reason}"
    result["ms"] = round((time.perf_counter() - start) * 1000, 1)
    return result, html


def broken(result):
    return result["status"] is None or result["status"] >= 400


class _Robots:
    """Each host's robots.txt, read once per run. As urllib.robotparser reads them: a 401
    or 403 disallows everything, any other failure allows everything."""

    def __init__(self, user_agent, timeout):
        self.user_agent, self.timeout = user_agent, timeout
        self.parsers = {}

    def allowed(self, url):
        scheme, netloc = site(url)
        key = f"{scheme}://{netloc}/robots.txt"
        if key not in self.parsers:
            self.parsers[key] = self._load(key)
        return self.parsers[key].can_fetch(self.user_agent, url)

    def _load(self, url):
        parser = urllib.robotparser.RobotFileParser(url)
        request = urllib.request.Request(url, headers={"User-Agent": self.user_agent})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                text = response.read(512 * 1024).decode("utf-8", errors="replace")
            parser.parse(text.splitlines())
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code in (401, 403):
                parser.disallow_all = True
            else:
                parser.allow_all = True
        except (OSError, ValueError):
            parser.allow_all = True
        return parser


def _flag(name, default):
    return os.environ.get(name, default).strip().lower() in ("1", "true", "yes", "on")


def settings(event):
    """The run's settings: the environment's, with the event's overrides."""
    event = event if isinstance(event, dict) else {}
    urls = event.get("urls") or event.get("url") or os.environ.get("START_URLS", "")
    if isinstance(urls, str):
        urls = urls.replace(",", " ").split()
    starts = []
    for url in urls:
        normal = normalize(str(url))
        if normal is None:
            raise ValueError(f"start URL {url!r} is not an http(s) URL")
        starts.append(normal)
    if not starts:
        raise ValueError("no start URLs: set START_URLS (or give {\"urls\": [...]} as input)")
    return {
        "starts": list(dict.fromkeys(starts)),
        "max_depth": int(event.get("max_depth", os.environ.get("MAX_DEPTH", "2"))),
        "max_urls": int(os.environ.get("MAX_URLS", "500")),
        "external": _flag("CHECK_EXTERNAL", "false"),
        "robots": _flag("RESPECT_ROBOTS", "true"),
        "user_agent": os.environ.get("USER_AGENT", "nimbus-site-crawler"),
        "timeout": float(os.environ.get("TIMEOUT_S", "10")),
        "workers": max(1, int(os.environ.get("WORKERS", "8"))),
        "report_pages": int(os.environ.get("REPORT_PAGES", "200")),
    }


def crawl(config, remaining_ms=None):
    """Crawl breadth first, one depth at a time: every result, the referrers of each URL,
    what was skipped, and whether the run stopped early (URL budget or time)."""
    hosts = {site(url) for url in config["starts"]}
    robots = _Robots(config["user_agent"], config["timeout"]) if config["robots"] else None
    referrers = {url: [] for url in config["starts"]}
    results, skipped = [], []
    level = [(url, True) for url in config["starts"]]  # (url, follow its links?)
    depth, truncated = 0, False
    with ThreadPoolExecutor(config["workers"]) as pool:
        while level:
            # Keep room for a whole request and the report before Lambda's timeout.
            if remaining_ms is not None and remaining_ms() < config["timeout"] * 1000 + 2000:
                truncated = True
                break
            if len(results) + len(level) > config["max_urls"]:
                level, truncated = level[: config["max_urls"] - len(results)], True
            allowed = []
            for url, follow in level:
                if robots is not None and not robots.allowed(url):
                    skipped.append({"url": url, "reason": "robots.txt"})
                else:
                    allowed.append((url, follow))
            fetched = pool.map(lambda item: fetch(item[0], config["user_agent"],
                                                  config["timeout"]), allowed)
            following = []
            for (url, follow), (result, html) in zip(allowed, fetched, strict=True):
                result["depth"] = depth
                results.append(result)
                if html is not None and follow and depth < config["max_depth"]:
                    parser = _Links(result.get("redirected_to", url))
                    # A page too broken to parse has no (more) links for us.
                    with contextlib.suppress(Exception):
                        parser.feed(html)
                    result["links"] = len(parser.found)
                    following.append((url, parser.found))
            level = []
            for page, links in following:
                for link in links:
                    normal = normalize(link)
                    if normal is None:
                        continue
                    if normal in referrers:
                        if page not in referrers[normal]:
                            referrers[normal].append(page)
                        continue
                    internal = site(normal) in hosts
                    if not internal and not config["external"]:
                        continue
                    referrers[normal] = [page]
                    level.append((normal, internal))
            depth += 1
            if truncated:
                break
    return results, referrers, skipped, truncated


def report(config, results, referrers, skipped, truncated, started, seconds):
    """What one run found, small enough for a queue message (at most REPORT_PAGES URLs)."""
    statuses = {}
    for result in results:
        key = str(result["status"]) if result["status"] is not None else "error"
        statuses[key] = statuses.get(key, 0) + 1
    bad = [{**r, "referrers": referrers.get(r["url"], [])[:10]} for r in results if broken(r)]
    slowest = sorted(results, key=lambda r: r["ms"], reverse=True)
    return {
        "startedAt": started,
        "durationMs": round(seconds * 1000, 1),
        "startUrls": config["starts"],
        "maxDepth": config["max_depth"],
        "checked": len(results),
        "statuses": statuses,
        "brokenCount": len(bad),
        "broken": bad[: config["report_pages"]],
        "skipped": skipped[: config["report_pages"]],
        "truncated": truncated,
        "pages": slowest[: config["report_pages"]],
    }


def handler(event, context):
    config = settings(event)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    clock = time.perf_counter()
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    results, referrers, skipped, truncated = crawl(config, remaining)
    for result in results:  # one structured line per URL: searchable in the logs
        print(json.dumps({"crawl": "url", **result, "broken": broken(result)}))
    found = report(config, results, referrers, skipped, truncated, started,
                   time.perf_counter() - clock)
    print(json.dumps({"crawl": "summary", **{k: v for k, v in found.items()
                                             if k not in ("pages", "broken", "skipped")}}))
    return found
