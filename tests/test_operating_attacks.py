"""Issue 18 attacked: ``flask jobs`` with a store that is down and with
unbounded durations, a re-run asked twice (at once) or that cannot be
queued, a re-run handed over while a sweep runs, secrets in a re-run,
the metrics with a missing multiprocess folder, and the admin access rule
with a check that raises or a request through a proxy."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import typing as t

import pytest
from conftest import Apps
from flask import Flask, request
from helpers import finish

from flask_jobify import Jobify
from flask_jobify.errors import NotRerunnable, QueueFull
from flask_jobify.overview import iter_jobs, parse_duration
from flask_jobify.rerun import RERUN_BY, rerun

HERE = os.path.dirname(__file__)
FLAG = {"X-Job-Flag": "ON"}


def operated_app(url: str, **config: t.Any) -> Flask:
    """An app named ``operated`` (every app built here shares its jobs):
    ``/work?fail=1`` fails its first run per ``key``; ``/block`` waits
    for ``app.extensions["gate"]``; ``/headers`` echoes what a run saw."""
    app = Flask("operated")
    app.config.update({"JOBIFY_STORE": url, "JOBIFY_LEASE_SECONDS": 1.0,
                       "JOBIFY_KEEP_FAILED_REQUESTS": True, **config})
    jobify = Jobify(app)
    gate = app.extensions["gate"] = threading.Event()
    runs: dict[str, int] = {}

    @app.post("/work")
    @jobify.job
    def work() -> t.Any:
        key = request.args.get("key", "")
        runs[key] = runs.get(key, 0) + 1
        if request.args.get("fail") and runs[key] == 1:
            raise RuntimeError("the first run fails")
        return {"key": key, "run": runs[key],
                **{name: request.headers.get(name)
                   for name in ("Authorization", "X-Secret", "traceparent")}}

    @app.post("/block")
    @jobify.job
    def block() -> t.Any:
        gate.wait(30)
        return {"done": True}

    return app


def failed_job(client: t.Any, path: str = "/work?key=k&fail=1",
               headers: dict[str, str] | None = None) -> str:
    job_id = client.post(path, headers={**FLAG, **(headers or {})}).get_json()["jobId"]
    assert finish(client, job_id)["status"] == "failed"
    return t.cast(str, job_id)


# -- the command line ---------------------------------------------------------

STORE_DOWN_APP = """
from flask import Flask
from flask_jobify import Jobify

app = Flask("store_down")
app.config["JOBIFY_STORE"] = "redis://127.0.0.1:1/0"
Jobify(app)
"""


@pytest.mark.timeout(120)
def test_cli_with_the_store_down_says_so_without_a_traceback(tmp_path: t.Any) -> None:
    (tmp_path / "store_down_app.py").write_text(textwrap.dedent(STORE_DOWN_APP))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    for args in (["list"], ["show", "--", "A" * 22], ["cancel", "--", "A" * 22],
                 ["rerun", "--", "A" * 22], ["purge", "--yes"], ["stats"]):
        done = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "store_down_app", "jobs", *args],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 1, (args, done.stderr)
        assert "The job store failed" in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr, (args, done.stderr)


def test_cli_refuses_durations_and_intervals_it_cannot_use(tmp_path: t.Any) -> None:
    app = operated_app("memory://")
    runner = app.test_cli_runner()
    try:
        huge = "9" * 400 + "d"  # float() makes it inf
        for args in (["watch", "--interval", "nan"], ["watch", "--interval", "inf"],
                     ["watch", "--interval", "1e300"], ["stats", "--window", huge],
                     ["stats", "--window", huge, "--json"],
                     ["purge", "--yes", "--older-than", huge]):
            answer = runner.invoke(args=["jobs", *args])
            assert answer.exit_code == 2, (args, answer.output)
            assert isinstance(answer.exception, SystemExit), (args, answer.exception)
        with pytest.raises(ValueError, match="too long"):
            parse_duration(huge)
        assert parse_duration("36500d") == 36500 * 86400
    finally:
        app.extensions["jobify"].shutdown(1)


# -- re-runs ------------------------------------------------------------------

@pytest.mark.stores("sqlite", "redis")
def test_a_failed_job_is_rerun_once_even_when_asked_at_once(apps: Apps) -> None:
    app = apps(operated_app)
    client = app.test_client()
    state = app.extensions["jobify"]
    failed = failed_job(client)
    start = threading.Barrier(8)
    made: list[str] = []
    refused: list[str] = []

    def ask() -> None:
        with app.app_context():
            start.wait()
            try:
                made.append(rerun(state, failed, hand_off=True).id)
            except NotRerunnable as exc:
                refused.append(str(exc.description))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(made) == 1 and len(refused) == 7, (made, refused)
    assert state.store.get(failed).meta[RERUN_BY] == made[0]
    assert all("re-run already" in reason or "try again" in reason for reason in refused)
    again = app.test_cli_runner().invoke(args=["jobs", "rerun", "--", failed])
    assert again.exit_code == 1 and f"as job {made[0]}" in again.output
    assert finish(client, made[0])["status"] == "succeeded"  # the one re-run ran, once
    stored = [job.id for job in iter_jobs(state.store, app=app.name)]
    assert sorted(stored) == sorted([failed, *made])  # no second re-run was stored


@pytest.mark.stores("sqlite", "redis")
def test_a_rerun_that_cannot_be_queued_can_be_asked_again(apps: Apps) -> None:
    app = apps(operated_app, JOBIFY_MAX_WORKERS=1, JOBIFY_MAX_QUEUED=1,
               stop=lambda: None)
    gate = app.extensions["gate"]
    client = app.test_client()
    state = app.extensions["jobify"]
    try:
        failed = failed_job(client)
        running = client.post("/block", headers=FLAG).get_json()["jobId"]
        queued = client.post("/block", headers=FLAG)
        assert queued.status_code == 202  # the one place in the queue
        with app.app_context(), pytest.raises(QueueFull):
            rerun(state, failed)  # on this process's full queue
        assert RERUN_BY not in state.store.get(failed).meta  # the claim was let go
    finally:
        gate.set()
    finish(client, running)
    finish(client, queued.get_json()["jobId"])
    with app.app_context():
        job = rerun(state, failed)
    assert finish(client, job.id)["status"] == "succeeded"


@pytest.mark.stores("sqlite")
def test_a_handed_off_rerun_is_not_lost_to_a_sweep_before_its_request_is_saved(
        apps: Apps) -> None:
    serving = apps(operated_app)
    client = serving.test_client()
    failed = failed_job(client)
    operator = apps(operated_app)  # `flask jobs rerun`'s process, on the same store
    store = operator.extensions["jobify"].store
    sweep = serving.extensions["jobify"].leases.reclaim_lost

    class SweptAfterCreate(type(store)):  # type: ignore[misc]
        """The same store; a serving process sweeps right after each create."""

        def create(self, job: t.Any) -> None:
            super().create(job)
            sweep()

    store.__class__ = SweptAfterCreate
    job = rerun(operator.extensions["jobify"], failed, hand_off=True)
    record = finish(client, job.id)
    assert record["status"] == "succeeded", record


@pytest.mark.stores("sqlite", "redis")
def test_a_rerun_drops_the_headers_dropped_now_and_never_restores_others(
        apps: Apps) -> None:
    serving = apps(operated_app, JOBIFY_DROP_HEADERS=["X-Secret"])
    client = serving.test_client()
    trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    failed = failed_job(client, headers={"Authorization": "Bearer s3cret",
                                         "X-Secret": "hidden", "traceparent": trace})
    # The operator learnt that the request kept a token, and drops it now.
    operator = apps(operated_app, JOBIFY_DROP_HEADERS=["X-Secret", "Authorization"])
    answer = operator.test_cli_runner().invoke(args=["jobs", "rerun", "--", failed])
    assert answer.exit_code == 0, answer.output
    new_id = answer.stdout.strip()
    saved = operator.extensions["jobify"].store.load_request(new_id)
    assert saved is None or b"s3cret" not in saved
    assert finish(client, new_id)["status"] == "succeeded"
    seen = client.get(f"/jobs/{new_id}/result").get_json()
    assert seen["Authorization"] is None and seen["X-Secret"] is None
    assert seen["traceparent"] == trace  # never dropped by default


# -- metrics and the admin access rule ------------------------------------------

MISSING_FOLDER = """
import json, os, shutil, sys

folder, store = sys.argv[1], sys.argv[2]
os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder  # before prometheus_client is imported
from helpers import finish
from metrics_app import create_app
from flask_jobify.errors import ConfigError

seen = {}
try:
    create_app(store)
    seen["init"] = "accepted"
except ConfigError as exc:
    seen["init"] = str(exc)
os.makedirs(folder)
app = create_app(store)
shutil.rmtree(folder)  # emptied by hand while the app runs
client = app.test_client()
answer = client.post("/work", headers={"X-Job-Flag": "ON"})
seen["submit"] = answer.status_code
if answer.status_code == 202:
    seen["status"] = finish(client, answer.get_json()["jobId"])["status"]
scrape = client.get("/jobs/metrics", headers={"X-Admin": "yes"})
seen["scrape"] = [scrape.status_code, scrape.get_data(as_text=True)]
print(json.dumps(seen))
sys.stdout.flush()
os._exit(0)
"""


@pytest.mark.timeout(120)
def test_metrics_without_their_multiprocess_folder_never_fail_a_job(tmp_path: t.Any) -> None:
    script = tmp_path / "missing_folder.py"
    script.write_text(MISSING_FOLDER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")])}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "metrics"),
         f"sqlite:///{tmp_path / 'jobs.db'}"],
        env=env, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert "PROMETHEUS_MULTIPROC_DIR" in seen["init"], seen  # refused at init_app
    assert seen["submit"] == 202, (seen, done.stderr)
    assert seen["status"] == "succeeded", seen  # not left running
    status, body = seen["scrape"]
    assert status == 503 and json.loads(body)["error"]["code"] == "metrics_unavailable"


def metrics_app_checked_by(check: t.Callable[[], t.Any] | None, debug: bool = False) -> Flask:
    app = Flask("guarded")
    app.config.update(JOBIFY_STORE="memory://", JOBIFY_METRICS=True)
    app.debug = debug
    jobify = Jobify(app)
    if check is not None:
        jobify.dashboard_access(check)
    return app


def test_metrics_access_check_that_raises_is_a_json_500(monkeypatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)

    def broken() -> bool:
        raise RuntimeError("the session store is down")

    app = metrics_app_checked_by(broken)
    try:
        answer = app.test_client().get("/jobs/metrics")
        assert answer.status_code == 500
        assert answer.get_json()["error"]["code"] == "access_check_failed"
    finally:
        app.extensions["jobify"].shutdown(1)


def test_metrics_in_debug_mode_are_not_opened_to_requests_through_a_proxy(
        monkeypatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    app = metrics_app_checked_by(None, debug=True)
    client = app.test_client()
    try:
        assert client.get("/jobs/metrics").status_code == 200  # from this machine
        for header in ({"X-Forwarded-For": "203.0.113.9"},
                       {"Forwarded": "for=203.0.113.9"}):
            answer = client.get("/jobs/metrics", headers=header)
            assert answer.status_code == 403, header
            assert answer.get_json()["error"]["code"] == "access_denied"
    finally:
        app.extensions["jobify"].shutdown(1)

