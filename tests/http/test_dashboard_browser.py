"""The dashboard in a real browser: Debian's headless Chromium, driven by Selenium.

The server is a subprocess (tests/http/_server.py): a Trio pool served by Hypercorn
on a loopback port, with a token, so the cancel button's token handling is exercised. Without
/usr/bin/chromium or /usr/bin/chromedriver the tests are skipped, except under ``CI=true``,
where that is a failure (.ci/run installs both). Every wait is bounded.
"""

from __future__ import annotations

import datetime
import os
import re
import threading
import time
import urllib.parse
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
NO_VALUE = "\N{EN DASH}"  # what the page shows for a number it does not have
RATE_WINDOW = 10.0  # seconds: each point of the chart covers the jobs ended in this window
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


def has_ended(driver: WebDriver, job_id: str) -> Callable[[], bool]:
    """A condition: the job's row shows it completed or failed."""
    return lambda: row_status(driver, job_id) in ("completed", "failed")


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


def due_rows(driver: WebDriver) -> list[dict[str, str]]:
    """The rows of the next due jobs, as shown: id, name, due (text, title, seconds), priority."""
    rows: list[dict[str, str]] = driver.execute_script(
        """
        return [...document.querySelectorAll("#due tr")].map((row) => ({
            id: row.dataset.jobId,
            name: row.querySelector(".name").textContent,
            due: row.querySelector(".due").textContent,
            iso: row.querySelector(".due").title,
            seconds: row.querySelector(".due").dataset.scheduledFor,
            priority: row.querySelector(".priority").textContent,
        }));
        """
    )
    return rows


def test_scheduled_jobs_show_with_their_due_time(driver: WebDriver, server: Server) -> None:
    """The scheduled count, the next due jobs (id, name, due time in the browser's zone and how
    far ahead, priority), earliest first; a scheduled job in the recent jobs, with a Cancel
    button that cancels it."""
    open_dashboard(driver, server)
    before = server.stats()
    assert before["scheduled_tasks"] == 0  # (no other test of the module schedules)
    wait_for(driver, "no scheduled job", shows(driver, "scheduled", 0))
    assert driver.find_element(By.ID, "due-empty").is_displayed()
    assert not driver.find_element(By.ID, "due-table").is_displayed()

    later = server.submit("quick", 2, job_id="due <b>later &amp;", delay=7200)
    soon = server.api(
        "POST",
        "api/v1/jobs",
        {"name": "nap", "args": [1], "job_id": "due-soon", "priority": 2, "delay": 600},
    )["job_id"]
    try:
        wait_for(driver, "2 scheduled", shows(driver, "scheduled", 2))
        wait_for(
            driver,
            "the next due",
            lambda: (
                [row["id"] for row in due_rows(driver)]
                == [
                    soon,
                    later,
                ]
            ),
        )
        assert not driver.find_element(By.ID, "due-empty").is_displayed()
        shown = {row["id"]: row for row in due_rows(driver)}
        for job_id, name, priority, ahead in (
            (soon, "nap", "2", r"in (9|10) min"),
            (later, "quick", "5", r"in (1\.9|2\.0) h"),
        ):
            cells = shown[job_id]
            due = server.job(job_id)["scheduled_for"]
            assert (cells["name"], cells["priority"], float(cells["seconds"])) == (
                name,
                priority,
                due,
            )
            local = datetime.datetime.fromtimestamp(round(due)).strftime("%Y-%m-%d %H:%M:%S")
            assert re.fullmatch(rf"{local} \({ahead}\)", cells["due"]), cells
            utc = datetime.datetime.fromtimestamp(int(due), datetime.UTC)
            assert cells["iso"].startswith(utc.strftime("%Y-%m-%dT%H:%M:%S.")), cells
            assert cells["iso"].endswith("Z"), cells
        assert driver.find_elements(By.CSS_SELECTOR, "#due b") == []  # the id is text

        # In the recent jobs: scheduled, with no progress to show, and a Cancel button.
        wait_for(driver, "the job scheduled", has_status(driver, soon, "scheduled"))
        row = row_of(driver, soon)
        assert row is not None
        assert row.find_element(By.CSS_SELECTOR, ".progress-text").text == NO_VALUE
        badge = row.find_element(By.CSS_SELECTOR, ".badge")
        assert (badge.get_attribute("title") or "").startswith("due "), badge.get_attribute("title")
        driver.find_element(By.ID, "token").send_keys(TOKEN)
        row.find_element(By.CSS_SELECTOR, "button.cancel").click()
        message = driver.find_element(By.ID, "message")
        wait_for(driver, "the confirmation", lambda: message.text == f"Job {soon} cancelled.")
        wait_for(driver, "the job cancelled", has_status(driver, soon, "cancelled"))
        wait_for(driver, "1 scheduled", shows(driver, "scheduled", 1))
        wait_for(driver, "one due", lambda: [row["id"] for row in due_rows(driver)] == [later])
        assert server.job(soon)["status"] == "cancelled"
    finally:
        for job_id in (soon, later):
            server.call("POST", f"api/v1/jobs/{urllib.parse.quote(job_id, safe='')}/cancel")
    wait_for(driver, "none scheduled", shows(driver, "scheduled", 0))
    wait_for(
        driver, "the empty list", lambda: driver.find_element(By.ID, "due-empty").is_displayed()
    )
    assert console_errors(driver) == []


def schedule_rows(driver: WebDriver) -> list[dict[str, str]]:
    """The rows of the schedules panel, as shown."""
    rows: list[dict[str, str]] = driver.execute_script(
        """
        return [...document.querySelectorAll("#schedules tr")].map((row) => ({
            name: row.dataset.schedule,
            paused: row.dataset.paused,
            shown_name: row.querySelector(".name").textContent,
            job: row.querySelector(".job").textContent,
            when: row.querySelector(".when").textContent,
            next: row.querySelector(".next .time").textContent,
            next_iso: row.querySelector(".next").title,
            next_run: row.querySelector(".next").dataset.nextRun,
            state: row.querySelector(".next .state").textContent,
            last: row.querySelector(".last-run .time").textContent,
            last_job: row.querySelector(".last-job").textContent,
            counts: row.querySelector(".counts").textContent,
            button: row.querySelector("button.toggle").textContent,
            pressed: row.querySelector("button.toggle").getAttribute("aria-pressed"),
        }));
        """
    )
    return rows


def schedule_row(driver: WebDriver, name: str) -> dict[str, str] | None:
    return next((row for row in schedule_rows(driver) if row["name"] == name), None)


def toggle_of(driver: WebDriver, name: str) -> WebElement:
    for row in driver.find_elements(By.CSS_SELECTOR, "#schedules tr"):
        if row.get_attribute("data-schedule") == name:
            return row.find_element(By.CSS_SELECTOR, "button.toggle")
    pytest.fail(f"no row of schedule {name!r}", pytrace=False)


def test_the_schedules_panel_and_its_pause_toggle(driver: WebDriver, server: Server) -> None:
    """The panel lists the schedules (name as text, job, cron and zone or interval, next run in
    the browser's zone, last run and job, runs / skipped); the toggle asks for the token, then
    pauses the schedule (the API shows it paused) and resumes it."""
    open_dashboard(driver, server)
    wait_for(
        driver, "no schedules", lambda: driver.find_element(By.ID, "schedules-empty").is_displayed()
    )
    assert not driver.find_element(By.ID, "schedules-table").is_displayed()
    nightly = "nightly <b>&amp;"
    path = f"api/v1/schedules/{urllib.parse.quote(nightly, safe='')}"
    body = {"name": "quick", "args": [3], "cron": "30 2 * * *", "tz": "Europe/Berlin"}
    declared = server.api("PUT", path, body)
    server.api("PUT", "api/v1/schedules/pulse", {"name": "quick", "args": [1], "every": 1})
    try:
        wait_for(driver, "two schedules", lambda: len(schedule_rows(driver)) == 2)
        assert not driver.find_element(By.ID, "schedules-empty").is_displayed()
        assert [row["name"] for row in schedule_rows(driver)] == sorted([nightly, "pulse"])
        row = schedule_row(driver, nightly)
        assert row is not None
        assert (row["shown_name"], row["job"], row["when"]) == (
            nightly,
            "quick",
            "30 2 * * * (Europe/Berlin)",
        )
        assert driver.find_elements(By.CSS_SELECTOR, "#schedules b") == []  # the name is text
        due = declared["next_run"]
        local = datetime.datetime.fromtimestamp(due).strftime("%Y-%m-%d %H:%M:%S")
        assert re.fullmatch(rf"{local} \(in [0-9.]+ (h|min)\)", row["next"]), row
        assert float(row["next_run"]) == due
        assert row["next_iso"].endswith("Z"), row
        assert (row["last"], row["last_job"], row["counts"]) == (NO_VALUE, "", "0 / 0")
        assert (row["button"], row["pressed"], row["paused"], row["state"]) == (
            "Pause",
            "false",
            "false",
            "",
        )
        # The every-second schedule fires: its runs, last run and last job follow.
        wait_for(
            driver,
            "a run of pulse",
            lambda: (
                (found := schedule_row(driver, "pulse")) is not None
                and found["last_job"].startswith("pulse@")
            ),
        )
        pulse = schedule_row(driver, "pulse")
        assert pulse is not None
        assert pulse["when"] == "every 1 s"
        assert re.fullmatch(r"[1-9][0-9]* / [0-9]+", pulse["counts"]), pulse
        assert re.fullmatch(r"\S+ \S+ \((\d+ s ago|just now)\)", pulse["last"]), pulse

        # Without a token the toggle asks for one and sends nothing.
        message = driver.find_element(By.ID, "schedules-message")
        toggle_of(driver, nightly).click()
        wait_for(driver, "a request for the token", lambda: "token" in message.text)
        assert driver.switch_to.active_element == driver.find_element(By.ID, "token")
        assert server.api("GET", path)["paused"] is False

        driver.find_element(By.ID, "token").send_keys(TOKEN)
        toggle_of(driver, nightly).click()
        wait_for(driver, "the pause", lambda: message.text == f"Schedule {nightly} paused.")
        shown = server.api("GET", path)
        assert shown["paused"] is True
        # Declared again with its whole definition: only `paused` changed.
        unchanged = ("job_name", "args", "cron", "tz", "priority", "overlap", "misfire")
        assert {f: shown[f] for f in unchanged} == {f: declared[f] for f in unchanged}
        wait_for(
            driver,
            "the row paused",
            lambda: (
                (found := schedule_row(driver, nightly)) is not None
                and (found["button"], found["pressed"], found["paused"], found["state"])
                == ("Resume", "true", "true", "paused")
            ),
        )
        toggle_of(driver, nightly).click()
        wait_for(driver, "the resume", lambda: message.text == f"Schedule {nightly} resumed.")
        assert server.api("GET", path)["paused"] is False
        wait_for(
            driver,
            "the row running",
            lambda: (
                (found := schedule_row(driver, nightly)) is not None and found["button"] == "Pause"
            ),
        )
    finally:
        for name in (nightly, "pulse"):
            server.call("DELETE", f"api/v1/schedules/{urllib.parse.quote(name, safe='')}")
    wait_for(
        driver, "no schedules", lambda: driver.find_element(By.ID, "schedules-empty").is_displayed()
    )
    assert console_errors(driver) == []


def key_rows(driver: WebDriver) -> list[dict[str, str]]:
    """The rows of the limited keys panel, as shown."""
    rows: list[dict[str, str]] = driver.execute_script(
        """
        return [...document.querySelectorAll("#keys tr")].map((row) => ({
            key: row.dataset.key,
            shown_key: row.querySelector(".key").textContent,
            running: row.querySelector(".running").textContent,
            waiting: row.querySelector(".waiting").textContent,
            limit: row.querySelector(".limit .text").textContent,
            default: row.querySelector(".limit .default").textContent,
            held: row.dataset.waiting,
        }));
        """
    )
    return rows


def keys_show(driver: WebDriver, expected: list[tuple[str, ...]]) -> Callable[[], bool]:
    """A condition: the panel's rows are ``expected``: (key, running, waiting, limit, default,
    held) each, in order."""
    fields = ("key", "running", "waiting", "limit", "default", "held")
    return lambda: [tuple(row[f] for f in fields) for row in key_rows(driver)] == expected


def test_the_limited_keys_panel(driver: WebDriver, tmp_path: Path) -> None:
    """The panel lists the keys with a limit of their own and the keys held at the pool's
    ``key_limit`` (here 1), sorted: the key as text, its running and waiting jobs, its limit
    (the pool's marked as such); it follows a deleted limit, and says "No limited keys." when
    there are none. Its own server, with ``--key-limit 1``."""
    _require_chromium()
    with checked_server(tmp_path, token=TOKEN, options=("--key-limit", "1")) as keyed:
        open_dashboard(driver, keyed)

        def empty() -> bool:
            return driver.find_element(By.ID, "keys-empty").is_displayed()

        wait_for(driver, "no limited keys", empty)
        assert not driver.find_element(By.ID, "keys-table").is_displayed()
        tenant = "tenant <b>&amp;"
        tenant_path = f"api/v1/limits/{urllib.parse.quote(tenant, safe='')}"
        keyed.api("PUT", tenant_path, {"max_running": 2})
        keyed.api("PUT", "api/v1/limits/api", {"rate": {"count": 10, "per": 60}})
        jobs = [(f"t{n}", tenant) for n in range(3)] + [(f"p{n}", "pooled") for n in range(2)]
        for job_id, key in jobs:
            keyed.api("POST", "api/v1/jobs", {"name": "blocker", "job_id": job_id, "key": key})
        try:
            wait_for(
                driver,
                "three limited keys",
                keys_show(
                    driver,
                    [
                        ("api", "0", "0", "10 starts per 1 min", "", "false"),
                        ("pooled", "1", "1", "at most 1 running", "(the pool's key_limit)", "true"),
                        (tenant, "2", "1", "at most 2 running", "", "true"),
                    ],
                ),
            )
            assert not driver.find_element(By.ID, "keys-empty").is_displayed()
            assert driver.find_elements(By.CSS_SELECTOR, "#keys b") == []  # the key is text
            # Its own limit deleted, the tenant is held at the pool's (1), its 2 still running.
            assert keyed.api("DELETE", tenant_path)["removed"] is True
            wait_for(
                driver,
                "the tenant at the pool's limit",
                keys_show(
                    driver,
                    [
                        ("api", "0", "0", "10 starts per 1 min", "", "false"),
                        ("pooled", "1", "1", "at most 1 running", "(the pool's key_limit)", "true"),
                        (tenant, "2", "1", "at most 1 running", "(the pool's key_limit)", "true"),
                    ],
                ),
            )
        finally:
            for job_id, _ in jobs:
                keyed.call("POST", f"api/v1/jobs/{job_id}/cancel")
        # Nothing held back any more: only the key with a limit of its own is listed.
        wait_for(
            driver,
            "only the key with a limit",
            keys_show(driver, [("api", "0", "0", "10 starts per 1 min", "", "false")]),
        )
        keyed.api("DELETE", "api/v1/limits/api")
        wait_for(driver, "no limited keys", empty)
        assert not driver.find_element(By.ID, "keys-table").is_displayed()
        assert console_errors(driver) == []


def test_disconnected_state_and_recovery(driver: WebDriver, tmp_path: Path) -> None:
    _require_chromium()
    port = free_port()
    log = tmp_path / "server.log"
    with run_server(log, port, token=TOKEN) as first:
        open_dashboard(driver, first)
        wait_for(driver, "max workers", shows(driver, "max-workers", 4))
        # No job has run yet: no times to show, rather than "0.0 ms".
        for average in ("avg-exec", "p95-exec", "avg-wait"):
            assert text(driver, average) == NO_VALUE
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
        wait_for(driver, "an exec time", lambda: text(driver, "avg-exec").endswith(" ms"))
        assert text(driver, "avg-wait").endswith(" ms")
    refused = console_errors(driver)
    assert all("ERR_CONNECTION_REFUSED" in entry for entry in refused), refused


def test_first_render_shows_the_numbers(driver: WebDriver, server: Server, tmp_path: Path) -> None:
    """Right after the page has loaded it shows the server's numbers and jobs, never
    "connecting…": they come with the page. The API is blocked while the page loads, so
    nothing but the page itself can have shown them."""
    job_id = server.submit("quick", 7, job_id="before-load")
    assert server.job(job_id, wait=WAIT)["status"] == "completed"
    stats = server.stats()
    console_errors(driver)
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/api/v1/*"]})
    try:
        driver.get(server.url)  # returns once the page has loaded
        # Read at once, in one script: the first round of polling fails a second later.
        shown = driver.execute_script(
            """
            const text = (id) => document.getElementById(id).textContent;
            const row = [...document.querySelectorAll("#jobs tr")]
                .find((tr) => tr.dataset.jobId === arguments[0]);
            return {
                state: document.getElementById("connection").dataset.state,
                connection: text("connection"),
                max_workers: text("max-workers"),
                completed: text("completed"),
                info: text("server-info"),
                token_field: !document.getElementById("token-field").hidden,
                row_status: row?.dataset.status,
            };
            """,
            job_id,
        )
        driver.save_screenshot(str(tmp_path / "first-render.png"))
    finally:
        driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
        driver.execute_cdp_cmd("Network.disable", {})
    assert shown["state"] == "connected", shown
    assert shown["connection"] == "live", shown
    assert shown["max_workers"] == "4", shown
    assert int(shown["completed"]) >= stats["total_completed"], shown
    assert shown["info"].startswith("v"), shown
    assert shown["token_field"], shown  # pool/info came with the page too
    assert shown["row_status"] == "completed", shown
    wait_for(driver, "the connected state", lambda: state_of(driver) == "connected")
    blocked = console_errors(driver)  # only the blocked rounds, if one came before the unblock
    assert all("ERR_BLOCKED_BY_CLIENT" in entry for entry in blocked), blocked


_ID_SHAPES = """
    return [...document.querySelectorAll("#jobs .job-id")].map((code) => {
        const range = document.createRange();
        range.selectNodeContents(code);
        // One rectangle per line box the text takes (the elided middle of an id takes none).
        const rects = [...range.getClientRects()].filter((rect) => rect.width && rect.height);
        const tops = new Set(rects.map((rect) => Math.round(rect.top)));
        const style = getComputedStyle(code);
        const width = code.getBoundingClientRect().width;
        const probe = document.createElement("span");  // ten digits in the id's font
        probe.textContent = "0000000000";
        code.append(probe);
        const digit = probe.getBoundingClientRect().width / 10;
        probe.remove();
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        const selected = selection.toString();
        selection.removeAllRanges();
        return {
            id: code.textContent,
            title: code.title,
            selected: selected,
            lines: tops.size,
            height: code.getBoundingClientRect().height,
            line_height: parseFloat(style.lineHeight),
            shown_chars: width / digit,
            cut: code.scrollWidth > code.clientWidth,
        };
    });
"""

# The vertical extent (device pixels) of the chart's throughput line: 0 for no line, a few
# pixels for a flat one.
_THROUGHPUT_EXTENT = """
    const canvas = document.getElementById("chart");
    const hex = getComputedStyle(canvas).getPropertyValue("--throughput").trim();
    const colour = [1, 3, 5].map((at) => parseInt(hex.slice(at, at + 2), 16));
    const { data, width, height } =
        canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
    let top = height, bottom = -1;
    for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) {
            const at = 4 * (y * width + x);
            const near = colour.every((value, i) => Math.abs(data[at + i] - value) < 24);
            if (near && data[at + 3] > 200) {
                top = Math.min(top, y);
                bottom = Math.max(bottom, y);
            }
        }
    }
    return bottom < 0 ? 0 : bottom - top;
"""


def test_screenshot_after_a_few_jobs(driver: WebDriver, server: Server, tmp_path: Path) -> None:
    """After a few jobs, most with generated ids: no id wraps (a generated one shows 4 + 6 of its
    digits; the whole id is its title and what a selection copies), the chart has a throughput
    line, and a click on an id copies it. The screenshot is left in tmp_path."""
    open_dashboard(driver, server)
    long_id = "a-job-id-long-enough-to-wrap-in-a-narrow-column-0123456789"
    submitted = [server.submit("quick", n) for n in range(4)]
    submitted.append(server.submit("boom", "on purpose"))
    submitted.append(server.submit("quick", 9, job_id=long_id))
    submitted.append(server.submit("nap", 0.5))
    generated = [job_id for job_id in submitted if job_id != long_id]
    assert all(len(job_id) == 32 for job_id in generated), generated
    for job_id in submitted:
        wait_for(driver, f"{job_id} ended", has_ended(driver, job_id))
    # Each point of the chart covers the 10 s before it: the jobs show as a rise of the line.
    wait_for(driver, "a throughput line", lambda: driver.execute_script(_THROUGHPUT_EXTENT) > 10)
    assert text(driver, "chart-window") == "(each point covers the 10 s before it)"
    assert text(driver, "avg-exec").endswith((" ms", " s"))

    path = tmp_path / "dashboard.png"
    assert driver.save_screenshot(str(path))
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    shapes = {shape["id"]: shape for shape in driver.execute_script(_ID_SHAPES)}
    assert set(submitted) <= set(shapes)
    for job_id, shape in shapes.items():
        assert shape["lines"] == 1, shape
        assert shape["height"] <= 1.5 * shape["line_height"], shape
        assert shape["title"].startswith(job_id + "\n"), shape
        assert shape["selected"] == job_id, shape
    for job_id in generated:
        shape = shapes[job_id]
        assert not shape["cut"], shape
        assert 10 <= shape["shown_chars"] <= 12, shape  # 4 digits, "…", 6 digits
        row = row_of(driver, job_id)
        assert row is not None
        assert row.find_element(By.CSS_SELECTOR, ".job-id").text == job_id  # as Selenium reads it
    assert shapes[long_id]["cut"]
    assert 23 <= shapes[long_id]["shown_chars"] <= 25

    # A click copies the whole id (or, without the Clipboard API, selects it).
    origin = server.url.rstrip("/")
    driver.execute_cdp_cmd(
        "Browser.grantPermissions",
        {"origin": origin, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]},
    )
    job_id = generated[0]
    row = row_of(driver, job_id)
    assert row is not None
    row.find_element(By.CSS_SELECTOR, ".job-id").click()
    wait_for(driver, "the copy", shows(driver, "message", f"Copied job id {job_id}."))
    copied = driver.execute_async_script(
        "navigator.clipboard.readText().then(arguments[0], (error) => arguments[0](String(error)))"
    )
    assert copied == job_id
    assert console_errors(driver) == []


def test_the_chart_is_a_rate_over_a_sliding_window(driver: WebDriver, tmp_path: Path) -> None:
    """One job ends every 2 s, and the page polls every second: a rate per interval between
    polls is 0, 1, 0, 1 ... jobs/s; over the 10 s window it stays near 0.5 jobs/s."""
    _require_chromium()
    with checked_server(tmp_path, token=TOKEN) as fresh:
        open_dashboard(driver, fresh)
        stop_submitting = threading.Event()

        def submit_every_two_seconds() -> None:
            n = 0
            while not stop_submitting.wait(0 if n == 0 else 2.0):
                fresh.submit("quick", n)
                n += 1

        submitter = threading.Thread(target=submit_every_two_seconds, daemon=True)
        submitter.start()
        try:
            time.sleep(RATE_WINDOW + 2)  # a full window of jobs behind the latest point
            seen = []
            for _ in range(12):  # 6 s: three jobs, six polls
                seen.append(float(text(driver, "rate-now")))
                time.sleep(0.5)
        finally:
            stop_submitting.set()
            submitter.join(WAIT)
        assert all(0.3 <= rate <= 0.7 for rate in seen), seen
        assert console_errors(driver) == []
        driver.get("about:blank")  # no rounds against the stopped server
