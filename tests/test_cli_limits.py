"""Flow control against a real ``trio-jobpool serve``: ``key`` on ``POST /api/v1/jobs``, the
endpoints ``GET /api/v1/limits`` and ``GET``/``PUT``/``DELETE /api/v1/limits/{key}`` and their
errors, the keys' metrics, and the commands ``trio-jobpool submit --key`` and ``trio-jobpool
limits list|set|delete`` with their output and exit codes.

The client commands run in this process (``main([...])``) against ``serve`` started as a real
subprocess (as in tests/test_cli_service.py: examples/ci_jobs.py on SQLite, with a token).
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterator

import httpx
import pytest

from tests.servers import free_port
from tests.test_cli_service import TOKEN, run, serving

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One server for the tests of this module (token TOKEN): its URL. Each test keeps to
    keys of its own."""
    db = tmp_path_factory.mktemp("serve-limits") / "jobs.db"
    port = str(free_port())
    with serving("--port", port, "--store", f"sqlite:///{db}", "--token", TOKEN) as (_, url):
        yield url


@pytest.fixture
def url(server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The server's URL, also in $TRIO_JOBPOOL_URL; $TRIO_JOBPOOL_TOKEN unset."""
    monkeypatch.setenv("TRIO_JOBPOOL_URL", server)
    monkeypatch.delenv("TRIO_JOBPOOL_TOKEN", raising=False)
    return server


def limit_path(key: str) -> str:
    return f"/api/v1/limits/{urllib.parse.quote(key, safe='')}"


# -- the endpoints, end to end ------------------------------------------------------------------


def test_every_limit_endpoint_of_a_served_pool(url: str) -> None:
    """Each endpoint and error status against ``trio-jobpool serve`` on SQLite (in process, on
    both backends, tests/http/test_limits_app.py goes through each in detail)."""
    with httpx.Client(base_url=url, timeout=30) as http:

        def error(response: httpx.Response) -> tuple[int, str]:
            assert "Traceback" not in response.text
            return response.status_code, response.json()["error"]

        path = limit_path("e2e tenant")
        body = {"max_running": 2, "rate": {"count": 10, "per": 60}}
        assert error(http.put(path, json=body)) == (401, "unauthorized")
        response = http.put(path, json=body, headers=AUTH)
        assert response.status_code == 200, response.text
        shown = response.json()
        assert shown == {
            "key": "e2e tenant",
            "running": 0,
            "waiting": 0,
            "limit": {"max_running": 2, "rate": {"count": 10, "per": 60.0}},
        }
        assert http.get(path).json() == shown
        listed = http.get("/api/v1/limits").json()
        assert listed["limits"]["e2e tenant"] == shown["limit"]
        assert shown in listed["keys"]

        for changed, field in (
            ({"max_running": -1}, "'max_running'"),
            ({"max_running": None, "rate": None}, "'max_running', 'rate'"),
            ({"rate": {"count": 0, "per": 60}}, "'count'"),
            ({"rate": {"count": 10, "per": 0}}, "'per'"),
            ({"rate": {"count": 10}}, "'rate'"),
            ({"burst": 3}, "'burst'"),
        ):
            response = http.put(path, json=changed, headers=AUTH)
            assert error(response) == (422, "invalid"), changed
            assert field in response.json()["message"], (changed, response.json())
        malformed = {**AUTH, "Content-Type": "application/json"}
        assert error(http.put(path, content=b"{", headers=malformed)) == (400, "malformed_json")
        assert error(http.put(limit_path("a\nb"), json=body, headers=AUTH)) == (422, "invalid")
        assert error(http.get(limit_path("k" * 201))) == (422, "invalid")
        assert error(http.post("/api/v1/limits", json={}, headers=AUTH)) == (
            405,
            "method_not_allowed",
        )
        assert http.get(path).json() == shown  # none of those changed it

        assert error(http.delete(path)) == (401, "unauthorized")
        deleted = http.delete(path, headers=AUTH)
        assert (deleted.status_code, deleted.json()) == (
            200,
            {"message": "limit deleted", "key": "e2e tenant", "removed": True},
        )
        again = http.delete(path, headers=AUTH)
        assert (again.status_code, again.json()["removed"]) == (200, False)
        assert "e2e tenant" not in http.get("/api/v1/limits").json()["limits"]

        document = http.get("/openapi.json").json()
        assert set(document["paths"]["/api/v1/limits/{key}"]) == {"get", "put", "delete"}
        assert "key" in document["components"]["schemas"]["Submission"]["properties"]


def test_a_held_key_shows_in_the_list_and_the_metrics_until_released(url: str) -> None:
    """A key at ``max_running`` 0 holds its job queued (a free worker does not take it); the
    list, the key's stats and the metrics show it; deleting the limit starts it at once, a
    delayed start."""
    with httpx.Client(base_url=url, timeout=30, headers=AUTH) as http:
        assert http.put(limit_path("e2e-held"), json={"max_running": 0}).status_code == 200
        submit = {"name": "sleep", "args": [60], "job_id": "e2e-held-job", "key": "e2e-held"}
        assert http.post("/api/v1/jobs", json=submit).status_code == 202
        try:
            job = http.get("/api/v1/jobs/e2e-held-job").json()
            assert (job["status"], job["key"]) == ("queued", "e2e-held")
            assert http.get(limit_path("e2e-held")).json()["waiting"] == 1
            metrics = http.get("/metrics").text
            assert '\njobpool_key_waiting{key="e2e-held"} 1.0\n' in metrics
            assert '\njobpool_key_running{key="e2e-held"} 0.0\n' in metrics
            assert '\njobpool_key_max_running{key="e2e-held"} 0.0\n' in metrics
            before = re.search(r"^jobpool_delayed_starts_total (\S+)$", metrics, re.M)
            assert before is not None

            assert http.delete(limit_path("e2e-held")).json()["removed"] is True
            job = http.get("/api/v1/jobs/e2e-held-job").json()
            assert job["status"] == "running"  # started before the DELETE was answered
            metrics = http.get("/metrics").text
            assert 'key="e2e-held"' not in metrics  # no limit, nothing held: no series
            after = re.search(r"^jobpool_delayed_starts_total (\S+)$", metrics, re.M)
            assert after is not None
            assert float(after.group(1)) == float(before.group(1)) + 1
        finally:
            http.post("/api/v1/jobs/e2e-held-job/cancel")


# -- the commands ----------------------------------------------------------------------------------


def test_limits_set_list_and_delete(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    token = ("--token", TOKEN)
    code, out, err = run(capsys, "limits", "set", "cli-tenant", "--max-running", "2", *token)
    assert (code, out, err) == (
        0,
        "set limit of cli-tenant: max_running=2 (running 0, waiting 0)\n",
        "",
    )
    code, out, _ = run(capsys, "limits", "set", "cli-api", "--rate", "10/1m", *token)
    assert (code, out) == (0, "set limit of cli-api: rate=10/60s (running 0, waiting 0)\n")
    both = ("--max-running", "1", "--rate", "100/1h")
    code, out, _ = run(capsys, "limits", "set", "cli-both", *both, *token)
    assert (code, out) == (
        0,
        "set limit of cli-both: max_running=1, rate=100/3600s (running 0, waiting 0)\n",
    )

    code, out, _ = run(capsys, "limits", "list", "--json")
    assert code == 0
    listed = json.loads(out)
    assert listed["limits"]["cli-tenant"] == {"max_running": 2, "rate": None}
    assert listed["limits"]["cli-api"] == {"max_running": None, "rate": {"count": 10, "per": 60.0}}
    assert {"cli-tenant", "cli-api", "cli-both"} <= {k["key"] for k in listed["keys"]}

    code, out, _ = run(capsys, "limits", "list")
    assert code == 0
    assert "limits" in out
    assert url in out
    # (not a terminal: one line per key, no cell cut short)
    assert re.search(r"│ cli-api +│ +0 │ +0 │ rate=10/60s +│", out), out
    assert re.search(r"│ cli-both +│ +0 │ +0 │ max_running=1, rate=100/3600s +│", out), out
    assert re.search(r"│ cli-tenant +│ +0 │ +0 │ max_running=2 +│", out), out

    # A set replaces the key's own limit whole.
    code, out, _ = run(capsys, "limits", "set", "cli-tenant", "--rate", "5/30", *token)
    assert (code, out) == (0, "set limit of cli-tenant: rate=5/30s (running 0, waiting 0)\n")

    for key in ("cli-tenant", "cli-api", "cli-both"):
        code, out, err = run(capsys, "limits", "delete", key, *token)
        assert (code, out, err) == (0, f"limit deleted: {key}\n", "")
    code, out, err = run(capsys, "limits", "delete", "cli-api", *token)
    assert (code, out, err) == (0, "no limit of its own: cli-api\n", "")
    code, out, _ = run(capsys, "limits", "list", "--json")
    assert not {"cli-tenant", "cli-api", "cli-both"} & set(json.loads(out)["limits"])


def test_submit_with_a_key(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ("submit", "lint", '["repo-k", 0]', "--key", "cli tenant:1", "--token", TOKEN)
    code, out, err = run(capsys, *args, "--wait")
    assert (code, out) == (0, '"repo-k: no lint errors"\n')
    found = re.match(r"submitted lint as (\S+)\n", err)
    assert found, err
    code, out, _ = run(capsys, "status", found.group(1))
    assert code == 0
    assert json.loads(out)["key"] == "cli tenant:1"
    code, out, err = run(capsys, "submit", "lint", "--key", "a/b", "--token", TOKEN)
    assert (code, out) == (2, "")
    assert err.startswith("trio-jobpool submit: 'key' must not contain '/'"), err
    assert err.endswith(" (422 invalid)\n"), err


def test_limits_refusals_and_their_exit_codes(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "limits", "set", "cli-bad", "--max-running", "1")
    assert (code, out) == (2, "")
    assert err.startswith("trio-jobpool limits set: ")
    assert "(401 unauthorized)" in err
    assert "--token or $TRIO_JOBPOOL_TOKEN" in err
    code, out, err = run(capsys, "limits", "set", "cli-bad", "--token", TOKEN)
    assert (code, out) == (2, "")
    assert err == (
        "trio-jobpool limits set: give --max-running N, --rate COUNT/PER or both ('limits "
        "delete KEY' removes a key's limit)\n"
    )
    code, out, err = run(capsys, "limits", "set", "a\tb", "--max-running", "1", "--token", TOKEN)
    assert (code, out) == (2, "")
    assert err.startswith("trio-jobpool limits set: a key must not contain '/', control"), err
    assert err.endswith(" (422 invalid)\n"), err
    code, out, err = run(capsys, "limits", "delete", "cli-bad")
    assert (code, out) == (2, "")
    assert "(401 unauthorized)" in err
    code, out, _ = run(capsys, "limits", "list", "--json")
    assert "cli-bad" not in json.loads(out)["limits"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("limits",), "the following arguments are required: ACTION"),
        (("limits", "pause", "x"), "invalid choice: 'pause'"),
        (("limits", "set"), "the following arguments are required: KEY"),
        (("limits", "set", "k", "--max-running", "-1"), "must be at least 0, got -1"),
        (("limits", "set", "k", "--max-running", "two"), "not an integer: 'two'"),
        (("limits", "set", "k", "--rate", "10"), "not a rate: '10'"),
        (("limits", "set", "k", "--rate", "0/60"), "must be at least 1, got 0"),
        (("limits", "set", "k", "--rate", "10/0"), "the PER of a rate must be > 0, got '0'"),
        (("limits", "set", "k", "--rate", "10/soon"), "not a duration: 'soon'"),
        (("limits", "delete"), "the following arguments are required: KEY"),
    ],
)
def test_limits_usage_errors(
    args: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, *args)
    assert (code, out) == (2, "")
    assert err.startswith("usage: trio-jobpool limits")
    assert message in err


def test_limits_with_no_server(capsys: pytest.CaptureFixture[str]) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    for args in (("list",), ("set", "k", "--max-running", "1"), ("delete", "k")):
        code, out, err = run(capsys, "limits", *args, "--url", nobody)
        assert (code, out) == (3, "")
        assert err.startswith(f"trio-jobpool limits {args[0]}: cannot reach {nobody}: "), err
