"""The API reference page (``/docs``) in a real browser: Debian's headless Chromium, as in
tests/http/test_dashboard_browser.py (skipped without it, except under ``CI=true``).

The page renders every operation of the document, its console has no error (a file that did
not load, a script or style the Content-Security-Policy refused), and everything it loaded came
from the server itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from ._served import Server, checked_server
from .test_dashboard_browser import CHROMEDRIVER, CHROMIUM, CHROMIUM_FLAGS, _require_chromium

TOKEN = "reference-test-token"
WAIT = 15.0  # seconds for Swagger UI to render the document


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    _require_chromium()
    with checked_server(tmp_path_factory.mktemp("reference-server"), token=TOKEN) as running:
        yield running


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    _require_chromium()
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = WebDriver(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        browser.set_page_load_timeout(30)
        yield browser
    finally:
        browser.quit()


def wait_for(driver: WebDriver, condition: Callable[[], object]) -> None:
    WebDriverWait(driver, WAIT, poll_frequency=0.1).until(lambda _: condition())


def test_the_reference_renders_every_operation_from_the_server_alone(
    driver: WebDriver, server: Server
) -> None:
    driver.get(server.url + "docs")
    wait_for(driver, lambda: len(driver.find_elements(By.CSS_SELECTOR, ".opblock")) >= 9)
    summaries = {
        element.text for element in driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
    }
    assert "/api/v1/jobs/pool/stats" in summaries
    assert "/api/v1/jobs/{job_id}/cancel" in summaries
    # The token is asked for under "Authorize" (the document has a bearer scheme).
    assert driver.find_elements(By.CSS_SELECTOR, "button.authorize")
    # "Try it out" on the stats: the request goes to this server, and its answer is shown.
    stats = driver.find_element(By.ID, "operations-default-poolStats")
    stats.find_element(By.CSS_SELECTOR, ".opblock-summary-control").click()
    wait_for(driver, lambda: stats.find_elements(By.CSS_SELECTOR, ".try-out__btn"))
    stats.find_element(By.CSS_SELECTOR, ".try-out__btn").click()
    wait_for(driver, lambda: stats.find_elements(By.CSS_SELECTOR, ".execute"))
    stats.find_element(By.CSS_SELECTOR, ".execute").click()
    wait_for(driver, lambda: stats.find_elements(By.CSS_SELECTOR, ".live-responses-table"))
    answer = stats.find_element(By.CSS_SELECTOR, ".live-responses-table tbody .response-col_status")
    assert answer.text.strip().startswith("200")
    assert "total_submitted" in stats.find_element(By.CSS_SELECTOR, ".live-responses-table").text
    entries: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    errors = [entry["message"] for entry in entries if entry["level"] == "SEVERE"]
    assert errors == []
    loaded: list[str] = driver.execute_script(
        "return performance.getEntriesByType('resource').map(entry => entry.name)"
    )
    assert loaded, "the page loaded no file"
    elsewhere = [url for url in loaded if not url.startswith(server.url)]
    assert elsewhere == []
    assert {Path(url).name for url in loaded} >= {
        "swagger-ui-bundle.js",
        "swagger-ui.css",
        "reference.js",
        "openapi.json",
    }
