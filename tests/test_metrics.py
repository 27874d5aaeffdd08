"""Prometheus metrics: counted from the signals, served at /jobs/metrics,
added up across gunicorn workers (prometheus_client's multiprocess mode)."""
from __future__ import annotations

import concurrent.futures
import os
import time
import typing as t

import pytest
import requests
from helpers import finish
from metrics_app import create_app
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from servers import run_gunicorn

from flask_jobify.metrics import register_metrics
from flask_jobify.models import Job, JobStatus, new_job_id

HERE = os.path.dirname(__file__)
FLAG = {"X-Job-Flag": "ON"}
ADMIN = {"X-Admin": "yes"}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict[t.Any, float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def run_the_jobs(submit: t.Callable[[str, str], str], wait: t.Callable[[str], t.Any]) -> None:
    """10 that succeed, 3 that fail, 2 that fail once then succeed."""
    ids = [submit("POST", "/work") for _ in range(10)]
    ids += [submit("POST", "/work?fail=1") for _ in range(3)]
    ids += [submit("PUT", "/flaky") for _ in range(2)]
    for job_id in ids:
        wait(job_id)


def check_counts(found: dict[t.Any, float], ok: int = 10) -> None:
    app = "metrics_app"
    assert value(found, "jobify_jobs_accepted_total", app=app, operation="work") == ok + 3
    assert value(found, "jobify_jobs_accepted_total", app=app, operation="flaky") == 2
    assert value(found, "jobify_jobs_finished_total", app=app, operation="work",
                 status="succeeded") == ok
    assert value(found, "jobify_jobs_finished_total", app=app, operation="work",
                 status="failed") == 3
    assert value(found, "jobify_jobs_finished_total", app=app, operation="flaky",
                 status="succeeded") == 2
    assert value(found, "jobify_job_retries_total", app=app, operation="flaky") == 2
    assert value(found, "jobify_job_run_seconds_count", app=app, operation="work") == ok + 3
    assert value(found, "jobify_job_queue_wait_seconds_count", app=app, operation="flaky") == 2
    assert value(found, "jobify_job_run_seconds_bucket", app=app, operation="work",
                 le="+Inf") == ok + 3
    assert value(found, "jobify_jobs", app=app, status="pending") == 0
    assert value(found, "jobify_jobs", app=app, status="running") == 0
    assert value(found, "jobify_store_up", app=app) == 1
    assert ("jobify_store_roundtrip_seconds", (("app", app),)) in found


def settled(scrape: t.Callable[[], str], ok: int = 10) -> dict[t.Any, float]:
    """The first scrape whose counts are whole: a job's end is counted
    just after the store has it, so a scrape may come in between."""
    deadline = time.monotonic() + 15
    while True:
        found = samples(scrape())
        try:
            check_counts(found, ok)
            return found
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_metrics_in_process_counts_and_access(tmp_path: t.Any, monkeypatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    app = create_app(f"sqlite:///{tmp_path / 'jobs.db'}")
    client = app.test_client()
    try:
        def submit(method: str, path: str) -> str:
            answer = client.open(path, method=method, headers=FLAG)
            assert answer.status_code == 202
            return t.cast(str, answer.get_json()["jobId"])

        run_the_jobs(submit, lambda job_id: finish(client, job_id))
        denied = client.get("/jobs/metrics")
        assert denied.status_code == 403
        assert denied.get_json()["error"]["code"] == "access_denied"
        answer = client.get("/jobs/metrics", headers=ADMIN)
        assert answer.status_code == 200
        assert answer.content_type.startswith("text/plain")
        settled(lambda: client.get("/jobs/metrics", headers=ADMIN).get_data(as_text=True))

        # A job whose process died, found by the lease sweep: counted as lost.
        state = app.extensions["jobify"]
        state.store.create(Job(id=new_job_id(), operation="work", method="POST", path="/work",
                               status=JobStatus.RUNNING, attempts=1, app=app.name,
                               lease_until=time.time() - 10))
        assert state.leases.reclaim_lost() == 1
        found = samples(client.get("/jobs/metrics", headers=ADMIN).get_data(as_text=True))
        assert value(found, "jobify_jobs_lost_total", app="metrics_app", operation="work",
                     outcome="failed") == 1
    finally:
        app.extensions["jobify"].shutdown(1)


def test_metrics_register_in_the_apps_own_registry(tmp_path: t.Any, monkeypatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    from flask import Flask

    from flask_jobify import Jobify

    app = Flask("own_registry")
    app.config["JOBIFY_STORE"] = f"sqlite:///{tmp_path / 'own.db'}"
    jobify = Jobify(app)

    @app.post("/go")
    @jobify.job
    def go() -> t.Any:
        return {"ok": True}

    registry = CollectorRegistry()
    metrics = register_metrics(app, registry)
    assert register_metrics(app, registry) is metrics  # once per app
    client = app.test_client()
    try:
        job_id = client.post("/go", headers=FLAG).get_json()["jobId"]
        finish(client, job_id)
        found = samples(generate_latest(registry).decode())
        assert value(found, "jobify_jobs_finished_total", app="own_registry", operation="go",
                     status="succeeded") == 1
        # Not served (JOBIFY_METRICS is off): the path is read as a job id.
        assert client.get("/jobs/metrics").get_json()["error"]["code"] == "invalid_job_id"
    finally:
        app.extensions["jobify"].shutdown(1)


@pytest.mark.timeout(180)
def test_metrics_add_up_across_two_gunicorn_workers(tmp_path: t.Any) -> None:
    folder = tmp_path / "prometheus"
    folder.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(folder)}
    store = f"sqlite:///{tmp_path / 'jobs.db'}"
    with run_gunicorn(f"metrics_app:create_app({store!r})", workers=2, env=env,
                      extra_args=["--pythonpath", HERE]) as url:
        def submit(method: str, path: str) -> str:
            # A new connection each time: the jobs land on both workers.
            answer = requests.request(method, url + path, headers=FLAG, timeout=30)
            assert answer.status_code == 202
            return t.cast(str, answer.json()["jobId"])

        def wait(job_id: str) -> None:
            deadline = time.monotonic() + 60
            while requests.get(f"{url}/jobs/{job_id}?wait=5", timeout=30).json()["status"] in (
                    "pending", "running"):
                assert time.monotonic() < deadline

        run_the_jobs(submit, wait)
        # More jobs, 8 at a time, until both workers ran some.
        pids: set[int] = set()
        ok = 10
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            while len(pids) < 2:
                assert ok < 400, "one worker took every job"
                batch = list(pool.map(lambda _: submit("POST", "/work"), range(16)))
                ok += len(batch)
                for job_id in batch:
                    wait(job_id)
                    pids.add(requests.get(f"{url}/jobs/{job_id}/result", timeout=30).json()["pid"])
        assert requests.get(url + "/jobs/metrics", timeout=30).status_code == 403
        def scrape() -> str:
            answer = requests.get(url + "/jobs/metrics", headers=ADMIN, timeout=30)
            assert answer.status_code == 200
            return answer.text

        settled(scrape, ok)
        for _ in range(6):  # whichever worker answers gives the same, whole counts
            check_counts(samples(scrape()), ok)
        print(f"\n{ok + 5} jobs on {len(pids)} workers; counts add up in every scrape")
