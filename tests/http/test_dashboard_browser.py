"""The dashboard in a real browser: Debian's headless Chromium, driven by Selenium.

The server is a subprocess (tests/http/_server.py): a Trio pool served by Hypercorn
on a loopback port, with a token, so the cancel button's token handling is exercised. Without
/usr/bin/chromium or /usr/bin/chromedriver the tests are skipped, except under ``CI=true``,
where that is a failure (.ci/run installs both). Every wait is bounded.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

from tests.servers import free_port

from ._served import Server, checked_server, run_server, stop

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
TOKEN = "dashboard-test-token"
WAIT = 10.0  # seconds for the page to show something (it polls once a second)
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1024",
)

T = TypeVar("T")


def _require_chromium() -> None:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        message = f"{' and '.join(missing)} missing (.ci/run installs chromium, chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


# -- the server ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the module's tests (each test keeps to jobs of its own)."""
    _require_chromium()
    with checked_server(tmp_path_factory.mktemp("dashboard-server"), token=TOKEN) as running:
        yield running


# -- the browser -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """Headless Chromium, with its console log kept; Selenium Manager never runs (both the
    browser and the driver are given)."""
    _require_chromium()
    profile = tmp_path_factory.mktemp("chromium-profile")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=str(CHROMEDRIVER))
    browser = WebDriver(service=service, options=options)
    try:
        browser.set_page_load_timeout(30)
        browser.set_script_timeout(30)
        yield browser
    finally:
        browser.quit()


def console_errors(driver: WebDriver) -> list[str]:
    """The SEVERE entries of the browser's console since the last call (reading empties it)."""
    entries: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    return [entry["message"] for entry in entries if entry["level"] == "SEVERE"]


def wait_for(driver: WebDriver, what: str, condition: Callable[[], T | None]) -> T:
    """Wait (at most WAIT seconds) until ``condition()`` is truthy, and return it."""
    try:
        result = WebDriverWait(driver, WAIT, poll_frequency=0.1).until(lambda _: condition())
    except TimeoutException:
        pytest.fail(f"the page did not show {what} within {WAIT} s", pytrace=False)
    return cast(T, result)


def open_dashboard(driver: WebDriver, server: Server) -> None:
    """Load the page afresh (no token kept) and wait until it shows the server's numbers."""
    console_errors(driver)  # forget what earlier tests left
    driver.get(server.url)
    driver.execute_script("sessionStorage.clear()")
    driver.refresh()
    wait_for(driver, "the connected state", lambda: state_of(driver) == "connected")


def state_of(driver: WebDriver) -> str | None:
    return driver.find_element(By.ID, "connection").get_attribute("data-state")


def text(driver: WebDriver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def shows(driver: WebDriver, element_id: str, expected: object) -> Callable[[], bool]:
    """A condition: the element's text is ``str(expected)``."""
    return lambda: text(driver, element_id) == str(expected)


def row_of(driver: WebDriver, job_id: str) -> WebElement | None:
    """The table row of a job (compared in Python: ids may hold any character)."""
    for row in driver.find_elements(By.CSS_SELECTOR, "#jobs tr[data-job-id]"):
        if row.get_attribute("data-job-id") == job_id:
            return row
    return None


def row_status(driver: WebDriver, job_id: str) -> str | None:
    row = row_of(driver, job_id)
    return None if row is None else row.get_attribute("data-status")


def has_status(driver: WebDriver, job_id: str, status: str) -> Callable[[], bool]:
    """A condition: the job's row shows ``status``."""
    return lambda: row_status(driver, job_id) == status


# -- the tests -------------------------------------------------------------------------------


def test_page_loads_without_console_errors(driver: WebDriver, server: Server) -> None:
    open_dashboard(driver, server)
    assert driver.title == "trio_jobpool dashboard"
    assert driver.find_element(By.TAG_NAME, "h1").text == "trio_jobpool"
    wait_for(driver, "max workers 4", shows(driver, "max-workers", 4))
    assert text(driver, "queued").isdigit()
    assert text(driver, "active").isdigit()
    assert "memory://" in text(driver, "server-info")
    # The stylesheet applies (a canvas is inline without it) and the chart has been drawn.
    chart = driver.find_element(By.ID, "chart")
    assert chart.value_of_css_property("display") == "block"
    drawn = """
        const canvas = document.getElementById("chart");
        const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
        return pixels.data.some((value, index) => index % 4 === 3 && value > 0);
    """
    wait_for(driver, "a chart", lambda: driver.execute_script(drawn))
    # The server wants a token, so the page offers a field for it.
    assert driver.find_element(By.ID, "token").is_displayed()
    assert driver.find_element(By.CSS_SELECTOR, "label[for=token]").is_displayed()
    assert console_errors(driver) == []


def test_numbers_follow_submitted_jobs(driver: WebDriver, server: Server) -> None:
    open_dashboard(driver, server)
    before = server.stats()
    wait_for(driver, "the server's numbers", shows(driver, "completed", before["total_completed"]))
    assert text(driver, "failed") == str(before["total_failed"])

    quick = [server.submit("quick", n, job_id=f"quick-{n}") for n in range(5)]
    failing = [server.submit("boom", "on purpose", job_id=f"boom-{n}") for n in range(2)]

    wait_for(driver, "5 more completed", shows(driver, "completed", before["total_completed"] + 5))
    wait_for(driver, "2 more failed", shows(driver, "failed", before["total_failed"] + 2))
    wait_for(driver, "7 more submitted", shows(driver, "submitted", before["total_submitted"] + 7))
    for job_id in quick:
        wait_for(driver, f"{job_id} completed", has_status(driver, job_id, "completed"))
    for job_id in failing:
        wait_for(driver, f"{job_id} failed", has_status(driver, job_id, "failed"))
        row = row_of(driver, job_id)
        assert row is not None
        assert row.find_element(By.CSS_SELECTOR, ".error").text == "ValueError: on purpose"
        assert row.find_elements(By.CSS_SELECTOR, "button.cancel") == []
    # The chart's figures cover the last minute, which holds these jobs.
    wait_for(driver, "a throughput", lambda: text(driver, "throughput").endswith(" jobs/s"))
    assert text(driver, "throughput") != "0.00 jobs/s"
    wait_for(driver, "a failure rate", lambda: text(driver, "failure-rate").endswith(" %"))
    assert console_errors(driver) == []


def test_cancel_button_cancels_a_running_job(driver: WebDriver, server: Server) -> None:
    open_dashboard(driver, server)
    before = server.stats()
    # An id with characters that HTML and URLs give meaning to: it must show as text.
    job_id = 'blocker <b>"&amp; 100% ü #1?'
    server.submit("blocker", job_id=job_id)

    def running_with_progress() -> WebElement | None:
        row = row_of(driver, job_id)
        if row is None or row.get_attribute("data-status") != "running":
            return None
        progress = row.find_element(By.TAG_NAME, "progress")
        if float(progress.get_attribute("value") or 0) <= 0:
            return None
        return row if "step" in row.find_element(By.CSS_SELECTOR, ".progress-text").text else None

    row = wait_for(driver, "the job running with progress", running_with_progress)
    assert row.find_element(By.CSS_SELECTOR, "th.id").text == job_id
    assert row.find_elements(By.TAG_NAME, "b") == []  # no markup from the id
    wait_for(driver, "one active worker", shows(driver, "active", 1))

    cancel = row.find_element(By.CSS_SELECTOR, "button.cancel")
    token = driver.find_element(By.ID, "token")
    message = driver.find_element(By.ID, "message")
    assert token.get_attribute("value") == ""

    # Without a token the page asks for one and sends nothing.
    cancel.click()
    wait_for(driver, "a request for the token", lambda: "token" in message.text)
    assert driver.switch_to.active_element == token
    assert server.job(job_id)["status"] == "running"

    # A wrong token: the server answers 401, and the page says so.
    token.send_keys("not-the-token")
    cancel.click()
    wait_for(driver, "the refusal", lambda: "refused the token" in message.text)
    assert server.job(job_id)["status"] == "running"
    refusals = console_errors(driver)  # Chromium logs every 4xx answer of a fetch
    assert all("/cancel" in entry and "401" in entry for entry in refusals), refusals

    # The right token: the job ends cancelled.
    token.clear()
    token.send_keys(TOKEN)
    cancel.click()
    wait_for(driver, "the confirmation", lambda: message.text == f"Job {job_id} cancelled.")
    assert server.job(job_id, wait=WAIT)["status"] == "cancelled"
    wait_for(driver, "the job cancelled", has_status(driver, job_id, "cancelled"))
    ended = row_of(driver, job_id)
    assert ended is not None
    assert ended.find_elements(By.CSS_SELECTOR, "button.cancel") == []
    wait_for(
        driver, "one more cancelled", shows(driver, "cancelled", before["total_cancelled"] + 1)
    )
    wait_for(driver, "no active worker", shows(driver, "active", 0))
    stored = driver.execute_script("return sessionStorage.getItem('trio_jobpool.token')")
    assert stored == TOKEN
    assert console_errors(driver) == []


def test_disconnected_state_and_recovery(driver: WebDriver, tmp_path: Path) -> None:
    _require_chromium()
    port = free_port()
    log = tmp_path / "server.log"
    with run_server(log, port, token=TOKEN) as first:
        open_dashboard(driver, first)
        wait_for(driver, "max workers", shows(driver, "max-workers", 4))
        stop(first.process)
        wait_for(driver, "the disconnected state", lambda: state_of(driver) == "disconnected")
        # The browser logs each refused connection; nothing else may show up.
        refused = console_errors(driver)
        assert all("ERR_CONNECTION_REFUSED" in entry for entry in refused), refused
    with run_server(log, port, token=TOKEN) as second:
        second.submit("quick", 1, job_id="after-restart")
        wait_for(driver, "the connected state", lambda: state_of(driver) == "connected")
        wait_for(driver, "the new server's job", lambda: row_status(driver, "after-restart"))
        wait_for(driver, "the new server's numbers", shows(driver, "completed", 1))
    refused = console_errors(driver)
    assert all("ERR_CONNECTION_REFUSED" in entry for entry in refused), refused
