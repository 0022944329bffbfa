"""The dashboard in a real browser: Debian's chromium, headless, driven through its own
chromedriver (nothing downloaded), against a live nimbus that ran a traced function
several times, some of them failing.

Screenshots of every view are kept: in the test's tmp dir and in
``test-artifacts/ui/`` at the top of the checkout (git-ignored). Without chromium the
test is skipped locally and fails in CI (``make test`` installs it: ``make browser``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nimbus.ui import dashboard
from tests.conftest import ROLE, live_server, make_zip, unavailable
from tests.nimbus_process import NimbusProcess

pytestmark = pytest.mark.sandbox

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts" / "ui"
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--disable-dev-shm-usage", "--window-size=1400,1600",
)
ORDERS = make_zip({"app.py": """
import json
def handler(event, context):
    print("order", json.dumps(event))
    if event.get("fail"):
        raise ValueError("order %s was asked to fail" % event["n"])
    return {"accepted": event["n"]}
"""})
RUNS = 6
FAILING = {2, 5}
# The invocations series' colour (charts.js COLORS.invocations, #2563eb), counted on the
# chart's canvas: a line drawn from the data, not just an empty frame.
BLUE_PIXELS = """
const canvas = document.querySelector('#chart-invocations canvas');
if (!canvas) return -1;
const px = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
let n = 0;
for (let i = 0; i < px.length; i += 4) {
  if (px[i] < 80 && px[i + 1] > 70 && px[i + 1] < 130 && px[i + 2] > 200) n++;
}
return n;
"""


def browser_problem() -> str | None:
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        return (f"{CHROMIUM} and {CHROMEDRIVER} are needed (`make browser`, or "
                "apt-get install chromium chromium-driver)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    missing = [f for f in dashboard.VENDOR_FILES if not (dashboard.VENDOR / f).is_file()]
    if missing:
        return f"the dashboard's uPlot is not fetched ({', '.join(missing)}): `make ui-assets`"
    return None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NimbusProcess]:
    with live_server(tmp_path_factory.mktemp("ui-browser") / "data") as proc:
        yield proc


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[Any]:
    reason = browser_problem()
    if reason:
        unavailable(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    browser.set_page_load_timeout(60)
    try:
        yield browser
    finally:
        browser.quit()


class Shots:
    """Screenshots, in the test's tmp dir and copied to test-artifacts/ui/."""

    def __init__(self, driver: Any, directory: Path) -> None:
        self.driver = driver
        self.directory = directory
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def take(self, name: str) -> None:
        path = self.directory / f"{name}.png"
        assert self.driver.save_screenshot(str(path)), f"screenshot {name} failed"
        shutil.copy(path, ARTIFACTS / path.name)


def run_orders(server: NimbusProcess) -> list[str]:
    """ui-orders created with active tracing and invoked RUNS times; the failing ids."""
    lam = server.client()
    lam.create_function(FunctionName="ui-orders", Runtime="python3.12", Role=ROLE,
                        Handler="app.handler", Code={"ZipFile": ORDERS},
                        TracingConfig={"Mode": "Active"})
    lam.get_waiter("function_active_v2").wait(FunctionName="ui-orders")
    failed = []
    for n in range(RUNS):
        out = lam.invoke(FunctionName="ui-orders",
                         Payload=json.dumps({"n": n, "fail": n in FAILING}))
        assert ("FunctionError" in out) == (n in FAILING)
        if n in FAILING:
            failed.append(out["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"])
    sqs = server.client("sqs")
    url = sqs.create_queue(QueueName="ui-waiting")["QueueUrl"]
    for body in ("one", "two"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    return failed


def test_dashboard_shows_functions_metrics_traces_and_map(
    driver: Any, server: NimbusProcess, tmp_path: Path
) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    failed = run_orders(server)
    shots = Shots(driver, tmp_path)

    def until(check: Callable[[Any], Any], what: str) -> Any:
        # Auto-refresh re-renders the tables: an element found a moment ago may be gone
        # when its text is read, which is only a reason to look again.
        return WebDriverWait(driver, 30, poll_frequency=0.2,
                             ignored_exceptions=(StaleElementReferenceException,)
                             ).until(check, f"waiting for {what}")

    def found(css: str) -> Callable[[Any], Any]:
        return lambda d: d.find_elements(By.CSS_SELECTOR, css)

    # The functions table, with this function's totals and sparklines.
    driver.get(f"{server.endpoint}/ui")
    row = until(found('#functions-table tr[data-function="ui-orders"]'), "the functions table")[0]
    figures = {cell.get_attribute("data-metric"): cell.find_element(By.CSS_SELECTOR, ".figure").text
               for cell in row.find_elements(By.CSS_SELECTOR, "td.metric")}
    assert figures["Invocations"] == str(RUNS)
    assert figures["Errors"] == str(len(FAILING))
    assert figures["Throttles"] == "0"
    assert figures["Cost"].startswith("$") and figures["Cost"] != "$0"
    assert len(row.find_elements(By.CSS_SELECTOR, "svg.spark polyline")) >= 4
    shots.take("functions")

    # The function: graphs drawn from non-zero data, its invocations, one's log and trace.
    row.find_element(By.LINK_TEXT, "ui-orders").click()
    total = until(found('#chart-invocations .total[data-total="Invocations"]'), "the charts")[0]
    assert float(total.get_attribute("data-value")) == RUNS
    errors = driver.find_element(By.CSS_SELECTOR, '#chart-invocations .total[data-total="Errors"]')
    assert float(errors.get_attribute("data-value")) == len(FAILING)
    p50 = driver.find_element(By.CSS_SELECTOR, '#chart-duration .total[data-total="p50"]')
    p99 = driver.find_element(By.CSS_SELECTOR, '#chart-duration .total[data-total="p99"]')
    assert 0 < float(p50.get_attribute("data-value")) <= float(p99.get_attribute("data-value"))
    until(lambda d: d.execute_script(BLUE_PIXELS) > 20, "the invocations line on its canvas")
    for chart in ("invocations", "duration", "cost"):
        assert driver.find_elements(By.CSS_SELECTOR, f"#chart-{chart} canvas"), chart
    listed = "#invocations-table tr[data-request]"
    rows = until(lambda d: len(d.find_elements(By.CSS_SELECTOR, listed)) == RUNS
                 and d.find_elements(By.CSS_SELECTOR, listed), "the invocations table")
    assert sorted(r.get_attribute("data-request") for r in rows
                  if r.get_attribute("data-status") == "error") == sorted(failed)
    starts = [r.find_elements(By.CSS_SELECTOR, "td")[6].text for r in rows]
    assert starts[-1].startswith("cold") and all(s == "warm" for s in starts[:-1])
    until(found("#trace-waterfall .wf-row"), "the newest invocation's waterfall")
    shots.take("function")

    failing = next(r for r in rows if r.get_attribute("data-request") == failed[-1])
    failing.click()
    until(lambda d: f"order {max(FAILING)} was asked to fail"
          in d.find_element(By.ID, "invocation-logs").text, "the failed invocation's log")
    log_text = driver.find_element(By.ID, "invocation-logs").text
    assert f"START RequestId: {failed[-1]}" in log_text and "REPORT RequestId" in log_text
    waterfall = until(found("#trace-waterfall"), "the failed invocation's trace")[0]
    until(lambda d: d.find_elements(By.CSS_SELECTOR, "#trace-waterfall .wf-row.failed"),
          "the failed span")
    names = [e.text for e in waterfall.find_elements(By.CSS_SELECTOR, ".wf-name")]
    assert "ui-orders" in names and "Invocation" in names
    assert driver.current_url.endswith(f"?request={failed[-1]}")
    driver.execute_script("document.getElementById('invocation-detail').scrollIntoView()")
    shots.take("function-failed-invocation")

    # The service map: the client calling the function, both drawn.
    driver.find_element(By.CSS_SELECTOR, 'nav a[data-nav="map"]').click()
    node = until(found('#service-map-svg g.node[data-node="AWS::Lambda::Function/ui-orders"]'),
                 "the function on the service map")[0]
    assert f"{RUNS} ·" in node.text and f"{len(FAILING)} err" in node.text
    assert driver.find_elements(
        By.CSS_SELECTOR, '#service-map-svg g.edge[data-to="AWS::Lambda::Function/ui-orders"]')
    shots.take("service-map")

    # Queues: the backlog nobody reads.
    driver.find_element(By.CSS_SELECTOR, 'nav a[data-nav="queues"]').click()
    queue = until(found('#queues-table tr[data-queue="ui-waiting"]'), "the queue's row")[0]
    assert queue.find_elements(By.CSS_SELECTOR, "td")[1].text == "2"
    shots.take("queues")

    # The time range picker reloads the view with the new range, kept for the next visit.
    driver.find_element(By.CSS_SELECTOR, 'nav a[data-nav="functions"]').click()
    until(found('#functions-table tr[data-function="ui-orders"]'), "the functions table again")
    driver.find_element(By.CSS_SELECTOR, '#range option[value="15"]').click()
    until(lambda d: "last 15 minutes" in d.find_element(By.ID, "functions-summary").text,
          "the 15-minute range")
    assert driver.execute_script("return localStorage.getItem('nimbus.minutes')") == "15"

    # Auto-refresh: a new invocation shows up without reloading the page.
    driver.find_element(By.CSS_SELECTOR, '#refresh option[value="5"]').click()
    server.client().invoke(FunctionName="ui-orders", Payload=json.dumps({"n": RUNS}))
    until(lambda d: d.find_element(
        By.CSS_SELECTOR, '#functions-table tr[data-function="ui-orders"] '
        'td[data-metric="Invocations"] .figure').text == str(RUNS + 1), "the next refresh")

    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe
    for name in ("functions", "function", "function-failed-invocation", "service-map", "queues"):
        assert (ARTIFACTS / f"{name}.png").stat().st_size > 10_000
