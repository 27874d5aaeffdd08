"""In a real browser (Debian's Chromium, driven by Playwright): the
``jobifyFetch`` client and the dashboard, against the demo served by
gunicorn (two gthread workers sharing an SQLite job store).

Skipped, with the reason, on a machine without Chromium or Playwright
unless ``CI`` is set (``.ci/run`` installs both); a screenshot of the
dashboard is saved in ``$JOBIFY_TEST_ARTIFACTS`` (default
``test-artifacts/``).
"""
from __future__ import annotations

import os
import pathlib
import shutil
import typing as t

import pytest
import requests
from conftest import IN_CI
from servers import run_gunicorn, serve_app

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONF = ROOT / "example_app" / "gunicorn.conf.py"
CHROMIUM = os.environ.get("JOBIFY_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = pathlib.Path(os.environ.get("JOBIFY_TEST_ARTIFACTS", ROOT / "test-artifacts"))
#: Milliseconds any one wait for the page may take.
PATIENCE = 15_000


def _need_browser() -> t.Any:
    """Playwright's sync API, or a skip (a failure on CI) saying what is missing."""
    missing = []
    try:
        from playwright import sync_api
    except ImportError:
        missing.append("Playwright (pip install playwright)")
        sync_api = None
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        missing.append(f"Chromium at {CHROMIUM} (apt-get install chromium)")
    if missing:
        message = "browser tests need " + " and ".join(missing)
        if IN_CI:
            pytest.fail(message + "; CI=true: they must run on CI.")
        pytest.skip(message)
    return sync_api


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory) -> t.Iterator[str]:
    tmp = tmp_path_factory.mktemp("browser-demo")
    env = {
        "JOBIFY_STORE": f"sqlite:///{tmp / 'jobs.db'}",
        "PETS_DATABASE": str(tmp / "pets.db"),
        "SECRET_KEY": "browser-test-secret",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    with run_gunicorn("example_app:create_app()", workers=2, threads=16, env=env,
                      extra_args=["--config", str(CONF), "--chdir", str(ROOT),
                                  "--access-logfile", "/dev/null"]) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> t.Iterator[t.Any]:
    sync_api = _need_browser()
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM,
                                              args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: t.Any, demo_url: str) -> t.Iterator[t.Any]:
    context = browser.new_context(base_url=demo_url)
    context.set_default_timeout(PATIENCE)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto("/")
    yield page
    context.close()
    assert not errors, errors


def _job(demo_url: str, job_id: str) -> dict[str, t.Any]:
    return requests.get(f"{demo_url}/jobs/{job_id}", timeout=10).json()


def test_browser_jobify_fetch_gives_what_a_plain_fetch_gives(page: t.Any) -> None:
    got = page.evaluate("""async () => {
      const { jobifyFetch } = await import("/jobs/client.js");
      const init = { method: "POST", headers: { "Content-Type": "application/json" },
                     body: JSON.stringify({ month: "2024-05", delay: 0.01 }) };
      const describe = async (r) => ({ status: r.status, type: r.headers.get("Content-Type"),
        disposition: r.headers.get("Content-Disposition"), body: await r.text() });
      const plain = await describe(await fetch("/reports/orders", init));
      const job = await describe(await jobifyFetch("/reports/orders", init));
      return { plain, job };
    }""")
    assert got["plain"]["status"] == 200
    assert got["job"] == got["plain"]


def test_browser_jobify_fetch_reports_progress_in_order(page: t.Any) -> None:
    got = page.evaluate("""async () => {
      const { jobifyFetch } = await import("/jobs/client.js");
      const seen = [];
      const response = await jobifyFetch("/status/long?seconds=1.5", { method: "POST" }, {
        onProgress: (p) => seen.push({ percent: p.percent, status: p.status,
                                        version: p.job.version }) });
      return { seen, status: response.status, body: await response.json() };
    }""")
    seen = got["seen"]
    assert got["status"] == 200 and "timeTook" in got["body"]
    versions = [event["version"] for event in seen]
    assert versions == sorted(set(versions)), seen
    percents = [event["percent"] or 0 for event in seen]
    assert percents == sorted(percents), seen
    assert 50 in percents, seen  # half way lasts 0.75 s: never coalesced away
    assert seen[-1]["status"] == "succeeded", seen


def test_browser_abort_cancels_the_job_on_the_server(page: t.Any, demo_url: str) -> None:
    got = page.evaluate("""async () => {
      const { jobifyFetch } = await import("/jobs/client.js");
      const controller = new AbortController();
      let jobId = null;
      try {
        await jobifyFetch("/status/long?seconds=30", { method: "POST" }, {
          signal: controller.signal,
          onProgress: (p) => { jobId = p.job.id; if (p.percent >= 10) controller.abort(); } });
        return { jobId, outcome: "resolved" };
      } catch (error) {
        return { jobId, outcome: error.name };
      }
    }""")
    assert got["outcome"] == "AbortError"
    # The DELETE was sent on abort; the job ends cancelled once the view notices.
    job = requests.get(f"{demo_url}/jobs/{got['jobId']}?wait=10", timeout=20).json()
    while job["status"] == "running" and job["cancelRequested"]:
        job = requests.get(f"{demo_url}/jobs/{got['jobId']}?wait=10&version={job['version']}",
                           timeout=20).json()
    assert job["status"] == "cancelled"


def test_browser_dashboard_shows_progress_live_and_saves_a_screenshot(
        page: t.Any, demo_url: str) -> None:
    page.goto("/jobs/ui/")
    page.evaluate("window.notReloaded = true")
    page.wait_for_selector("#live:not(.off)")
    accepted = requests.post(f"{demo_url}/status/long?seconds=3",
                             headers={"X-Job-Flag": "ON"}, timeout=10)
    job_id = accepted.headers["X-Job-Id"]
    row = f'tr[data-job-id="{job_id}"]'
    page.wait_for_selector(row)  # a new job appears without a reload
    page.wait_for_function(
        f"""() => Number(document.querySelector('{row} progress').value) >= 50""")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    page.wait_for_function(
        f"""() => document.querySelector('{row} [data-field=status]').textContent
                  === 'succeeded'""")
    assert page.evaluate("window.notReloaded") is True
    assert page.locator(f"{row} progress").evaluate("el => el.value") == 100
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000


def test_browser_dashboard_cancels_a_job_with_a_click(page: t.Any, demo_url: str) -> None:
    accepted = requests.post(f"{demo_url}/status/long?seconds=60",
                             headers={"X-Job-Flag": "ON"}, timeout=10)
    job_id = accepted.headers["X-Job-Id"]
    page.goto(f"/jobs/ui/{job_id}")
    page.wait_for_function(
        "() => document.querySelector('#job [data-field=status]').textContent === 'running'")
    page.click("#cancel")
    page.wait_for_function(
        "() => document.querySelector('#job [data-field=status]').textContent === 'cancelled'")
    assert _job(demo_url, job_id)["status"] == "cancelled"


def test_browser_dashboard_bulk_cancels_selected_jobs(page: t.Any, demo_url: str) -> None:
    ids = [requests.post(f"{demo_url}/status/long?seconds=60", headers={"X-Job-Flag": "ON"},
                         timeout=10).headers["X-Job-Id"] for _ in range(2)]
    page.goto("/jobs/ui/?status=running")
    for job_id in ids:
        page.check(f'tr[data-job-id="{job_id}"] input[type=checkbox]')
    page.click("#cancel-selected")
    page.wait_for_url("**/jobs/ui/?status=running")
    for job_id in ids:
        job = _job(demo_url, job_id)
        assert job["status"] == "cancelled" or job["cancelRequested"], job


# --- As an attacker: markup in job fields, framing, a misbehaving server ---

@pytest.fixture(scope="module")
def attack_url(tmp_path_factory) -> t.Iterator[str]:
    from attack_app import create_app

    app = create_app(f"sqlite:///{tmp_path_factory.mktemp('attack') / 'jobs.db'}")
    try:
        with serve_app(app) as url:
            yield url
    finally:
        app.extensions["attack"]["release"].set()
        app.extensions["jobify"].shutdown(grace=1.0)
        app.extensions["jobify"].store.close()


@pytest.fixture
def attack_page(browser: t.Any, attack_url: str) -> t.Iterator[t.Any]:
    context = browser.new_context(base_url=attack_url)
    context.set_default_timeout(PATIENCE)
    page = context.new_page()
    yield page
    context.close()


def _no_markup_ran(page: t.Any) -> None:
    """Nothing of the payload became HTML: no script ran, no element made."""
    assert page.evaluate("window.__xss") is None
    made = page.evaluate("""() => document.querySelectorAll(
        'main img, main svg:not(.chart), main script, main textarea').length""")
    assert made == 0


def test_browser_dashboard_shows_markup_in_job_fields_as_text(
        attack_page: t.Any, attack_url: str) -> None:
    from attack_app import OPERATION, PAYLOAD

    page = attack_page
    page.goto("/jobs/ui/")
    page.wait_for_selector("#live:not(.off)")
    quoted = requests.utils.quote(PAYLOAD, safe="")
    failed = requests.post(f"{attack_url}/echo/{quoted}?m={quoted}&e={quoted}",
                           headers={"X-Job-Flag": "ON"}, timeout=10).headers["X-Job-Id"]
    held = requests.post(f"{attack_url}/echo/x?m={quoted}", headers={"X-Job-Flag": "ON"},
                         timeout=10).headers["X-Job-Id"]
    try:
        for job_id in (failed, held):  # rows the live stream added (dashboard.js)
            page.wait_for_function(f"""() => document.querySelector(
                'tr[data-job-id="{job_id}"] [data-field=message]')?.textContent === {PAYLOAD!r}""")
            assert page.text_content(f'tr[data-job-id="{job_id}"] td:nth-child(3)') == OPERATION
        _no_markup_ran(page)
        requests.post(f"{attack_url}/plant/{failed}", timeout=10)  # a webhook record
        page.goto(f"/jobs/ui/{failed}")  # server-rendered: path, error, webhook
        text = page.text_content("#job")
        assert text.count(PAYLOAD) >= 4 and OPERATION in text, text
        _no_markup_ran(page)
        page.goto(f"/jobs/ui/{held}")
        page.wait_for_selector("#live:not(.off)")
        requests.post(f"{attack_url}/plant/{held}", timeout=10)  # live, on the job's page
        page.wait_for_function(
            "() => document.querySelector('#job [data-field=percent]').textContent === '75%'")
        assert page.text_content("#job [data-field=message]") == PAYLOAD
        _no_markup_ran(page)
        page.goto("/jobs/ui/")  # server-rendered rows
        assert PAYLOAD in page.text_content(f'tr[data-job-id="{held}"]')
        _no_markup_ran(page)
    finally:
        requests.delete(f"{attack_url}/jobs/{held}", timeout=10)


def test_browser_dashboard_cannot_be_framed_by_another_site(
        attack_page: t.Any, attack_url: str) -> None:
    from flask import Flask

    other = Flask("other_site")
    other.add_url_rule("/", "frame", lambda: (
        f'<iframe id="victim" src="{attack_url}/jobs/ui/" width="800" height="600"></iframe>'))
    with serve_app(other) as other_url:
        page = attack_page
        page.goto(other_url.replace("127.0.0.1", "localhost") + "/")
        page.wait_for_load_state("load")
        assert len(page.frames) == 2
        loaded = page.frames[1].evaluate("() => !!document.getElementById('jobs')")
        assert not loaded, "the dashboard loaded inside another site's frame"


_SETTLES = """async ([url, options]) => {
  const { jobifyFetch, JobFailedError } = await import("/jobs/client.js");
  const outcome = jobifyFetch(url, { method: "POST" }, options).then(
    (response) => ({ resolved: response.status }),
    (error) => ({ rejected: error.name, failed: error instanceof JobFailedError,
                  status: error.job?.status ?? null, message: String(error.message) }));
  const hung = new Promise((resolve) => setTimeout(() => resolve({ hung: true }), 10000));
  return Promise.race([outcome, hung]);
}"""


@pytest.mark.parametrize("mode", ["html", "forbidden"])
def test_browser_jobify_fetch_rejects_a_status_answer_it_cannot_use(
        attack_page: t.Any, attack_url: str, mode: str) -> None:
    # A proxy's HTML page, or a 403, where the job's record should be:
    # jobifyFetch rejects with an error saying so, instead of never settling.
    attack_page.goto("/jobs/ui/")
    requests.post(f"{attack_url}/mode/{mode}", timeout=10)
    try:
        got = attack_page.evaluate(_SETTLES, ["/echo/x?e=boom", {"transport": "poll"}])
    finally:
        requests.post(f"{attack_url}/mode/normal", timeout=10)
    assert "rejected" in got, got
    assert got["failed"] is False and ("JSON" in got["message"] or "403" in got["message"]), got


def test_browser_jobify_fetch_rejects_a_failed_job_and_a_throwing_callback(
        attack_page: t.Any) -> None:
    attack_page.goto("/jobs/ui/")
    for transport in ("sse", "poll"):
        failed = attack_page.evaluate(_SETTLES, ["/echo/x?e=boom", {"transport": transport}])
        assert failed == {"rejected": "JobFailedError", "failed": True, "status": "failed",
                          "message": failed.get("message")}, failed
        assert "boom" in failed["message"], failed
    thrown = attack_page.evaluate("""async () => {
      const { jobifyFetch } = await import("/jobs/client.js");
      const results = [];
      for (const transport of ["sse", "poll"]) {
        const outcome = jobifyFetch("/echo/x?e=boom", { method: "POST" }, { transport,
          onProgress: () => { throw new TypeError("my callback broke"); } }).then(
          () => "resolved", (error) => error.message);
        const hung = new Promise((resolve) => setTimeout(() => resolve("hung"), 10000));
        results.push(await Promise.race([outcome, hung]));
      }
      return results;
    }""")
    assert thrown == ["my callback broke", "my callback broke"], thrown
